import type { Logger } from 'pino';
import { isApiError } from '../api/errors.js';
import { ExponentialBackoff, type Timers, WorkQueue } from '../util/work-queue.js';

/** What a reconcile asks of the runner besides "done": look again after a while. */
export interface ReconcileResult {
  requeueAfterMs?: number;
}

export interface ReconcileContext {
  /** `{ controller, key }` already bound */
  log: Logger;
  /** aborted when the reconcile times out or the runner stops: long loops should check it */
  signal: AbortSignal;
}

/**
 * One reconciler per kind. `reconcile(key)` reads the whole world (informer caches, the store),
 * converges it, writes status on a copy, and returns early when nothing is to be done. It is
 * idempotent: running it twice in a row changes nothing the second time. Throwing means "retry
 * with back-off"; returning `{ requeueAfterMs }` means "fine, but look again later".
 */
export interface Reconciler {
  reconcile(key: string, ctx: ReconcileContext): Promise<ReconcileResult | void>;
}

/** The informers a runner waits for: nothing is reconciled before all have synced. */
export interface Syncable {
  start(): Promise<void>;
  hasSynced(): boolean;
}

export interface RunnerOptions {
  /** the controller's name, in logs as `controller` */
  name: string;
  reconciler: Reconciler;
  log: Logger;
  informers: readonly Syncable[];
  /** concurrent reconciles (of distinct keys); default 2 */
  workers?: number;
  /** a reconcile running longer is aborted (its signal) and its worker moves on; default 30 s */
  timeoutMs?: number;
  /** per-key back-off after errors; default 5 ms doubling to 1000 s */
  backoff?: { baseMs?: number; maxMs?: number };
  /** how long `stop()` waits for running reconciles after aborting them; default 5 s */
  drainMs?: number;
  timers?: Timers;
}

/**
 * Owns a reconciler's queue, workers, back-off, timeouts and log context.
 *
 * A key is never reconciled by two workers at once. When a reconcile times out its signal is
 * aborted and the worker takes the next key, but the timed-out key stays "processing" until its
 * promise settles: a hung call delays that one key, never runs it twice concurrently.
 */
export class Runner {
  readonly name: string;
  readonly #reconciler: Reconciler;
  readonly #log: Logger;
  readonly #informers: readonly Syncable[];
  readonly #workers: number;
  readonly #timeoutMs: number;
  readonly #drainMs: number;
  readonly #queue: WorkQueue<string>;
  readonly #inflight = new Map<string, { abort: AbortController; settled: Promise<void> }>();
  #loops: Promise<void>[] = [];
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;

  constructor(opts: RunnerOptions) {
    this.name = opts.name;
    this.#reconciler = opts.reconciler;
    this.#log = opts.log.child({ controller: opts.name });
    this.#informers = opts.informers;
    this.#workers = Math.max(1, opts.workers ?? 2);
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.#drainMs = opts.drainMs ?? 5_000;
    this.#queue = new WorkQueue<string>({
      backoff: new ExponentialBackoff<string>(opts.backoff),
      timers: opts.timers,
    });
  }

  /** Queue a key; cheap and safe from informer handlers. Ignored after stop(). */
  enqueue(key: string): void {
    this.#queue.add(key);
  }

  enqueueAfter(key: string, ms: number): void {
    this.#queue.addAfter(key, ms);
  }

  /** keys waiting or in process (delayed re-checks not counted): 0 when the controller is quiet */
  get pending(): number {
    return this.#queue.length + this.#queue.processing;
  }

  /** Idempotent. Starts the informers, waits until they have synced, then starts the workers. */
  start(): Promise<void> {
    this.#starting ??= this.#run();
    return this.#starting;
  }

  /** Idempotent. Stops handing out keys, aborts running reconciles and waits (bounded) for them. */
  stop(): Promise<void> {
    this.#stopping ??= this.#shutdown();
    return this.#stopping;
  }

  async #run(): Promise<void> {
    await Promise.all(this.#informers.map((i) => i.start()));
    if (this.#queue.isShutDown) return;
    this.#log.debug({ workers: this.#workers }, 'informers synced, starting workers');
    for (let i = 0; i < this.#workers; i++) this.#loops.push(this.#loop());
  }

  async #shutdown(): Promise<void> {
    this.#queue.shutDown();
    const running = [...this.#inflight.values()];
    for (const r of running) r.abort.abort(new Error(`controller ${this.name} stopping`));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const drained = await Promise.race([
      Promise.all([...running.map((r) => r.settled), ...this.#loops]).then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), this.#drainMs);
      }),
    ]);
    clearTimeout(timer);
    if (!drained) this.#log.warn({ keys: [...this.#inflight.keys()] }, 'reconciles still running after stop');
  }

  async #loop(): Promise<void> {
    for (;;) {
      const key = await this.#queue.get();
      if (key === undefined) return;
      await this.#process(key);
    }
  }

  /** resolves when the reconcile settled or timed out, whichever comes first */
  #process(key: string): Promise<void> {
    const log = this.#log.child({ key });
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const started = Date.now();
    const settled = (async () => {
      try {
        const res = await this.#reconciler.reconcile(key, { log, signal: abort.signal });
        // a reconcile that outlived its timeout may have given up half-way: look again
        abort.signal.throwIfAborted();
        this.#queue.forget(key);
        if (res?.requeueAfterMs !== undefined) this.#queue.addAfter(key, res.requeueAfterMs);
        log.trace({ ms: Date.now() - started }, 'reconciled');
      } catch (err) {
        const delayMs = this.#queue.addRateLimited(key);
        const level = isApiError(err, 'Conflict') || abort.signal.aborted ? 'debug' : 'warn';
        log[level]({ err: errInfo(err), retryInMs: delayMs }, 'reconcile failed, will retry');
      } finally {
        clearTimeout(timer);
        this.#inflight.delete(key);
        this.#queue.done(key);
      }
    })();
    this.#inflight.set(key, { abort, settled });
    const timedOut = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        log.warn({ timeoutMs: this.#timeoutMs }, 'reconcile timed out; the key is retried once it settles');
        abort.abort(new Error(`reconcile of ${key} timed out after ${this.#timeoutMs} ms`));
        resolve();
      }, this.#timeoutMs);
    });
    return Promise.race([settled, timedOut]);
  }
}

function errInfo(err: unknown): unknown {
  if (err instanceof Error) return { message: err.message, reason: (err as { reason?: string }).reason };
  return err;
}
