/**
 * The eviction subresource's semantics (upstream `pkg/registry/core/pod/storage/eviction.go`),
 * for the API's `POST pods/{name}/eviction` and for a node that drains itself when it leaves:
 * a pod covered by a PodDisruptionBudget is deleted only when the budget allows one more
 * disruption; otherwise 429 TooManyRequests with upstream's message and cause.
 *
 * kubeloop has no disruption controller: the budget's status (expected, currentHealthy,
 * desiredHealthy, disruptionsAllowed) is computed here from the pods it selects, and written
 * back with the evicted pod in `disruptedPods` by a compare-and-set on the budget. Two
 * evictions racing for the last allowed disruption: one wins, the other retries against the
 * new status and gets 429. Expected pods = the unfinished pods the budget selects (upstream
 * asks their controllers' scale instead).
 */
import type { PodDisruptionBudget } from 'kubernetes-types/policy/v1.js';
import { ApiError, isApiError } from '../api/errors.js';
import { fromLabelSelector, matches } from '../api/labels.js';
import { type Mutable, type Pod, type Stored, clone } from '../api/types.js';
import type { DeleteOptions, Store } from './types.js';

/** an entry of `status.disruptedPods` older than this no longer counts (upstream's DeletionTimeout) */
const DISRUPTED_TTL_MS = 2 * 60_000;
const ATTEMPTS = 5;

export interface EvictOptions {
  deleteOptions?: DeleteOptions;
  dryRun?: boolean;
  now?: () => number;
}

const isReady = (p: Pod): boolean => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
const isFinished = (p: Pod): boolean => p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed';

/**
 * Evicts one pod: deletes it (graceful, as the DeleteOptions say) when no budget forbids it.
 * Throws NotFound, TooManyRequests (a budget), InternalError (more than one budget).
 */
export async function evictPod(store: Store, namespace: string, name: string, o: EvictOptions = {}): Promise<void> {
  const now = o.now ?? Date.now;
  for (let attempt = 0; ; attempt++) {
    const pod = await store.get<Pod>('Pod', namespace, name);
    const pre = o.deleteOptions?.preconditions;
    if (pre?.uid && pre.uid !== pod.metadata.uid) {
      throw new ApiError('Conflict', `Operation cannot be fulfilled on pods "${name}": Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${pod.metadata.uid}`, { kind: 'pods', name });
    }
    // upstream canIgnorePDB: a pod already going, finished, or never started disrupts nothing
    if (pod.metadata.deletionTimestamp || isFinished(pod) || pod.status?.phase === 'Pending') return remove(store, pod, o);
    const budgets = (await store.list<PodDisruptionBudget>('PodDisruptionBudget', { namespace })).items.filter(
      (b) => b.spec?.selector && matches(fromLabelSelector(b.spec.selector), pod.metadata.labels),
    );
    if (budgets.length === 0) return remove(store, pod, o);
    if (budgets.length > 1) throw new ApiError('InternalError', 'This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.');
    const pdb = budgets[0];
    const st = await budgetStatus(store, pdb, now());
    // an unready pod: unhealthyPodEvictionPolicy AlwaysAllow, or IfHealthyBudget (the default) while the budget holds
    if (!isReady(pod) && (pdb.spec?.unhealthyPodEvictionPolicy === 'AlwaysAllow' || st.currentHealthy >= st.desiredHealthy)) return remove(store, pod, o);
    if (st.disruptionsAllowed <= 0) {
      // statusCauses: the Status's details.causes (server/status.ts)
      throw Object.assign(
        new ApiError('TooManyRequests', "Cannot evict pod as it would violate the pod's disruption budget.", { kind: 'pods', name }),
        { statusCauses: [{ reason: 'DisruptionBudget', message: `The disruption budget ${pdb.metadata.name} needs ${st.desiredHealthy} healthy pods and has ${st.currentHealthy} currently` }] },
      );
    }
    if (o.dryRun) return;
    const next = clone(pdb) as Mutable<Stored<PodDisruptionBudget>>;
    next.status = {
      ...st,
      disruptionsAllowed: st.disruptionsAllowed - 1,
      disruptedPods: { ...st.disruptedPods, [name]: new Date(now()).toISOString().replace(/\.\d{3}Z$/, 'Z') },
      observedGeneration: pdb.metadata.generation,
    };
    try {
      await store.update(next, { subresource: 'status' });
    } catch (e) {
      // another eviction took a disruption first: look again
      if (isApiError(e, 'Conflict') && attempt < ATTEMPTS) continue;
      if (isApiError(e, 'Conflict')) throw new ApiError('TooManyRequests', 'Too many concurrent evictions of pods under one disruption budget: try again', { kind: 'pods', name, retryAfterSeconds: 1 });
      throw e;
    }
    return remove(store, pod, o);
  }
}

async function remove(store: Store, pod: Stored<Pod>, o: EvictOptions): Promise<void> {
  if (o.dryRun) return;
  try {
    await store.delete('Pod', pod.metadata.namespace, pod.metadata.name, { ...o.deleteOptions, preconditions: { ...o.deleteOptions?.preconditions, uid: pod.metadata.uid } });
  } catch (e) {
    // gone meanwhile: what the caller wanted
    if (!isApiError(e, 'NotFound')) throw e;
  }
}

type BudgetStatus = Required<Pick<NonNullable<PodDisruptionBudget['status']>, 'currentHealthy' | 'desiredHealthy' | 'disruptionsAllowed' | 'expectedPods'>> & {
  disruptedPods: Record<string, string>;
};

/** the disruption controller's arithmetic over the pods the budget selects now */
export async function budgetStatus(store: Store, pdb: PodDisruptionBudget, nowMs: number): Promise<BudgetStatus> {
  const ns = pdb.metadata?.namespace ?? 'default';
  const sel = fromLabelSelector(pdb.spec?.selector);
  const pods = (await store.list<Pod>('Pod', { namespace: ns, labelSelector: sel })).items.filter((p) => !isFinished(p));
  const live = new Set(pods.filter((p) => !p.metadata.deletionTimestamp).map((p) => p.metadata.name));
  const disruptedPods: Record<string, string> = {};
  for (const [k, v] of Object.entries(pdb.status?.disruptedPods ?? {})) {
    if (live.has(k) && nowMs - Date.parse(v) < DISRUPTED_TTL_MS) disruptedPods[k] = v;
  }
  const expectedPods = pods.filter((p) => !p.metadata.deletionTimestamp).length;
  const currentHealthy = pods.filter((p) => !p.metadata.deletionTimestamp && isReady(p) && !(p.metadata.name in disruptedPods)).length;
  const scaled = (v: number | string | undefined, roundUp: boolean): number => {
    if (typeof v === 'number') return v;
    const m = /^(\d+)%$/.exec(String(v ?? ''));
    if (!m) return Number(v ?? 0) || 0;
    const x = (Number(m[1]) * expectedPods) / 100;
    return roundUp ? Math.ceil(x) : Math.floor(x);
  };
  let desiredHealthy: number;
  if (pdb.spec?.maxUnavailable !== undefined) {
    desiredHealthy = Math.max(0, expectedPods - scaled(pdb.spec.maxUnavailable, true));
  } else {
    desiredHealthy = scaled(pdb.spec?.minAvailable ?? 1, true);
  }
  return { currentHealthy, desiredHealthy, expectedPods, disruptionsAllowed: Math.max(0, currentHealthy - desiredHealthy), disruptedPods };
}
