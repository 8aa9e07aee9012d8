/**
 * The HorizontalPodAutoscaler's arithmetic, after upstream's replica_calculator.go and the
 * behavior functions of horizontal.go, kept pure for tests:
 *
 * - `resourceReplicas`: desired = ceil(ready pods × usage / target), within the 0.1 tolerance;
 *   pods deleted or failed are ignored, pods pending or not yet ready (by the CPU
 *   initialization rules) count as unready, pods without a sample as missing; missing pods
 *   count as using 100 % of their request (the target's, if higher) when scaling down and
 *   nothing when scaling up, unready pods as nothing when scaling up; a result that would turn
 *   the direction around keeps the current count.
 * - `stabilize`: the lowest recommendation of the scale-up window and the highest of the
 *   scale-down window bound the new one.
 * - `limitByRate`: the scaleUp / scaleDown policies over their periods, and min/max replicas.
 */
import type { Pod } from '../api/types.js';
import { quantityValue } from '../api/quantity.js';

export const TOLERANCE = 0.1;
/** upstream --horizontal-pod-autoscaler-cpu-initialization-period and initial-readiness-delay */
export const CPU_INITIALIZATION_PERIOD_MS = 5 * 60_000;
export const INITIAL_READINESS_DELAY_MS = 30_000;

/** a pod's CPU usage, millicores, with the sample's end and window */
export interface PodSample {
  milli: number;
  timestampMs: number;
  windowMs: number;
}

export class MetricError extends Error {}

export interface ResourceReplicasResult {
  replicas: number;
  /** average usage as a percentage of the requests (of the pods with samples) */
  utilization: number;
  /** average usage, millicores */
  rawMilli: number;
}

/** Sum of the pods' CPU requests in millicores by pod name; a container without one is upstream's error. */
export function podRequests(pods: readonly Pod[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const p of pods) {
    let sum = 0;
    for (const c of p.spec?.containers ?? []) {
      const q = quantityValue((c.resources?.requests as Record<string, unknown> | undefined)?.cpu);
      if (q === undefined) throw new MetricError(`missing request for cpu in container ${c.name} of Pod ${p.metadata?.name ?? ''}`);
      sum += q * 1000;
    }
    out.set(p.metadata?.name ?? '', sum);
  }
  return out;
}

function utilizationRatio(metrics: ReadonlyMap<string, number>, requests: ReadonlyMap<string, number>, target: number): { ratio: number; utilization: number; raw: number } {
  let used = 0;
  let requested = 0;
  let n = 0;
  for (const [pod, m] of metrics) {
    const r = requests.get(pod);
    if (r === undefined) continue;
    used += m;
    requested += r;
    n++;
  }
  if (n === 0 || requested === 0) throw new MetricError('no metrics returned matched known pods');
  const utilization = Math.trunc((used * 100) / requested);
  return { ratio: utilization / target, utilization, raw: Math.trunc(used / n) };
}

/** upstream groupPods: which pods count, for the CPU resource */
function groupPods(pods: readonly Pod[], samples: ReadonlyMap<string, PodSample>, nowMs: number) {
  let ready = 0;
  const unready = new Set<string>();
  const missing = new Set<string>();
  const ignored = new Set<string>();
  for (const p of pods) {
    const name = p.metadata?.name ?? '';
    if (p.metadata?.deletionTimestamp || p.status?.phase === 'Failed') {
      ignored.add(name);
      continue;
    }
    if (p.status?.phase === 'Pending') {
      unready.add(name);
      continue;
    }
    const s = samples.get(name);
    if (!s) {
      missing.add(name);
      continue;
    }
    const cond = p.status?.conditions?.find((c) => c.type === 'Ready');
    const start = p.status?.startTime ? Date.parse(p.status.startTime) : NaN;
    let isUnready: boolean;
    if (!cond || Number.isNaN(start)) isUnready = true;
    else {
      const transition = cond.lastTransitionTime ? Date.parse(cond.lastTransitionTime) : start;
      if (start + CPU_INITIALIZATION_PERIOD_MS > nowMs) {
        // still initializing: unready, or no whole window sampled since it became ready
        isUnready = cond.status === 'False' || s.timestampMs < transition + s.windowMs;
      } else {
        // unready and never ready since it started
        isUnready = cond.status === 'False' && start + INITIAL_READINESS_DELAY_MS > transition;
      }
    }
    if (isUnready) unready.add(name);
    else ready++;
  }
  return { ready, unready, missing, ignored };
}

/** upstream GetResourceReplicas for a utilization target (percent of the requests) */
export function resourceReplicas(o: { currentReplicas: number; targetUtilization: number; pods: readonly Pod[]; samples: ReadonlyMap<string, PodSample>; nowMs: number }): ResourceReplicasResult {
  const { currentReplicas, targetUtilization, pods, nowMs } = o;
  if (pods.length === 0) throw new MetricError('no pods returned by selector while calculating replica count');
  const g = groupPods(pods, o.samples, nowMs);
  const metrics = new Map<string, number>();
  for (const [name, s] of o.samples) if (!g.unready.has(name) && !g.ignored.has(name)) metrics.set(name, s.milli);
  for (const name of [...metrics.keys()]) if (!pods.some((p) => p.metadata?.name === name)) metrics.delete(name);
  const requests = podRequests(pods);
  if (metrics.size === 0) throw new MetricError('did not receive metrics for targeted pods (pods might be unready)');
  const first = utilizationRatio(metrics, requests, targetUtilization);
  const scaleUpWithUnready = g.unready.size > 0 && first.ratio > 1;
  if (!scaleUpWithUnready && g.missing.size === 0) {
    if (Math.abs(1 - first.ratio) <= TOLERANCE) return { replicas: currentReplicas, utilization: first.utilization, rawMilli: first.raw };
    return { replicas: Math.ceil(first.ratio * g.ready), utilization: first.utilization, rawMilli: first.raw };
  }
  if (g.missing.size > 0) {
    const fallback = Math.max(100, targetUtilization);
    for (const name of g.missing) metrics.set(name, first.ratio < 1 ? ((requests.get(name) ?? 0) * fallback) / 100 : 0);
  }
  if (scaleUpWithUnready) for (const name of g.unready) metrics.set(name, 0);
  const next = utilizationRatio(metrics, requests, targetUtilization);
  const keep = { replicas: currentReplicas, utilization: first.utilization, rawMilli: first.raw };
  if (Math.abs(1 - next.ratio) <= TOLERANCE || (first.ratio < 1 && next.ratio > 1) || (first.ratio > 1 && next.ratio < 1)) return keep;
  const replicas = Math.ceil(next.ratio * metrics.size);
  if ((next.ratio < 1 && replicas > currentReplicas) || (next.ratio > 1 && replicas < currentReplicas)) return keep;
  return { replicas, utilization: first.utilization, rawMilli: first.raw };
}

// ------------------------------------------------------------------ behavior

export interface ScalingPolicy {
  type: 'Pods' | 'Percent';
  value: number;
  periodSeconds: number;
}

export interface ScalingRules {
  stabilizationWindowSeconds: number;
  selectPolicy: 'Max' | 'Min' | 'Disabled';
  policies: ScalingPolicy[];
}

export interface Recommendation {
  atMs: number;
  replicas: number;
}

export interface ScaleEvent {
  atMs: number;
  change: number;
}

/** upstream stabilizeRecommendationWithBehaviors; `history` gets the new recommendation (old ones beyond both windows dropped) */
export function stabilize(o: { current: number; desired: number; up: ScalingRules; down: ScalingRules; history: Recommendation[]; nowMs: number }): { replicas: number; reason: string; message: string } {
  const upCutoff = o.nowMs - o.up.stabilizationWindowSeconds * 1000;
  const downCutoff = o.nowMs - o.down.stabilizationWindowSeconds * 1000;
  let up = o.desired;
  let down = o.desired;
  for (const r of o.history) {
    if (r.atMs > upCutoff) up = Math.min(up, r.replicas);
    if (r.atMs > downCutoff) down = Math.max(down, r.replicas);
  }
  let replicas = o.current;
  if (replicas < up) replicas = up;
  if (replicas > down) replicas = down;
  const oldest = Math.min(upCutoff, downCutoff);
  const kept = o.history.filter((r) => r.atMs > oldest);
  o.history.length = 0;
  o.history.push(...kept, { atMs: o.nowMs, replicas: o.desired });
  if (replicas === o.desired) return { replicas, reason: 'ReadyForNewScale', message: 'recommended size matches current size' };
  if (replicas > o.desired) return { replicas, reason: 'ScaleDownStabilized', message: 'recent recommendations were higher than current one, applying the highest recent recommendation' };
  return { replicas, reason: 'ScaleUpStabilized', message: 'recent recommendations were lower than current one, applying the lowest recent recommendation' };
}

const changeInPeriod = (events: readonly ScaleEvent[], periodSeconds: number, nowMs: number): number =>
  events.filter((e) => e.atMs > nowMs - periodSeconds * 1000).reduce((n, e) => n + e.change, 0);

function scaleUpLimit(current: number, ups: readonly ScaleEvent[], downs: readonly ScaleEvent[], r: ScalingRules, nowMs: number): number {
  if (r.selectPolicy === 'Disabled') return current;
  const pick = r.selectPolicy === 'Min' ? Math.min : Math.max;
  let out = r.selectPolicy === 'Min' ? Number.MAX_SAFE_INTEGER : Number.MIN_SAFE_INTEGER;
  for (const p of r.policies) {
    const start = current - changeInPeriod(ups, p.periodSeconds, nowMs) + changeInPeriod(downs, p.periodSeconds, nowMs);
    out = pick(out, p.type === 'Pods' ? start + p.value : Math.ceil(start * (1 + p.value / 100)));
  }
  return out;
}

function scaleDownLimit(current: number, ups: readonly ScaleEvent[], downs: readonly ScaleEvent[], r: ScalingRules, nowMs: number): number {
  if (r.selectPolicy === 'Disabled') return current;
  const pick = r.selectPolicy === 'Min' ? Math.max : Math.min;
  let out = r.selectPolicy === 'Min' ? Number.MIN_SAFE_INTEGER : Number.MAX_SAFE_INTEGER;
  for (const p of r.policies) {
    const start = current - changeInPeriod(ups, p.periodSeconds, nowMs) + changeInPeriod(downs, p.periodSeconds, nowMs);
    out = pick(out, p.type === 'Pods' ? start - p.value : Math.trunc(start * (1 - p.value / 100)));
  }
  return out;
}

/** upstream convertDesiredReplicasWithBehaviorRate: the count after the rate policies and min/max, and why it is limited */
export function limitByRate(o: { current: number; desired: number; min: number; max: number; up: ScalingRules; down: ScalingRules; ups: readonly ScaleEvent[]; downs: readonly ScaleEvent[]; nowMs: number }): { replicas: number; limited: boolean; reason: string; message: string } {
  const within = { limited: false, reason: 'DesiredWithinRange', message: 'the desired count is within the acceptable range' };
  if (o.desired > o.current) {
    const limit = Math.max(o.current, scaleUpLimit(o.current, o.ups, o.downs, o.up, o.nowMs));
    const [allowed, reason, message] =
      o.max > limit
        ? [limit, 'ScaleUpLimit', 'the desired replica count is increasing faster than the maximum scale rate']
        : [o.max, 'TooManyReplicas', 'the desired replica count is more than the maximum replica count'];
    if (o.desired > allowed) return { replicas: allowed, limited: true, reason, message };
  } else if (o.desired < o.current) {
    const limit = Math.min(o.current, scaleDownLimit(o.current, o.ups, o.downs, o.down, o.nowMs));
    const [allowed, reason, message] =
      o.min < limit
        ? [limit, 'ScaleDownLimit', 'the desired replica count is decreasing faster than the maximum scale rate']
        : [o.min, 'TooFewReplicas', 'the desired replica count is less than the minimum replica count'];
    if (o.desired < allowed) return { replicas: allowed, limited: true, reason, message };
  }
  return { replicas: o.desired, ...within };
}
