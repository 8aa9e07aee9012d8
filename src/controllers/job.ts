import type { Logger } from 'pino';
import { isApiError } from '../api/errors.js';
import type { Container, Job, Mutable, Pod, Stored } from '../api/types.js';
import { keyOf } from '../api/types.js';
import type { Informer, InformerFactory } from '../store/informer.js';
import type { TokenBucket } from '../util/token-bucket.js';
import { IndexIntervals } from './index-intervals.js';
import type { Store } from '../store/types.js';
import { type StatusCondition, getCondition, setCondition } from './conditions.js';
import { type EventRecorder, rfc3339 } from '../store/events.js';
import { PodControl } from './pod-control.js';
import { canonicalJson } from './names.js';
import { NamespaceIndex } from './ns-index.js';
import { controllerRef, isPodReady, isTerminating, ownerRefFor, splitKey, totalRestarts } from './pod-util.js';
import { podsToDelete } from './replicaset.js';
import { type ReconcileContext, type ReconcileResult, Runner } from './runner.js';

/** upstream: a finished pod is counted in the Job's status before this finalizer lets it go */
export const JOB_TRACKING_FINALIZER = 'batch.kubernetes.io/job-tracking';
export const COMPLETION_INDEX = 'batch.kubernetes.io/job-completion-index';
export const CONTROLLER_UID_LABEL = 'batch.kubernetes.io/controller-uid';
export const JOB_NAME_LABEL = 'batch.kubernetes.io/job-name';
export const COMPLETION_INDEX_ENV = 'JOB_COMPLETION_INDEX';

/** upstream `DefaultJobPodFailureBackOff` / `MaxJobPodFailureBackOff` */
export const DEFAULT_FAILURE_BACKOFF = { initialMs: 10_000, maxMs: 360_000 };

type J = Stored<Job>;
type P = Stored<Pod>;
type JobStatus = Mutable<NonNullable<Job['status']>>;

export interface JobControllerOptions {
  store: Store;
  informers: InformerFactory;
  log: Logger;
  events: EventRecorder;
  /** delay before replacing failed pods: initialMs doubling per failure up to maxMs; default 10 s to 6 min, as upstream */
  failureBackoff?: { initialMs: number; maxMs: number };
  /** shared bound on pod creations per second (each create waits for a token) */
  podCreates?: TokenBucket;
  workers?: number;
}

const ORPHAN = 'orphan:';
/** upstream's MaxPodCreateDeletePerSync: a sync creates at most this many pods, the next sync goes on */
const MAX_CREATES_PER_SYNC = 500;

const podFinished = (p: Pod) => p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed';
const hasTracking = (p: Pod) => p.metadata?.finalizers?.includes(JOB_TRACKING_FINALIZER) ?? false;
const jobFinished = (j: Job) =>
  (j.status?.conditions ?? []).some((c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True');

/** the pod's completion index, or undefined when it has none (or a bad one) */
export function completionIndex(p: Pod): number | undefined {
  const v = p.metadata?.annotations?.[COMPLETION_INDEX];
  return v !== undefined && /^(0|[1-9]\d*)$/.test(v) ? Number(v) : undefined;
}

/**
 * Runs Jobs to completion, as upstream's job controller:
 *
 * - keeps up to `parallelism` pods running until `completions` pods succeeded (NonIndexed), or
 *   each index `0..completions-1` succeeded once (Indexed: the pod gets the annotation and label
 *   `batch.kubernetes.io/job-completion-index`, env `JOB_COMPLETION_INDEX` through the downward
 *   API, and hostname `<job>-<index>`); without `completions`, until one pod succeeded and none
 *   runs;
 * - counts every finished pod exactly once: pods carry the `batch.kubernetes.io/job-tracking`
 *   finalizer, a finished pod's uid goes to `status.uncountedTerminatedPods` first, then the
 *   finalizer is removed, then it moves to `succeeded` / `failed`;
 * - fails the Job (`Failed` condition) past `backoffLimit` (failed pods; with `restartPolicy:
 *   OnFailure` also container restarts) or `activeDeadlineSeconds`; waits before replacing failed
 *   pods (exponential back-off); on finishing deletes the pods still running;
 * - sets `Complete`, `completionTime`; deletes the Job `ttlSecondsAfterFinished` after it finished;
 * - `suspend: true` deletes the running pods and creates none.
 *
 * Pods are found by owner reference (the API server does not generate Job selectors here).
 */
export class JobController {
  readonly runner: Runner;
  readonly #store: Store;
  readonly #events: EventRecorder;
  readonly #jobs: Informer<Job>;
  readonly #pods: Informer<Pod>;
  readonly #podsByNs: NamespaceIndex<Pod>;
  readonly #podControl: PodControl;
  readonly #backoff: { initialMs: number; maxMs: number };
  /** job key → failures counted and when the last one was seen (for the replacement back-off) */
  readonly #failures = new Map<string, { count: number; at: number }>();
  /** uids of pods whose finalizer we removed and whose update the cache has not shown yet: never counted twice */
  readonly #released = new Set<string>();

  constructor(opts: JobControllerOptions) {
    this.#store = opts.store;
    this.#events = opts.events;
    this.#podControl = new PodControl({ store: opts.store, events: opts.events, podCreates: opts.podCreates });
    this.#backoff = opts.failureBackoff ?? DEFAULT_FAILURE_BACKOFF;
    this.#jobs = opts.informers.for<Job>('Job');
    this.#pods = opts.informers.for<Pod>('Pod');
    this.#podsByNs = new NamespaceIndex(this.#pods);
    this.runner = new Runner({
      name: 'job',
      reconciler: this,
      log: opts.log,
      informers: [this.#jobs, this.#pods],
      workers: opts.workers ?? 4,
    });
    this.#jobs.addHandler({
      onAdd: (j) => this.runner.enqueue(keyOf(j)),
      onUpdate: (_o, j) => this.runner.enqueue(keyOf(j)),
      onDelete: (j) => {
        this.#podControl.forget(keyOf(j));
        this.#failures.delete(keyOf(j));
        // its pods may still hold our finalizer
        for (const p of this.#podsByNs.list(j.metadata.namespace)) {
          if (controllerRef(p)?.uid === j.metadata.uid && hasTracking(p)) this.runner.enqueue(ORPHAN + keyOf(p));
        }
      },
    });
    const onPod = (p: P) => {
      if (!hasTracking(p)) this.#released.delete(p.metadata.uid);
      const ref = controllerRef(p);
      if (ref?.kind !== 'Job') return;
      const j = this.#jobs.get(p.metadata.namespace, ref.name);
      if (j && j.metadata.uid === ref.uid) this.runner.enqueue(keyOf(j));
      else if (hasTracking(p)) this.runner.enqueue(ORPHAN + keyOf(p));
    };
    this.#pods.addHandler({
      onAdd: onPod,
      onUpdate: (_o, p) => onPod(p),
      onDelete: (p) => {
        onPod(p);
        this.#released.delete(p.metadata.uid);
      },
    });
  }

  start(): Promise<void> {
    return this.runner.start();
  }

  stop(): Promise<void> {
    return this.runner.stop();
  }

  async reconcile(key: string, ctx: ReconcileContext): Promise<ReconcileResult | void> {
    if (key.startsWith(ORPHAN)) return this.#releaseOrphan(key.slice(ORPHAN.length), ctx.log);
    const job = this.#jobs.getByKey(key) as J | undefined;
    if (!job) {
      this.#podControl.forget(key);
      return;
    }
    const [namespace] = splitKey(key);
    const pods = this.#podsByNs.list(namespace).filter((p) => controllerRef(p)?.uid === job.metadata.uid);
    if (isTerminating(job)) {
      // the garbage collector removes the pods; our finalizer must not hold them
      await Promise.all(pods.filter(hasTracking).map((p) => this.#dropFinalizer(p)));
      return;
    }
    return new JobSync(this, job, pods, ctx.log).run();
  }

  /** a pod whose Job is gone keeps no finalizer of ours */
  async #releaseOrphan(podKey: string, log: Logger): Promise<void> {
    const pod = this.#pods.getByKey(podKey);
    if (!pod || !hasTracking(pod)) return;
    const ref = controllerRef(pod);
    if (ref?.kind === 'Job') {
      const job = await this.#store.tryGet<Job>('Job', pod.metadata.namespace, ref.name);
      if (job && job.metadata.uid === ref.uid && !isTerminating(job)) {
        this.runner.enqueue(keyOf(job));
        return;
      }
    }
    await this.#dropFinalizer(pod);
    log.debug({ pod: pod.metadata.name }, 'removed the tracking finalizer of a pod whose job is gone');
  }

  // ── used by JobSync ────────────────────────────────────────────────────────────────────

  get store(): Store {
    return this.#store;
  }

  get events(): EventRecorder {
    return this.#events;
  }

  get podControl(): PodControl {
    return this.#podControl;
  }

  get backoff(): { initialMs: number; maxMs: number } {
    return this.#backoff;
  }

  failures(key: string): { count: number; at: number } | undefined {
    return this.#failures.get(key);
  }

  noteFailures(key: string, n: number): void {
    const f = this.#failures.get(key) ?? { count: 0, at: 0 };
    this.#failures.set(key, { count: f.count + n, at: Date.now() });
  }

  cached(key: string): P | undefined {
    return this.#pods.getByKey(key);
  }

  released(uid: string): boolean {
    return this.#released.has(uid);
  }

  async #dropFinalizer(pod: P): Promise<void> {
    try {
      const res = await this.#store.mutate<Pod>('Pod', pod.metadata.namespace, pod.metadata.name, (p) => {
        if (p.metadata?.uid !== pod.metadata.uid || !hasTracking(p)) return false;
        p.metadata.finalizers = p.metadata.finalizers!.filter((f) => f !== JOB_TRACKING_FINALIZER);
      });
      if (res && res.metadata.uid === pod.metadata.uid && hasTracking(pod) && !hasTracking(res)) this.#released.add(pod.metadata.uid);
    } catch (err) {
      if (!isApiError(err, 'NotFound')) throw err;
    }
  }

  dropFinalizer(pod: P): Promise<void> {
    return this.#dropFinalizer(pod);
  }
}

/** One pass over a Job: count finished pods, decide whether it is done, converge its pods, write status. */
class JobSync {
  readonly #c: JobController;
  readonly #job: J;
  readonly #pods: P[];
  readonly #log: Logger;
  readonly #key: string;
  /** the job as last read or written: status writes carry its resourceVersion (Conflict when stale) */
  #base: J;
  /** the TTL removed the job: nothing more to write */
  #deleted = false;

  constructor(c: JobController, job: J, pods: P[], log: Logger) {
    this.#c = c;
    this.#job = job;
    this.#base = job;
    this.#pods = pods;
    this.#log = log;
    this.#key = keyOf(job);
  }

  get #spec() {
    return this.#job.spec!;
  }

  get #indexed(): boolean {
    return this.#spec.completionMode === 'Indexed';
  }

  async run(): Promise<ReconcileResult | void> {
    const job = this.#job;
    const now = Date.now();
    const status = structuredClone(job.status ?? {}) as JobStatus;
    const uncounted = { succeeded: [...(status.uncountedTerminatedPods?.succeeded ?? [])], failed: [...(status.uncountedTerminatedPods?.failed ?? [])] };
    const known = new Set([...uncounted.succeeded, ...uncounted.failed]);
    const completions = this.#spec.completions ?? undefined;
    // runs, not a Set: a status (or a user) saying "0-999999999" must not expand to a billion entries
    const completed = IndexIntervals.parse(status.completedIndexes, completions ?? 0);

    // 1. finished pods that still hold our finalizer are recorded as uncounted (step one of three)
    let newFailures = 0;
    for (const p of this.#pods) {
      if (!hasTracking(p) || known.has(p.metadata.uid) || this.#c.released(p.metadata.uid)) continue;
      const succeeded = p.status?.phase === 'Succeeded';
      if (!succeeded && p.status?.phase !== 'Failed' && !isTerminating(p)) continue;
      if (succeeded) {
        uncounted.succeeded.push(p.metadata.uid);
        const idx = completionIndex(p);
        if (this.#indexed && idx !== undefined && completions !== undefined && idx < completions) completed.add(idx);
      } else {
        uncounted.failed.push(p.metadata.uid);
        newFailures++;
      }
      known.add(p.metadata.uid);
    }
    if (newFailures) this.#c.noteFailures(this.#key, newFailures);
    if (known.size !== (status.uncountedTerminatedPods?.succeeded?.length ?? 0) + (status.uncountedTerminatedPods?.failed?.length ?? 0)) {
      status.uncountedTerminatedPods = uncounted;
      if (this.#indexed) status.completedIndexes = completed.format();
      await this.#writeStatus(status);
    }

    // 2. let them go, 3. count those that let go
    const byUid = new Map(this.#pods.map((p) => [p.metadata.uid, p]));
    await Promise.all([...known].map((uid) => byUid.get(uid)).filter((p): p is P => !!p && hasTracking(p)).map((p) => this.#c.dropFinalizer(p)));
    // upstream omits zero counts
    status.succeeded = (status.succeeded ?? 0) + uncounted.succeeded.length || undefined;
    status.failed = (status.failed ?? 0) + uncounted.failed.length || undefined;
    status.uncountedTerminatedPods = {};

    const active = this.#pods.filter((p) => !podFinished(p) && !isTerminating(p));
    status.active = active.length;
    status.ready = active.filter(isPodReady).length;
    status.terminating = this.#pods.filter((p) => isTerminating(p) && !podFinished(p)).length;
    const ts = rfc3339(new Date(now));
    let requeueMs: number | undefined;

    if (jobFinished(job)) {
      await this.#deleteAll(active);
      requeueMs = await this.#ttl(status, now);
      await this.#writeStatus(status);
      return requeueMs === undefined ? undefined : { requeueAfterMs: requeueMs };
    }

    // suspended: nothing runs
    const suspended = this.#spec.suspend === true;
    const conds = status.conditions as StatusCondition[] | undefined;
    if (suspended) {
      status.conditions = setCondition(conds, { type: 'Suspended', status: 'True', reason: 'JobSuspended', message: 'Job suspended', lastProbeTime: ts }, { now: ts }) as JobStatus['conditions'];
      if (getCondition(conds, 'Suspended')?.status !== 'True') this.#c.events.event(job, 'Normal', 'Suspended', 'Job suspended');
      await this.#deleteAll(active);
      status.active = 0;
      await this.#writeStatus(status);
      return;
    }
    if (getCondition(conds, 'Suspended')?.status === 'True') {
      status.conditions = setCondition(conds, { type: 'Suspended', status: 'False', reason: 'JobResumed', message: 'Job resumed', lastProbeTime: ts }, { now: ts }) as JobStatus['conditions'];
      this.#c.events.event(job, 'Normal', 'Resumed', 'Job resumed');
      delete status.startTime; // the deadline counts from the resumption
    }
    status.startTime ??= ts;

    // has it finished?
    const failure = this.#failure(status, active, now);
    const succeeded = status.succeeded ?? 0;
    const complete =
      !failure &&
      (this.#indexed
        ? completions !== undefined && completed.size >= completions
        : completions !== undefined
          ? succeeded >= completions
          : succeeded > 0 && active.length === 0);
    if (failure || complete) {
      const c: StatusCondition = failure
        ? { type: 'Failed', status: 'True', reason: failure.reason, message: failure.message, lastProbeTime: ts }
        : { type: 'Complete', status: 'True', reason: 'CompletionsReached', message: 'Reached expected number of succeeded pods', lastProbeTime: ts };
      status.conditions = setCondition(status.conditions as StatusCondition[] | undefined, c, { now: ts }) as JobStatus['conditions'];
      if (complete) {
        status.completionTime = ts;
        this.#c.events.event(job, 'Normal', 'Completed', 'Job completed');
      } else {
        this.#c.events.event(job, 'Warning', failure!.reason, failure!.message);
      }
      this.#log.info({ outcome: c.type, reason: c.reason, succeeded, failed: status.failed }, 'job finished');
      await this.#deleteAll(active);
      status.active = 0;
      requeueMs = await this.#ttl(status, now);
      await this.#writeStatus(status);
      return requeueMs === undefined ? undefined : { requeueAfterMs: requeueMs };
    }

    // converge the running pods
    const synced = this.#c.podControl.satisfied(this.#key, (k) => this.#c.cached(k));
    if (synced) requeueMs = await this.#manage(active, completed, status);
    const ads = this.#spec.activeDeadlineSeconds;
    if (ads) {
      const left = Date.parse(status.startTime) + ads * 1000 - now;
      requeueMs = Math.min(requeueMs ?? Infinity, Math.max(left, 0) + 50);
    }
    await this.#writeStatus(status);
    return requeueMs === undefined ? undefined : { requeueAfterMs: requeueMs };
  }

  /** why the job fails now, if it does */
  #failure(status: JobStatus, active: P[], now: number): { reason: string; message: string } | undefined {
    const limit = this.#spec.backoffLimit ?? 6;
    const failed = status.failed ?? 0;
    let exceeded = failed > limit;
    if (!exceeded && this.#spec.template.spec?.restartPolicy === 'OnFailure') {
      // upstream pastBackoffLimitOnFailure: container restarts count as failures
      const restarts = active.reduce((n, p) => n + totalRestarts(p) + (p.status?.initContainerStatuses ?? []).reduce((m, s) => m + (s.restartCount ?? 0), 0), 0);
      exceeded = limit === 0 ? restarts > 0 : restarts >= limit;
    }
    if (exceeded) return { reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit' };
    const ads = this.#spec.activeDeadlineSeconds;
    if (ads && status.startTime && Date.parse(status.startTime) + ads * 1000 <= now) {
      return { reason: 'DeadlineExceeded', message: 'Job was active longer than specified deadline' };
    }
    return undefined;
  }

  /** creates or deletes pods towards the wanted number; returns when to look again (failure back-off) */
  async #manage(active: P[], completed: IndexIntervals, status: JobStatus): Promise<number | undefined> {
    const parallelism = this.#spec.parallelism ?? 1;
    const completions = this.#spec.completions ?? undefined;
    const succeeded = status.succeeded ?? 0;
    let want: number;
    let indexes: number[] = [];
    if (this.#indexed) {
      const running = new Set(active.map(completionIndex));
      // at most MAX_CREATES_PER_SYNC new indexes, found by jumping over completed runs: never a walk of `completions`
      indexes = completed.missing(completions ?? 0, Math.min(parallelism, MAX_CREATES_PER_SYNC), running);
      // pods for indexes already completed (or beyond the range) are surplus
      const surplus = active.filter((p) => {
        const i = completionIndex(p);
        return i === undefined || completed.has(i) || i >= (completions ?? 0);
      });
      const keep = active.length - surplus.length;
      want = Math.min(parallelism, keep + indexes.length);
      if (surplus.length) await this.#deletePods(surplus);
      indexes = indexes.slice(0, Math.max(0, want - keep));
      if (!indexes.length) return undefined;
    } else {
      want = completions !== undefined ? Math.min(parallelism, Math.max(0, completions - succeeded)) : succeeded > 0 ? active.length : parallelism;
      if (active.length > want) {
        await this.#deletePods(podsToDelete(active, active.length - want));
        return undefined;
      }
      if (active.length === want) return undefined;
    }
    // failed pods are replaced after a back-off (upstream: 10 s doubling, up to 6 min)
    const f = this.#c.failures(this.#key);
    if (f && f.count > 0) {
      const delay = Math.min(this.#c.backoff.initialMs * 2 ** (f.count - 1), this.#c.backoff.maxMs);
      const left = f.at + delay - Date.now();
      if (left > 0) return left + 10;
    }
    const n = Math.min(this.#indexed ? indexes.length : want - active.length, MAX_CREATES_PER_SYNC);
    const results = await Promise.allSettled(Array.from({ length: n }, (_, i) => this.#createPod(this.#indexed ? indexes[i] : undefined)));
    const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult | undefined;
    if (failed) throw failed.reason;
    status.active = active.length + n;
    return undefined;
  }

  async #createPod(index: number | undefined): Promise<void> {
    const job = this.#job;
    const t = this.#spec.template;
    const prefix = index === undefined ? `${job.metadata.name}-` : `${job.metadata.name}-${index}-`;
    const spec = structuredClone(t.spec!) as Mutable<NonNullable<Pod['spec']>>;
    const annotations: Record<string, string> = { ...(t.metadata?.annotations ?? {}) };
    const labels: Record<string, string> = {
      ...(t.metadata?.labels ?? {}),
      [CONTROLLER_UID_LABEL]: job.metadata.uid,
      [JOB_NAME_LABEL]: job.metadata.name,
      'controller-uid': job.metadata.uid,
      'job-name': job.metadata.name,
    };
    if (index !== undefined) {
      annotations[COMPLETION_INDEX] = String(index);
      labels[COMPLETION_INDEX] = String(index);
      spec.hostname ??= `${job.metadata.name}-${index}`;
      const withIndex = (c: Container): Container => {
        if (c.env?.some((e) => e.name === COMPLETION_INDEX_ENV)) return c;
        const env = [...(c.env ?? []), { name: COMPLETION_INDEX_ENV, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: `metadata.annotations['${COMPLETION_INDEX}']` } } }];
        return { ...c, env };
      };
      spec.containers = spec.containers.map(withIndex);
      if (spec.initContainers) spec.initContainers = spec.initContainers.map(withIndex);
    }
    const pod: Pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        generateName: prefix,
        labels,
        annotations: Object.keys(annotations).length ? annotations : undefined,
        finalizers: [JOB_TRACKING_FINALIZER],
        ownerReferences: [ownerRefFor(job)],
      },
      spec,
    };
    await this.#c.podControl.create(job, pod, { rateLimited: true });
  }

  async #deletePods(pods: P[]): Promise<void> {
    await Promise.all(pods.map((p) => this.#c.podControl.delete(this.#job, p)));
  }

  #deleteAll(active: P[]): Promise<void> {
    return active.length ? this.#deletePods(active) : Promise.resolve();
  }

  /** `ttlSecondsAfterFinished`: delete the job (and, through the garbage collector, its pods) once it is due */
  async #ttl(status: JobStatus, now: number): Promise<number | undefined> {
    const ttl = this.#spec.ttlSecondsAfterFinished;
    if (ttl === undefined || ttl === null) return undefined;
    const done = (status.conditions ?? []).find((c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True');
    const at = Date.parse(status.completionTime ?? done?.lastTransitionTime ?? '');
    if (!Number.isFinite(at)) return undefined;
    const left = at + ttl * 1000 - now;
    if (left > 0) return left + 10;
    try {
      await this.#c.store.delete('Job', this.#job.metadata.namespace, this.#job.metadata.name, {
        preconditions: { uid: this.#job.metadata.uid },
        propagationPolicy: 'Background',
      });
      this.#deleted = true;
      this.#log.info({ ttlSeconds: ttl }, 'finished job deleted after its TTL');
    } catch (err) {
      if (!isApiError(err, 'NotFound') && !isApiError(err, 'Conflict')) throw err;
    }
    return undefined;
  }

  /** Writes the whole status over the version this pass read: a stale read fails with Conflict and the pass is retried. */
  async #writeStatus(s: JobStatus): Promise<void> {
    if (this.#deleted || canonicalJson(this.#base.status) === canonicalJson(s)) return;
    const o = structuredClone(this.#base) as Mutable<Job>;
    o.status = structuredClone(s) as Job['status'];
    this.#base = await this.#c.store.update<Job>(o, { subresource: 'status' });
  }
}
