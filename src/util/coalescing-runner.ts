export interface CoalescingRunnerOptions {
  /** the work; never runs concurrently with itself */
  fn: () => Promise<void> | void;
  /** at least this long between the starts of two runs (default 0) */
  minIntervalMs?: number;
  /** where a failed run's error goes; `run()` promises always resolve */
  onError(err: unknown): void;
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * Collapses bursts of "something changed, please sync" into one serialized run.
 *
 * ```
 *  run() run() run()        run()
 *    └─────┴────┴──► [ run #1 ]──► [ run #2 ]
 *                       ▲ all three resolve      ▲ resolves here
 * ```
 * Every `run()` resolves after a run that *started after the call* has finished, so awaiting
 * it means "everything recorded before this call has been applied". Calls made while a run is
 * pending share it; calls made while one is in progress share the next one. Errors are handed
 * to `onError` and never reject the returned promise (callers fire and forget from handlers).
 */
export class CoalescingRunner {
  readonly #fn: () => Promise<void> | void;
  readonly #minIntervalMs: number;
  readonly #onError: (err: unknown) => void;
  /** the run that callers are waiting for and that has not started yet */
  #pending: Deferred | undefined;
  #running: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #lastStart = -Infinity;
  #stopped = false;

  constructor(o: CoalescingRunnerOptions) {
    this.#fn = o.fn;
    this.#minIntervalMs = o.minIntervalMs ?? 0;
    this.#onError = o.onError;
  }

  /** Request a run; resolves once a run that started after this call has finished. */
  run(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (this.#pending) return this.#pending.promise;
    this.#pending = deferred();
    if (!this.#running) this.#schedule();
    return this.#pending.promise;
  }

  /** No more runs; waits for the one in progress. Pending callers are released. Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#pending?.resolve();
    this.#pending = undefined;
    await this.#running;
  }

  #schedule(): void {
    if (this.#timer) return;
    const wait = Math.max(0, this.#lastStart + this.#minIntervalMs - Date.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#start();
    }, wait);
  }

  #start(): void {
    const d = this.#pending;
    if (!d || this.#stopped) return;
    this.#pending = undefined;
    this.#lastStart = Date.now();
    this.#running = this.#invoke().then(() => {
      this.#running = undefined;
      d.resolve();
      if (this.#pending && !this.#stopped) this.#schedule();
    });
  }

  async #invoke(): Promise<void> {
    try {
      await this.#fn();
    } catch (err) {
      try {
        this.#onError(err);
      } catch {
        // an error handler that throws must not wedge the runner
      }
    }
  }
}
