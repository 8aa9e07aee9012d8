/**
 * Upstream's horizontal-pod-autoscaler controller for CPU resource metrics: every sync period
 * each HorizontalPodAutoscaler reads its target's scale (Deployment, ReplicaSet, StatefulSet,
 * ReplicationController: the kinds with `/scale`), its pods and their Metrics API samples,
 * computes the replica count (hpa-replicas.ts), stabilizes and rate-limits it by `behavior`,
 * writes the target's replicas, and reports status and conditions (AbleToScale,
 * ScalingActive, ScalingLimited) with upstream's reasons and events.
 *
 * Metrics other than CPU (memory, Pods, Object, External, container resources) are reported as
 * not supported (ScalingActive False); without `behavior` the default rules apply with the
 * daemon's downscale stabilization window (upstream's legacy path differs in the scale-up
 * limit: max(2×current, 4) there, current + max(4, 100 %) per 15 s here).
 */
import type { Logger } from 'pino';
import { isApiError } from '../api/errors.js';
import { kindDecl } from '../api/kinds/index.js';
import { DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP } from '../api/kinds/autoscaling.js';
import type { PodMetrics } from '../api/kinds/metrics.js';
import { format, fromLabelSelector, fromMap, matches, type Selector } from '../api/labels.js';
import { quantityValue } from '../api/quantity.js';
import type { KObject, LabelSelector, Pod, Stored } from '../api/types.js';
import type { EventRecorder } from '../store/events.js';
import type { Informer, InformerFactory } from '../store/informer.js';
import type { Store } from '../store/types.js';
import { type StatusCondition, setCondition } from './conditions.js';
import {
  MetricError,
  type PodSample,
  type Recommendation,
  type ScaleEvent,
  type ScalingRules,
  limitByRate,
  resourceReplicas,
  stabilize,
} from './hpa-replicas.js';
import { type ReconcileContext, type ReconcileResult, Runner } from './runner.js';

/** the Metrics API as the controller reads it: PodMetrics of a namespace's pods matching a selector */
export type PodMetricsSource = (namespace: string, labelSelector: string) => Promise<PodMetrics[]>;

export const DEFAULT_HPA_SYNC_PERIOD_MS = 15_000;
export const DEFAULT_DOWNSCALE_STABILIZATION_MS = 300_000;

export interface HpaControllerOptions {
  store: Store;
  informers: InformerFactory;
  log: Logger;
  events: EventRecorder;
  metrics: PodMetricsSource;
  /** --horizontal-pod-autoscaler-sync-period, default 15 s */
  syncPeriodMs?: number;
  /** --horizontal-pod-autoscaler-downscale-stabilization for HPAs without `behavior`, default 5 min */
  downscaleStabilizationMs?: number;
}

type Rec = Record<string, unknown>;
const isRec = (v: unknown): v is Rec => v !== null && typeof v === 'object' && !Array.isArray(v);

interface Hpa extends KObject {
  spec?: {
    scaleTargetRef?: { kind?: string; name?: string; apiVersion?: string };
    minReplicas?: number;
    maxReplicas?: number;
    metrics?: Rec[];
    behavior?: { scaleUp?: Partial<ScalingRules>; scaleDown?: Partial<ScalingRules> };
  };
  status?: {
    observedGeneration?: number;
    lastScaleTime?: string;
    currentReplicas?: number;
    desiredReplicas?: number;
    currentMetrics?: Rec[];
    conditions?: StatusCondition[];
  };
}

interface Scalable extends KObject {
  spec?: { replicas?: number; selector?: LabelSelector | Record<string, string> };
}

const now = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

function rules(r: Partial<ScalingRules> | undefined, d: Readonly<Rec>, windowSeconds?: number): ScalingRules {
  const base = d as unknown as ScalingRules;
  return {
    stabilizationWindowSeconds: r?.stabilizationWindowSeconds ?? windowSeconds ?? base.stabilizationWindowSeconds,
    selectPolicy: r?.selectPolicy ?? base.selectPolicy,
    policies: r?.policies?.length ? r.policies : base.policies,
  };
}

export class HpaController {
  readonly runner: Runner;
  readonly #o: HpaControllerOptions;
  readonly #hpas: Informer<Hpa>;
  readonly #pods: Informer<Pod>;
  readonly #period: number;
  /** per HPA (`ns/name`): recent recommendations and scale events, as upstream keeps them in memory */
  readonly #history = new Map<string, { recommendations: Recommendation[]; ups: ScaleEvent[]; downs: ScaleEvent[] }>();

  constructor(o: HpaControllerOptions) {
    this.#o = o;
    this.#period = o.syncPeriodMs ?? DEFAULT_HPA_SYNC_PERIOD_MS;
    this.#hpas = o.informers.for<Hpa>('HorizontalPodAutoscaler');
    this.#pods = o.informers.for<Pod>('Pod');
    this.runner = new Runner({ name: 'horizontal-pod-autoscaler', reconciler: this, log: o.log, informers: [this.#hpas, this.#pods], workers: 2 });
    const key = (h: Hpa): string => `${h.metadata?.namespace ?? 'default'}/${h.metadata?.name ?? ''}`;
    this.#hpas.addHandler({
      onAdd: (h) => this.runner.enqueue(key(h)),
      // a status write of ours comes back as an update: only spec changes call for a sync now
      onUpdate: (a, b) => (a.metadata?.generation !== b.metadata?.generation ? this.runner.enqueue(key(b)) : undefined),
      onDelete: (h) => this.#history.delete(key(h)),
    });
  }

  start(): Promise<void> {
    return this.runner.start();
  }

  stop(): Promise<void> {
    return this.runner.stop();
  }

  async reconcile(key: string, { log }: ReconcileContext): Promise<ReconcileResult | void> {
    const [namespace, name] = key.split('/');
    const hpa = this.#hpas.get(namespace, name);
    if (!hpa || hpa.metadata.deletionTimestamp) {
      this.#history.delete(key);
      return;
    }
    await this.#sync(key, hpa, log);
    return { requeueAfterMs: this.#period };
  }

  async #sync(key: string, hpa: Stored<Hpa>, log: Logger): Promise<void> {
    const spec = hpa.spec ?? {};
    const ts = now();
    let conditions = hpa.status?.conditions ? [...hpa.status.conditions] : [];
    const set = (type: string, status: boolean, reason: string, message: string): void => {
      conditions = setCondition(conditions, { type, status: status ? 'True' : 'False', reason, message }, { now: ts });
    };
    const ref = spec.scaleTargetRef ?? {};
    const min = spec.minReplicas ?? 1;
    const max = spec.maxReplicas ?? 1;
    // the target's scale
    let target: Stored<Scalable> | undefined;
    let failure: string | undefined;
    const decl = ref.kind ? kindDecl(ref.kind) : undefined;
    if (!decl?.scale) failure = `the server could not find the requested resource (${String(ref.kind)} has no scale subresource)`;
    else {
      try {
        target = await this.#o.store.get<Scalable>(ref.kind!, hpa.metadata.namespace, ref.name ?? '');
      } catch (e) {
        failure = (e as Error).message;
      }
    }
    if (!target || !decl) {
      const msg = `the HPA controller was unable to get the target's current scale: ${failure}`;
      this.#o.events.event(hpa, 'Warning', 'FailedGetScale', failure ?? '');
      set('AbleToScale', false, 'FailedGetScale', msg);
      await this.#writeStatus(hpa, { conditions, currentReplicas: hpa.status?.currentReplicas ?? 0, desiredReplicas: hpa.status?.desiredReplicas ?? 0, currentMetrics: hpa.status?.currentMetrics });
      return;
    }
    const current = target.spec?.replicas ?? 1;
    const sel = target.spec?.selector;
    const selector: Selector = decl.scale?.selector === 'map' ? fromMap((sel ?? {}) as Record<string, string>) : fromLabelSelector(sel as LabelSelector | undefined);
    let desired: number;
    let rescaleReason = '';
    let currentMetrics = hpa.status?.currentMetrics;
    if (current === 0 && min !== 0) {
      desired = 0;
      set('ScalingActive', false, 'ScalingDisabled', 'scaling is disabled since the replica count of the target is zero');
    } else if (current > max) {
      desired = max;
      rescaleReason = 'Current number of replicas above Spec.MaxReplicas';
    } else if (current < min) {
      desired = min;
      rescaleReason = 'Current number of replicas below Spec.MinReplicas';
    } else {
      const computed = await this.#fromMetrics(hpa, current, selector, log);
      if ('error' in computed) {
        set('ScalingActive', false, computed.reason, `the HPA was unable to compute the replica count: ${computed.error}`);
        this.#o.events.event(hpa, 'Warning', computed.reason, computed.error);
        this.#o.events.event(hpa, 'Warning', 'FailedComputeMetricsReplicas', `invalid metrics (1 invalid out of ${spec.metrics?.length ?? 1}), first error is: failed to get cpu resource metric value: ${computed.error}`);
        set('AbleToScale', true, 'SucceededGetScale', 'the HPA controller was able to get the target\'s current scale');
        await this.#writeStatus(hpa, { conditions, currentReplicas: current, desiredReplicas: hpa.status?.desiredReplicas ?? current, currentMetrics: computed.currentMetrics });
        return;
      }
      currentMetrics = computed.currentMetrics;
      set('ScalingActive', true, 'ValidMetricFound', 'the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)');
      const h = this.#state(key);
      const b = spec.behavior;
      const up = rules(b?.scaleUp, DEFAULT_SCALE_UP);
      const down = rules(b?.scaleDown, DEFAULT_SCALE_DOWN, b ? undefined : (this.#o.downscaleStabilizationMs ?? DEFAULT_DOWNSCALE_STABILIZATION_MS) / 1000);
      const nowMs = Date.now();
      const st = stabilize({ current, desired: computed.replicas, up, down, history: h.recommendations, nowMs });
      set('AbleToScale', true, st.reason, st.message);
      const lim = limitByRate({ current, desired: st.replicas, min, max, up, down, ups: h.ups, downs: h.downs, nowMs });
      set('ScalingLimited', lim.limited, lim.reason, lim.message);
      desired = lim.replicas;
      if (desired > current) rescaleReason = `cpu resource utilization (percentage of request) above target`;
      else if (desired < current) rescaleReason = 'All metrics below target';
    }
    let lastScaleTime = hpa.status?.lastScaleTime;
    if (desired !== current) {
      try {
        await this.#scale(target, desired);
      } catch (e) {
        const msg = `the HPA controller was unable to update the target scale: ${(e as Error).message}`;
        set('AbleToScale', false, 'FailedUpdateScale', msg);
        this.#o.events.event(hpa, 'Warning', 'FailedRescale', `New size: ${desired}; reason: ${rescaleReason}; error: ${(e as Error).message}`);
        await this.#writeStatus(hpa, { conditions, currentReplicas: current, desiredReplicas: hpa.status?.desiredReplicas ?? current, currentMetrics });
        throw e;
      }
      this.#recordScale(key, current, desired);
      lastScaleTime = ts;
      set('AbleToScale', true, 'SucceededRescale', `the HPA controller was able to update the target scale to ${desired}`);
      this.#o.events.event(hpa, 'Normal', 'SuccessfulRescale', `New size: ${desired}; reason: ${rescaleReason}`);
      log.info({ hpa: key, from: current, to: desired, reason: rescaleReason }, 'rescaled');
    }
    await this.#writeStatus(hpa, { conditions, currentReplicas: current, desiredReplicas: desired, currentMetrics, lastScaleTime });
  }

  /** the replica count the CPU metric asks for, or why there is none */
  async #fromMetrics(hpa: Stored<Hpa>, current: number, selector: Selector, log: Logger): Promise<{ replicas: number; currentMetrics: Rec[] } | { error: string; reason: string; currentMetrics?: Rec[] }> {
    const metrics = hpa.spec?.metrics ?? [];
    const m = metrics[0];
    const res = isRec(m?.resource) ? m.resource : undefined;
    const targetPct = isRec(res?.target) ? (res!.target as Rec).averageUtilization : undefined;
    if (metrics.length !== 1 || m.type !== 'Resource' || res?.name !== 'cpu' || typeof targetPct !== 'number') {
      return { reason: 'InvalidMetricSourceType', error: 'kubeloop scales on one metric only: the cpu resource with a Utilization target (averageUtilization)' };
    }
    const ns = hpa.metadata.namespace ?? 'default';
    const pods = this.#pods.list().filter((p) => p.metadata.namespace === ns && matches(selector, p.metadata.labels ?? {}));
    let samples: Map<string, PodSample>;
    try {
      const list = await this.#o.metrics(ns, format(selector));
      samples = new Map(
        list.map((pm) => [
          pm.metadata.name,
          {
            milli: pm.containers.reduce((n, c) => n + (quantityValue(c.usage.cpu) ?? 0) * 1000, 0),
            timestampMs: Date.parse(pm.timestamp),
            windowMs: (parseFloat(pm.window) || 0) * 1000,
          },
        ]),
      );
    } catch (e) {
      log.debug({ err: e }, 'metrics unavailable');
      return { reason: 'FailedGetResourceMetric', error: `failed to get cpu utilization: unable to get metrics for resource cpu: ${(e as Error).message}` };
    }
    try {
      const r = resourceReplicas({ currentReplicas: current, targetUtilization: targetPct, pods, samples, nowMs: Date.now() });
      const currentMetrics = [{ type: 'Resource', resource: { name: 'cpu', current: { averageUtilization: r.utilization, averageValue: `${r.rawMilli}m` } } }];
      return { replicas: r.replicas, currentMetrics };
    } catch (e) {
      if (!(e instanceof MetricError)) throw e;
      const msg = e.message.startsWith('missing request') ? `failed to get cpu utilization: ${e.message}` : `failed to get cpu utilization: unable to get metrics for resource cpu: ${e.message}`;
      return { reason: 'FailedGetResourceMetric', error: msg, currentMetrics: [{ type: '' }] };
    }
  }

  #state(key: string): { recommendations: Recommendation[]; ups: ScaleEvent[]; downs: ScaleEvent[] } {
    let h = this.#history.get(key);
    if (!h) this.#history.set(key, (h = { recommendations: [], ups: [], downs: [] }));
    return h;
  }

  #recordScale(key: string, from: number, to: number): void {
    const h = this.#state(key);
    const atMs = Date.now();
    // events older than the longest policy period upstream allows (30 min) no longer count
    const keep = (e: ScaleEvent): boolean => e.atMs > atMs - 1800_000;
    h.ups = h.ups.filter(keep);
    h.downs = h.downs.filter(keep);
    if (to > from) h.ups.push({ atMs, change: to - from });
    else h.downs.push({ atMs, change: from - to });
  }

  /** the target's replicas, as its scale subresource would write them */
  async #scale(target: Stored<Scalable>, replicas: number): Promise<void> {
    let obj = target;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#o.store.update({ ...obj, spec: { ...obj.spec, replicas } } as Stored<Scalable>);
        return;
      } catch (e) {
        if (!isApiError(e, 'Conflict') || attempt >= 3) throw e;
        obj = await this.#o.store.get<Scalable>(obj.kind, obj.metadata.namespace, obj.metadata.name);
      }
    }
  }

  async #writeStatus(hpa: Stored<Hpa>, s: NonNullable<Hpa['status']>): Promise<void> {
    const status: NonNullable<Hpa['status']> = {
      ...(hpa.metadata.generation !== undefined ? { observedGeneration: hpa.metadata.generation } : {}),
      ...(s.lastScaleTime ?? hpa.status?.lastScaleTime ? { lastScaleTime: s.lastScaleTime ?? hpa.status?.lastScaleTime } : {}),
      currentReplicas: s.currentReplicas,
      desiredReplicas: s.desiredReplicas,
      ...(s.currentMetrics ? { currentMetrics: s.currentMetrics } : {}),
      conditions: s.conditions,
    };
    if (JSON.stringify(status) === JSON.stringify(hpa.status)) return;
    try {
      await this.#o.store.update({ ...hpa, status } as Stored<Hpa>, { subresource: 'status' });
    } catch (e) {
      // changed meanwhile: the next sync writes it
      if (!isApiError(e, 'Conflict') && !isApiError(e, 'NotFound')) throw e;
    }
  }
}
