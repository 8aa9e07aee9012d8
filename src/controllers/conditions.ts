/** A status condition as Deployments, ReplicaSets and Pods carry them. */
export interface StatusCondition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
  lastUpdateTime?: string;
  lastProbeTime?: string;
}

/**
 * Sets condition `c.type` in `list` (in place) and returns the new list. `lastTransitionTime`
 * moves only when the status changes; `lastUpdateTime`, when the condition type uses it, moves
 * when anything changes or `touch` is set. Returns the list unchanged (same content) when `c`
 * adds nothing.
 */
export function setCondition<C extends StatusCondition>(
  list: C[] | undefined,
  c: C,
  opts: { now: string; touch?: boolean; withUpdateTime?: boolean },
): C[] {
  const out = list ? [...list] : [];
  const i = out.findIndex((x) => x.type === c.type);
  const prev = i >= 0 ? out[i] : undefined;
  const same = prev && prev.status === c.status && prev.reason === c.reason && prev.message === c.message;
  if (same && !opts.touch) return out;
  const next: C = { ...c };
  next.lastTransitionTime = prev && prev.status === c.status ? prev.lastTransitionTime : opts.now;
  if (opts.withUpdateTime) next.lastUpdateTime = opts.now;
  if (i >= 0) out[i] = next;
  else out.push(next);
  return out;
}

export function removeCondition<C extends StatusCondition>(list: C[] | undefined, type: string): C[] | undefined {
  if (!list) return list;
  const out = list.filter((x) => x.type !== type);
  return out.length ? out : undefined;
}

export function getCondition<C extends StatusCondition>(list: C[] | undefined, type: string): C | undefined {
  return list?.find((x) => x.type === type);
}
