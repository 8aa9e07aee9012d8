import { type Selector, fromLabelSelector } from '../api/labels.js';
import type { KObject, LabelSelector, OwnerReference, Pod } from '../api/types.js';

/** Pod predicates shared by the controllers, with upstream's meaning (`pkg/api/v1/pod`, `pkg/controller`). */

export function podCondition(pod: Pod, type: string) {
  return pod.status?.conditions?.find((c) => c.type === type);
}

export function isPodReady(pod: Pod): boolean {
  return podCondition(pod, 'Ready')?.status === 'True';
}

/** Ready for at least `minReadySeconds` (as of `nowMs`). */
export function isPodAvailable(pod: Pod, minReadySeconds: number, nowMs: number): boolean {
  const c = podCondition(pod, 'Ready');
  if (c?.status !== 'True') return false;
  if (minReadySeconds <= 0) return true;
  const since = c.lastTransitionTime ? Date.parse(c.lastTransitionTime) : NaN;
  return Number.isFinite(since) && since + minReadySeconds * 1000 <= nowMs;
}

/** ms until a ready pod becomes available, undefined when it is not ready (or already available) */
export function msUntilAvailable(pod: Pod, minReadySeconds: number, nowMs: number): number | undefined {
  const c = podCondition(pod, 'Ready');
  if (c?.status !== 'True' || minReadySeconds <= 0 || !c.lastTransitionTime) return undefined;
  const left = Date.parse(c.lastTransitionTime) + minReadySeconds * 1000 - nowMs;
  return left > 0 ? left : undefined;
}

export const isTerminating = (o: KObject): boolean => !!o.metadata?.deletionTimestamp;

/** not terminating and not finished: counts towards a controller's replicas */
/** Succeeded or Failed: its containers will not run again */
export function isPodFinished(pod: Pod): boolean {
  const phase = pod.status?.phase;
  return phase === 'Succeeded' || phase === 'Failed';
}

export function isPodActive(pod: Pod): boolean {
  return !isPodFinished(pod) && !isTerminating(pod);
}

export function controllerRef(o: KObject): OwnerReference | undefined {
  return o.metadata?.ownerReferences?.find((r) => r.controller === true);
}

export function ownerRefFor(owner: KObject & { metadata: { name: string; uid: string } }): OwnerReference {
  return {
    apiVersion: owner.apiVersion!,
    kind: owner.kind!,
    name: owner.metadata.name,
    uid: owner.metadata.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

export function totalRestarts(pod: Pod): number {
  let n = 0;
  for (const s of pod.status?.containerStatuses ?? []) n += s.restartCount ?? 0;
  return n;
}

/** `ns/name` → [ns, name]; `name` → [undefined, name] */
export function splitKey(key: string): [string | undefined, string] {
  const i = key.indexOf('/');
  return i < 0 ? [undefined, key] : [key.slice(0, i), key.slice(i + 1)];
}

/**
 * A workload's selector, or undefined when it must not be acted on: absent or empty (it would
 * select every pod) or unparsable. Never throws: it runs inside informer handlers.
 */
export function workloadSelector(ls: LabelSelector | undefined): Selector | undefined {
  if (!ls || (!Object.keys(ls.matchLabels ?? {}).length && !(ls.matchExpressions ?? []).length)) return undefined;
  try {
    return fromLabelSelector(ls);
  } catch {
    return undefined;
  }
}
