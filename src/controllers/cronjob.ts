import { createRequire } from 'node:module';
import type { CronExpressionParser as Parser } from 'cron-parser';
import type { Logger } from 'pino';
import { isApiError } from '../api/errors.js';
import type { CronJob, Job, Mutable, Stored } from '../api/types.js';
import { keyOf } from '../api/types.js';
import type { Informer, InformerFactory } from '../store/informer.js';
import type { Store } from '../store/types.js';
import { type EventRecorder, rfc3339 } from '../store/events.js';
import { canonicalJson } from './names.js';
import { NamespaceIndex } from './ns-index.js';
import { controllerRef, isTerminating, ownerRefFor, splitKey } from './pod-util.js';
import { type ReconcileContext, Runner } from './runner.js';

// cron-parser (and luxon under it) loads on the first schedule parsed, not with the controllers:
// most clusters never have a CronJob, and every start would pay for it
let cronParser: typeof Parser | undefined;
const parser = (): typeof Parser => (cronParser ??= (createRequire(import.meta.url)('cron-parser') as typeof import('cron-parser')).CronExpressionParser);

export const SCHEDULED_TIMESTAMP = 'batch.kubernetes.io/cronjob-scheduled-timestamp';

/** upstream gives up counting missed start times past this and only runs the latest */
const MAX_MISSED = 100;

/**
 * The time source of the CronJob controller: the wall clock in the daemon, a simulated one in
 * tests (a day of schedules in seconds). `setTimeout` is in milliseconds of this clock.
 */
export interface Clock {
  now(): Date;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const wallClock: Clock = {
  now: () => new Date(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

export interface CronJobControllerOptions {
  store: Store;
  informers: InformerFactory;
  log: Logger;
  events: EventRecorder;
  clock?: Clock;
  workers?: number;
}

type CJ = Stored<CronJob>;
type J = Stored<Job>;

const finishedType = (j: Job): 'Complete' | 'Failed' | undefined =>
  j.status?.conditions?.find((c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True')?.type as 'Complete' | 'Failed' | undefined;

/**
 * A schedule and its time zone: `spec.timeZone`, or a `CRON_TZ=`/`TZ=` prefix (upstream accepts
 * the prefix from older manifests). Throws with a message that says what is wrong.
 */
export function parseSchedule(schedule: string, timeZone: string | undefined, from: Date) {
  let expr = schedule.trim();
  let tz = timeZone || undefined;
  const m = /^(?:CRON_TZ|TZ)=(\S+)\s+(.*)$/.exec(expr);
  if (m) {
    tz ??= m[1];
    expr = m[2];
  }
  if (tz) {
    try {
      new Intl.DateTimeFormat('en', { timeZone: tz });
    } catch {
      throw new Error(`unknown time zone ${tz}`);
    }
  }
  if (expr.split(/\s+/).length > 5 && !expr.startsWith('@')) throw new Error(`unparseable schedule "${schedule}": expected 5 fields (minute hour day-of-month month day-of-week)`);
  try {
    return parser().parse(expr, { currentDate: from, ...(tz ? { tz } : {}) });
  } catch (err) {
    throw new Error(`unparseable schedule "${schedule}": ${(err as Error).message}`);
  }
}

/**
 * The most recent start time in (`earliest`, `now`] and how many there were (capped just above
 * {@link MAX_MISSED}), and the next one after `now`.
 */
export function unmetSchedule(schedule: string, tz: string | undefined, earliest: Date, now: Date) {
  const it = parseSchedule(schedule, tz, earliest);
  let missed = 0;
  let last: Date | undefined;
  for (;;) {
    const t = it.next().toDate();
    if (t.getTime() > now.getTime()) break;
    last = t;
    if (++missed > MAX_MISSED) {
      // too many to walk: take the latest one directly
      last = parseSchedule(schedule, tz, new Date(now.getTime() + 1)).prev().toDate();
      break;
    }
  }
  const next = parseSchedule(schedule, tz, now).next().toDate();
  return { last, missed, next };
}

/**
 * Creates Jobs on a cron schedule, as upstream's CronJob controller (v2): each reconcile finds the
 * most recent unmet start time since `lastScheduleTime` (or creation), skips it past
 * `startingDeadlineSeconds`, applies `concurrencyPolicy` (Allow; Forbid: skip while a job runs;
 * Replace: delete the running ones first), creates `<name>-<minutes since epoch>` (a
 * deterministic name: a repeat is a no-op), keeps `status.active` / `lastScheduleTime` /
 * `lastSuccessfulTime`, deletes finished jobs beyond the history limits, and sleeps until the
 * next start time on its {@link Clock}. `suspend` stops new jobs. Standard 5-field schedules and
 * `@hourly`-style macros via cron-parser; time zones by IANA name.
 */
export class CronJobController {
  readonly runner: Runner;
  readonly #store: Store;
  readonly #events: EventRecorder;
  readonly #clock: Clock;
  readonly #cronJobs: Informer<CronJob>;
  readonly #jobsByNs: NamespaceIndex<Job>;
  readonly #wakeups = new Map<string, { at: number; handle: unknown }>();
  #stopped = false;

  constructor(opts: CronJobControllerOptions) {
    this.#store = opts.store;
    this.#events = opts.events;
    this.#clock = opts.clock ?? wallClock;
    this.#cronJobs = opts.informers.for<CronJob>('CronJob');
    const jobs = opts.informers.for<Job>('Job');
    this.#jobsByNs = new NamespaceIndex(jobs);
    this.runner = new Runner({
      name: 'cronjob',
      reconciler: this,
      log: opts.log,
      informers: [this.#cronJobs, jobs],
      workers: opts.workers ?? 2,
    });
    this.#cronJobs.addHandler({
      onAdd: (c) => this.runner.enqueue(keyOf(c)),
      onUpdate: (_o, c) => this.runner.enqueue(keyOf(c)),
      onDelete: (c) => this.#clearWakeup(keyOf(c)),
    });
    const onJob = (j: Stored<Job>) => {
      const ref = controllerRef(j);
      if (ref?.kind !== 'CronJob') return;
      const cj = this.#cronJobs.get(j.metadata.namespace, ref.name);
      if (cj && cj.metadata.uid === ref.uid) this.runner.enqueue(keyOf(cj));
    };
    jobs.addHandler({
      onAdd: onJob,
      onUpdate: (old, j) => finishedType(old) !== finishedType(j) && onJob(j),
      onDelete: onJob,
    });
  }

  start(): Promise<void> {
    return this.runner.start();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const key of [...this.#wakeups.keys()]) this.#clearWakeup(key);
    await this.runner.stop();
  }

  /** look at `key` again at clock time `at` (the earliest request wins) */
  #wakeAt(key: string, at: Date): void {
    if (this.#stopped) return;
    const prev = this.#wakeups.get(key);
    if (prev && prev.at <= at.getTime()) return;
    if (prev) this.#clock.clearTimeout(prev.handle);
    const handle = this.#clock.setTimeout(() => {
      this.#wakeups.delete(key);
      this.runner.enqueue(key);
    }, Math.max(0, at.getTime() - this.#clock.now().getTime()));
    this.#wakeups.set(key, { at: at.getTime(), handle });
  }

  #clearWakeup(key: string): void {
    const w = this.#wakeups.get(key);
    if (w) this.#clock.clearTimeout(w.handle);
    this.#wakeups.delete(key);
  }

  async reconcile(key: string, { log }: ReconcileContext): Promise<void> {
    const cj = this.#cronJobs.getByKey(key) as CJ | undefined;
    if (!cj || isTerminating(cj)) {
      this.#clearWakeup(key);
      return;
    }
    const [namespace] = splitKey(key);
    const now = this.#clock.now();
    const jobs = this.#jobsByNs.list(namespace).filter((j) => controllerRef(j)?.uid === cj.metadata.uid) as J[];
    const status = structuredClone(cj.status ?? {}) as Mutable<NonNullable<CronJob['status']>>;
    const wasActive = new Set((status.active ?? []).map((r) => r.uid));

    // what runs, what finished
    const active = jobs.filter((j) => !finishedType(j) && !isTerminating(j));
    for (const j of jobs) {
      const done = finishedType(j);
      if (done && wasActive.has(j.metadata.uid)) {
        this.#events.event(cj, 'Normal', 'SawCompletedJob', `Saw completed job: ${j.metadata.name}, condition: ${done}`);
      }
      if (done === 'Complete' && j.status?.completionTime) {
        if (!status.lastSuccessfulTime || Date.parse(j.status.completionTime) > Date.parse(status.lastSuccessfulTime)) {
          status.lastSuccessfulTime = j.status.completionTime;
        }
      }
    }
    await this.#cleanHistory(cj, jobs, log);

    const finish = async (next?: Date) => {
      status.active = active.map(jobRef).sort((a, b) => (a.name! < b.name! ? -1 : 1));
      if (!status.active.length) delete status.active;
      await this.#writeStatus(cj, status);
      if (next) this.#wakeAt(key, next);
    };

    if (cj.spec?.suspend) {
      log.debug('suspended: no new jobs');
      this.#clearWakeup(key);
      return finish();
    }

    const created = Date.parse(cj.metadata.creationTimestamp);
    let earliest = new Date(status.lastScheduleTime ? Date.parse(status.lastScheduleTime) : created);
    const sds = cj.spec?.startingDeadlineSeconds;
    if (sds !== undefined && sds !== null) {
      const bound = now.getTime() - sds * 1000;
      if (bound > earliest.getTime()) earliest = new Date(bound);
    }
    let sched: ReturnType<typeof unmetSchedule>;
    try {
      sched = unmetSchedule(cj.spec!.schedule, cj.spec?.timeZone ?? undefined, earliest, now);
    } catch (err) {
      const message = (err as Error).message;
      this.#events.event(cj, 'Warning', message.startsWith('unknown time zone') ? 'UnknownTimeZone' : 'UnparseableSchedule', message);
      log.warn({ message }, 'cannot schedule this CronJob');
      return finish();
    }
    if (sched.missed > MAX_MISSED) {
      this.#events.event(cj, 'Warning', 'TooManyMissedTimes', `too many missed start times: ${sched.missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew`);
    }
    const scheduled = sched.last;
    if (!scheduled) return finish(sched.next);

    if (sds !== undefined && sds !== null && scheduled.getTime() + sds * 1000 < now.getTime()) {
      this.#events.event(cj, 'Warning', 'MissSchedule', `Missed scheduled time to start a job: ${rfc3339(scheduled)}`);
      return finish(sched.next);
    }
    const policy = cj.spec?.concurrencyPolicy ?? 'Allow';
    if (policy === 'Forbid' && active.length) {
      this.#events.event(cj, 'Normal', 'JobAlreadyActive', 'Not starting job because prior execution is running and concurrency policy is Forbid');
      log.debug({ scheduled: rfc3339(scheduled) }, 'skipped: a job is still running (Forbid)');
      return finish(sched.next);
    }
    if (policy === 'Replace') {
      for (const j of active.splice(0)) {
        try {
          await this.#store.delete('Job', j.metadata.namespace, j.metadata.name, { preconditions: { uid: j.metadata.uid }, propagationPolicy: 'Background' });
          this.#events.event(cj, 'Normal', 'SuccessfulDelete', `Deleted job ${j.metadata.name}`);
        } catch (err) {
          if (!isApiError(err, 'NotFound') && !isApiError(err, 'Conflict')) throw err;
        }
      }
    }

    const job = await this.#createJob(cj, scheduled);
    if (job && !active.some((j) => j.metadata.uid === job.metadata.uid)) active.push(job);
    status.lastScheduleTime = rfc3339(scheduled);
    log.info({ job: job?.metadata.name, scheduled: status.lastScheduleTime }, 'started job');
    return finish(sched.next);
  }

  async #createJob(cj: CJ, scheduled: Date): Promise<J | undefined> {
    const jt = cj.spec!.jobTemplate;
    const name = `${cj.metadata.name}-${Math.floor(scheduled.getTime() / 60_000)}`;
    const job: Job = {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: {
        name,
        namespace: cj.metadata.namespace,
        labels: jt.metadata?.labels,
        annotations: { ...(jt.metadata?.annotations ?? {}), [SCHEDULED_TIMESTAMP]: rfc3339(scheduled) },
        ownerReferences: [ownerRefFor(cj)],
      },
      spec: structuredClone(jt.spec!),
    };
    try {
      const created = await this.#store.create(job);
      this.#events.event(cj, 'Normal', 'SuccessfulCreate', `Created job ${name}`);
      return created;
    } catch (err) {
      if (isApiError(err, 'AlreadyExists')) {
        // made by an earlier pass whose status write did not land; not ours: someone else's job
        const existing = await this.#store.tryGet<Job>('Job', cj.metadata.namespace, name);
        if (existing && controllerRef(existing)?.uid === cj.metadata.uid) return finishedType(existing) ? undefined : existing;
      }
      this.#events.event(cj, 'Warning', 'FailedCreate', `Error creating job: ${(err as Error).message}`);
      throw err;
    }
  }

  /** finished jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit` go, oldest first */
  async #cleanHistory(cj: CJ, jobs: J[], log: Logger): Promise<void> {
    const limits = { Complete: cj.spec?.successfulJobsHistoryLimit ?? 3, Failed: cj.spec?.failedJobsHistoryLimit ?? 1 };
    for (const type of ['Complete', 'Failed'] as const) {
      const done = jobs
        .filter((j) => finishedType(j) === type && !isTerminating(j))
        .sort((a, b) => startedAt(a) - startedAt(b));
      for (const j of done.slice(0, Math.max(0, done.length - limits[type]))) {
        try {
          await this.#store.delete('Job', j.metadata.namespace, j.metadata.name, { preconditions: { uid: j.metadata.uid }, propagationPolicy: 'Background' });
          this.#events.event(cj, 'Normal', 'SuccessfulDelete', `Deleted job ${j.metadata.name}`);
          log.debug({ job: j.metadata.name }, 'deleted finished job beyond the history limit');
        } catch (err) {
          if (!isApiError(err, 'NotFound') && !isApiError(err, 'Conflict')) throw err;
        }
      }
    }
  }

  async #writeStatus(cj: CJ, s: NonNullable<CronJob['status']>): Promise<void> {
    await this.#store.mutate<CronJob>(
      'CronJob',
      cj.metadata.namespace,
      cj.metadata.name,
      (o) => {
        if (o.metadata?.uid !== cj.metadata.uid) return false;
        const before = canonicalJson(o.status);
        (o as Mutable<CronJob>).status = structuredClone(s);
        return canonicalJson(o.status) !== before;
      },
      { subresource: 'status' },
    );
  }
}

/** when a job was meant to start: its scheduled-timestamp annotation, else its creation */
function startedAt(j: J): number {
  const a = Date.parse(j.metadata.annotations?.[SCHEDULED_TIMESTAMP] ?? '');
  return Number.isFinite(a) ? a : Date.parse(j.metadata.creationTimestamp);
}

function jobRef(j: J) {
  return { apiVersion: 'batch/v1', kind: 'Job', name: j.metadata.name, namespace: j.metadata.namespace, uid: j.metadata.uid };
}
