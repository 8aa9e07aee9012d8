/** The deployment controller's vocabulary and pure arithmetic (upstream `pkg/controller/deployment/util`). */
import type { Deployment, Mutable, PodTemplateSpec, ReplicaSet, Stored } from '../api/types.js';
import { clone } from '../api/types.js';
import type { Selector } from '../api/labels.js';
import { rfc3339 } from '../store/events.js';
import { canonicalJson, fnv1a32, safeEncode } from './names.js';
import { workloadSelector } from './pod-util.js';
import { getCondition } from './conditions.js';

export const POD_TEMPLATE_HASH = 'pod-template-hash';
export const REVISION = 'deployment.kubernetes.io/revision';
export const REVISION_HISTORY = 'deployment.kubernetes.io/revision-history';
export const DESIRED_REPLICAS = 'deployment.kubernetes.io/desired-replicas';
export const MAX_REPLICAS = 'deployment.kubernetes.io/max-replicas';
export const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';
export const ROLLBACK_TO = 'deprecated.deployment.rollback.to';
/** deployment annotations never copied to its replica sets (upstream `skipCopyAnnotation`) */
export const NOT_COPIED = new Set([LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO]);

// upstream condition reasons (pkg/controller/deployment/util)
export const NEW_RS_CREATED = 'NewReplicaSetCreated';
export const FOUND_NEW_RS = 'FoundNewReplicaSet';
export const NEW_RS_AVAILABLE = 'NewReplicaSetAvailable';
export const RS_UPDATED = 'ReplicaSetUpdated';
export const TIMED_OUT = 'ProgressDeadlineExceeded';
export const PAUSED = 'DeploymentPaused';
export const RESUMED = 'DeploymentResumed';
export const MIN_AVAILABLE = 'MinimumReplicasAvailable';
export const MIN_UNAVAILABLE = 'MinimumReplicasUnavailable';

export type RS = Stored<ReplicaSet>;
export type D = Stored<Deployment>;
export type DStatus = NonNullable<Deployment['status']>;
export type DCondition = NonNullable<DStatus['conditions']>[number];

// ── pure helpers (upstream pkg/controller/deployment/util) ──────────────────────────────

export function selectorOf(d: Deployment): Selector | undefined {
  return workloadSelector(d.spec?.selector);
}

export function withNew(oldRSs: RS[], newRS: RS | undefined): RS[] {
  return newRS ? [...oldRSs, newRS] : [...oldRSs];
}

/** the replica set whose template is the deployment's (the oldest if several), and the rest */
export function splitNewAndOld(d: Deployment, rsList: RS[]): { newRS: RS | undefined; oldRSs: RS[] } {
  const template = d.spec?.template;
  const newRS = [...rsList].sort(byCreation).find((r) => equalIgnoreHash(r.spec?.template, template));
  return { newRS, oldRSs: rsList.filter((r) => r !== newRS) };
}

export function stripHash(t: PodTemplateSpec | undefined): PodTemplateSpec {
  const c = clone(t ?? {});
  if (c.metadata?.labels && POD_TEMPLATE_HASH in c.metadata.labels) {
    const { [POD_TEMPLATE_HASH]: _h, ...rest } = c.metadata.labels;
    c.metadata.labels = rest;
  }
  return c;
}

/** templates equal but for the pod-template-hash label, absent and empty fields alike */
export function equalIgnoreHash(a: PodTemplateSpec | undefined, b: PodTemplateSpec | undefined): boolean {
  return canonicalJson(stripHash(a)) === canonicalJson(stripHash(b));
}

/** upstream `ComputeHash`: FNV-32a of the template (and collision count), safe-encoded */
export function templateHash(template: PodTemplateSpec, collisionCount?: number): string {
  const input = canonicalJson(stripHash(template)) + (collisionCount !== undefined ? `#${collisionCount}` : '');
  return safeEncode(String(fnv1a32(input)));
}

export function byCreation(a: RS, b: RS): number {
  const d = Date.parse(a.metadata.creationTimestamp) - Date.parse(b.metadata.creationTimestamp);
  if (d !== 0 && Number.isFinite(d)) return d;
  return a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
}

export function sumSpec(rss: RS[]): number {
  return rss.reduce((s, r) => s + (r.spec?.replicas ?? 0), 0);
}

export function intAnnotation(o: { metadata?: { annotations?: Record<string, string> } }, key: string): number | undefined {
  const v = o.metadata?.annotations?.[key];
  if (v === undefined || !/^-?\d+$/.test(v)) return undefined;
  return Number(v);
}

/** absolute, or a percentage of `total` rounded up (surge) or down (unavailable) */
export function scaledValue(v: number | string | undefined, total: number, roundUp: boolean, dflt: string): number {
  const x = v ?? dflt;
  if (typeof x === 'number') return x;
  const m = /^(\d+)%$/.exec(x.trim());
  if (m) {
    const raw = (Number(m[1]) * total) / 100;
    return roundUp ? Math.ceil(raw) : Math.floor(raw);
  }
  if (/^\d+$/.test(x.trim())) return Number(x);
  throw new Error(`invalid value "${x}" for maxSurge/maxUnavailable: use a number or a percentage such as "25%"`);
}

/** upstream `ResolveFenceposts`: both zero would stall, so unavailable becomes 1 */
export function fenceposts(d: Deployment): { surge: number; unavailable: number } {
  const replicas = d.spec?.replicas ?? 1;
  const ru = d.spec?.strategy?.rollingUpdate;
  const surge = scaledValue(ru?.maxSurge, replicas, true, '25%');
  let unavailable = scaledValue(ru?.maxUnavailable, replicas, false, '25%');
  if (surge === 0 && unavailable === 0) unavailable = 1;
  return { surge, unavailable };
}

export const isRolling = (d: Deployment) => (d.spec?.strategy?.type ?? 'RollingUpdate') === 'RollingUpdate';

export function maxSurge(d: Deployment): number {
  return isRolling(d) ? fenceposts(d).surge : 0;
}

export function maxUnavailable(d: Deployment): number {
  const replicas = d.spec?.replicas ?? 1;
  if (!isRolling(d) || replicas === 0) return 0;
  return Math.min(fenceposts(d).unavailable, replicas);
}

/** upstream `NewRSNewReplicas`: how far the new replica set may grow now */
export function newRSNewReplicas(d: Deployment, others: RS[], newRS: RS): number {
  const replicas = d.spec?.replicas ?? 1;
  if (!isRolling(d)) return replicas;
  const have = newRS.spec?.replicas ?? 0;
  const current = sumSpec(others) + have;
  const maxTotal = replicas + maxSurge(d);
  if (current >= maxTotal) return have;
  return have + Math.min(maxTotal - current, replicas - have);
}

export function setReplicasAnnotations(rs: Mutable<ReplicaSet>, desired: number, max: number): boolean {
  const a = (rs.metadata!.annotations ??= {});
  const want = { [DESIRED_REPLICAS]: String(desired), [MAX_REPLICAS]: String(max) };
  let changed = false;
  for (const [k, v] of Object.entries(want)) {
    if (a[k] !== v) {
      a[k] = v;
      changed = true;
    }
  }
  return changed;
}

/** upstream `SetNewReplicaSetAnnotations` */
export function setNewReplicaSetAnnotations(d: Deployment, rs: Mutable<ReplicaSet>, newRevision: number, exists: boolean): boolean {
  const a = (rs.metadata!.annotations ??= {});
  let changed = false;
  for (const [k, v] of Object.entries(d.metadata?.annotations ?? {})) {
    if (NOT_COPIED.has(k) || a[k] === v) continue;
    a[k] = v;
    changed = true;
  }
  const old = a[REVISION];
  const oldRevision = old === undefined ? 0 : Number(old);
  if (Number.isFinite(oldRevision) && oldRevision < newRevision) {
    a[REVISION] = String(newRevision);
    changed = true;
    if (old !== undefined) a[REVISION_HISTORY] = a[REVISION_HISTORY] ? `${a[REVISION_HISTORY]},${old}` : old;
  }
  if (!exists && setReplicasAnnotations(rs, d.spec?.replicas ?? 1, (d.spec?.replicas ?? 1) + maxSurge(d))) changed = true;
  return changed;
}

export function isSaturated(d: Deployment, rs: RS): boolean {
  const replicas = d.spec?.replicas ?? 1;
  return (
    (rs.spec?.replicas ?? 0) === replicas &&
    intAnnotation(rs, DESIRED_REPLICAS) === replicas &&
    (rs.status?.availableReplicas ?? 0) === replicas
  );
}

/** upstream `getReplicaSetFraction`: this set's share of a resize */
export function replicaSetFraction(rs: RS, d: Deployment): number {
  const replicas = d.spec?.replicas ?? 1;
  const spec = rs.spec?.replicas ?? 0;
  if (replicas === 0) return -spec;
  const deploymentMax = replicas + maxSurge(d);
  const annotated = intAnnotation(rs, MAX_REPLICAS) ?? d.status?.replicas ?? 0;
  if (annotated === 0) return 0;
  return Math.round((spec * deploymentMax) / annotated) - spec;
}

export const progressDeadlineSeconds = (d: Deployment) => d.spec?.progressDeadlineSeconds ?? 600;
/** upstream: a deadline of MaxInt32 means none */
export const hasProgressDeadline = (d: Deployment) => progressDeadlineSeconds(d) !== 2147483647;

export function deploymentComplete(d: Deployment, s: DStatus | undefined): boolean {
  const replicas = d.spec?.replicas ?? 1;
  return (
    (s?.updatedReplicas ?? 0) === replicas &&
    (s?.replicas ?? 0) === replicas &&
    (s?.availableReplicas ?? 0) === replicas &&
    (s?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0)
  );
}

export function deploymentProgressing(d: Deployment, s: DStatus): boolean {
  const old = d.status ?? {};
  const oldOld = (old.replicas ?? 0) - (old.updatedReplicas ?? 0);
  const newOld = (s.replicas ?? 0) - (s.updatedReplicas ?? 0);
  return (
    (s.updatedReplicas ?? 0) > (old.updatedReplicas ?? 0) ||
    newOld < oldOld ||
    (s.readyReplicas ?? 0) > (old.readyReplicas ?? 0) ||
    (s.availableReplicas ?? 0) > (old.availableReplicas ?? 0)
  );
}

export function timedOut(d: Deployment, s: DStatus): boolean {
  if (!hasProgressDeadline(d)) return false;
  const c = getCondition(s.conditions, 'Progressing');
  if (!c || c.reason === NEW_RS_AVAILABLE) return false;
  if (c.reason === TIMED_OUT) return true;
  const from = Date.parse(c.lastUpdateTime ?? '');
  return Number.isFinite(from) && from + progressDeadlineSeconds(d) * 1000 < Date.now();
}

/** upstream `SetDeploymentCondition`: same status and reason ⇒ unchanged */
export function setDeploymentCondition(list: DCondition[] | undefined, c: DCondition, now: string): DCondition[] {
  const cur = list?.find((x) => x.type === c.type);
  if (cur && cur.status === c.status && cur.reason === c.reason) return list ?? [];
  const next: DCondition = { ...c, lastUpdateTime: now, lastTransitionTime: cur && cur.status === c.status ? cur.lastTransitionTime : now };
  return [...(list ?? []).filter((x) => x.type !== c.type), next];
}

export const nowTime = () => rfc3339(new Date());
