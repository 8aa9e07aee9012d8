import type { Logger } from 'pino';
import type { InformerFactory } from '../store/informer.js';
import type { Store } from '../store/types.js';
import { DeploymentController } from './deployment.js';
import { EndpointsController } from './endpoints.js';
import { EventRecorder } from '../store/events.js';
import { GarbageCollector } from './garbage-collector.js';
import { LoadBalancerController } from './load-balancer.js';
import { ReplicaSetController } from './replicaset.js';
import { Scheduler } from './scheduler.js';
import { CronJobController, type Clock } from './cronjob.js';
import { DaemonSetController } from './daemonset.js';
import { JobController } from './job.js';
import { PvcController } from './pvc.js';
import { StatefulSetController } from './statefulset.js';
import { ServiceWarnings } from './service-warnings.js';
import { ServiceAccountController } from './service-account.js';
import { NodeLifecycleController } from './node-lifecycle.js';
import { TokenBucket } from '../util/token-bucket.js';
import { HpaController, type PodMetricsSource } from './hpa.js';

export { Runner, type Reconciler, type ReconcileContext, type ReconcileResult } from './runner.js';
export { EventRecorder } from '../store/events.js';
export { type Clock, wallClock } from './cronjob.js';
export { claimDirectory } from './pvc.js';
export type { PodMetricsSource } from './hpa.js';

export interface ControllerOptions {
  store: Store;
  informers: InformerFactory;
  log: Logger;
  /** pod IP range: loopback addresses outside it are left out of Endpoints (the store refuses them) */
  podCidr?: string;
  /** the store accepts every loopback endpoint address: no pod CIDR filter */
  allowLoopbackEndpoints?: boolean;
  /** load-balancer provider pool (CIDR inside 127/8, e.g. 127.240.0.0/16); empty or unset: provider off */
  lbPool?: string;
  /** absolute; PersistentVolumeClaims are backed by `<stateDir>/volumes/<ns>/<claim>/` (unset: bound, no directory made) */
  stateDir?: string;
  /** the CronJob controller's time source; default the wall clock */
  clock?: Clock;
  /** delay before a Job replaces failed pods: initialMs doubling up to maxMs; default 10 s to 6 min */
  jobFailureBackoff?: { initialMs: number; maxMs: number };
  /**
   * pods the workload controllers create per second, all together (in bursts of `burst`): the
   * part of kube-controller-manager's client rate limit that keeps a `replicas: 1000000000`
   * from filling the store; default 100/s, bursts of 500
   */
  podCreateRate?: { perSecond: number; burst: number };
  /**
   * the node lifecycle controller (NotReady after a silent Lease, taints, eviction): for nodes of
   * several daemons on one store; unset: not run
   */
  nodeLifecycle?: { gracePeriodMs: number; evictionTimeoutMs: number };
  /** the Metrics API for the HorizontalPodAutoscaler controller; unset: no autoscaling */
  podMetrics?: PodMetricsSource;
  /** --horizontal-pod-autoscaler-sync-period; default 15 s */
  hpaSyncPeriodMs?: number;
  /** --horizontal-pod-autoscaler-downscale-stabilization (HPAs without behavior); default 5 min */
  hpaDownscaleStabilizationMs?: number;
}

interface Controller {
  readonly runner: { readonly name: string; readonly pending: number };
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Every controller of kubeloop in one place: scheduler, endpoints, replica sets and replication
 * controllers, deployments, garbage collector. Each waits for its informers before acting;
 * they meet the rest of the system only through the store.
 */
export class ControllerManager {
  readonly #controllers: Controller[];
  readonly #recorders: EventRecorder[];
  readonly #log: Logger;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;

  constructor(o: ControllerOptions) {
    const log = o.log.child({ component: 'controllers' });
    this.#log = log;
    const base = { store: o.store, informers: o.informers, log };
    const rate = o.podCreateRate ?? { perSecond: 100, burst: 500 };
    const podCreates = new TokenBucket({ ratePerSecond: rate.perSecond, burst: rate.burst });
    const recorder = (component: string) => new EventRecorder({ store: o.store, log, component });
    const rsEvents = recorder('replicaset-controller');
    const rcEvents = recorder('replication-controller');
    const deployEvents = recorder('deployment-controller');
    const schedEvents = recorder('default-scheduler');
    this.#recorders = [rsEvents, rcEvents, deployEvents, schedEvents];
    this.#controllers = [
      new Scheduler({ ...base, events: schedEvents }),
      new EndpointsController({ ...base, podCidr: o.podCidr, allowLoopbackEndpoints: o.allowLoopbackEndpoints }),
      new ReplicaSetController({ ...base, events: rsEvents, podCreates }),
      new ReplicaSetController({ ...base, events: rcEvents, legacy: true, podCreates }),
      new DeploymentController({ ...base, events: deployEvents }),
      new GarbageCollector(base),
      new ServiceAccountController(base),
    ];
    const svcEvents = recorder('service-controller');
    this.#recorders.push(svcEvents);
    this.#controllers.push(new ServiceWarnings({ ...base, events: svcEvents }));
    if (o.nodeLifecycle) {
      const nodeEvents = recorder('node-controller');
      this.#recorders.push(nodeEvents);
      this.#controllers.push(new NodeLifecycleController({ ...base, events: nodeEvents, ...o.nodeLifecycle }));
    }
    if (o.lbPool) this.#controllers.push(new LoadBalancerController({ ...base, events: svcEvents, pool: o.lbPool }));
    // workloads beyond deployments, and the claims their pods use
    const [stsEvents, dsEvents, jobEvents, cronEvents, pvcEvents] = ['statefulset-controller', 'daemonset-controller', 'job-controller', 'cronjob-controller', 'persistentvolume-controller'].map(recorder);
    this.#recorders.push(stsEvents, dsEvents, jobEvents, cronEvents, pvcEvents);
    this.#controllers.push(
      new PvcController({ ...base, events: pvcEvents, stateDir: o.stateDir }),
      new StatefulSetController({ ...base, events: stsEvents, podCreates }),
      new DaemonSetController({ ...base, events: dsEvents }),
      new JobController({ ...base, events: jobEvents, failureBackoff: o.jobFailureBackoff, podCreates }),
      new CronJobController({ ...base, events: cronEvents, clock: o.clock }),
    );
    if (o.podMetrics) {
      const hpaEvents = recorder('horizontal-pod-autoscaler');
      this.#recorders.push(hpaEvents);
      this.#controllers.push(
        new HpaController({ ...base, events: hpaEvents, metrics: o.podMetrics, syncPeriodMs: o.hpaSyncPeriodMs, downscaleStabilizationMs: o.hpaDownscaleStabilizationMs }),
      );
    }
  }

  /** keys waiting or in process over every controller (delayed re-checks not counted): 0 when all is quiet */
  get pending(): number {
    return this.#controllers.reduce((n, c) => n + c.runner.pending, 0);
  }

  /** Idempotent; resolves once every controller's informers have synced and its workers run. */
  start(): Promise<void> {
    this.#starting ??= (async () => {
      await Promise.all(this.#controllers.map((c) => c.start()));
      this.#log.info({ controllers: this.#controllers.map((c) => c.runner.name) }, 'controllers started');
    })();
    return this.#starting;
  }

  /** Idempotent; stops the controllers in reverse order, then flushes pending events. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      for (const c of [...this.#controllers].reverse()) await c.stop();
      await Promise.all(this.#recorders.map((r) => r.close()));
    })();
    return this.#stopping;
  }
}
