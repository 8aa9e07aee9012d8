/**
 * A work queue of keys with client-go's contract:
 *
 * ```
 *  add(k) ──► dirty ──► queue ──get()──► processing ──done(k)──┐
 *               ▲                              │               │
 *               └──── add(k) while processing ─┘  (k stays     │
 *                     marks it dirty only;         dirty: back │
 *                     done(k) re-queues it ◄───────────────────┘ into queue)
 * ```
 *
 * - A key is queued at most once however often it is added before a worker takes it.
 * - A key handed out by `get()` is never handed out again until `done()` is called for it,
 *   so no two workers process one key at once; adds meanwhile make it run once more afterwards.
 * - `addAfter` delays an add; of several pending delays for one key the earliest wins.
 * - `addRateLimited` delays by the key's back-off (see {@link ExponentialBackoff}); `forget`
 *   resets it once the key has succeeded.
 * - `shutDown()` hands `undefined` to every waiting and later `get()`, cancels delayed adds and
 *   ignores further adds; keys being processed may still call `done()`.
 */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** ref'd on purpose: a pending retry is work; `shutDown()` clears every timer */
const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/**
 * Per-key exponential back-off: `baseMs * 2^failures`, capped at `maxMs` (client-go's
 * `DefaultControllerRateLimiter` per-item part: 5 ms doubling to 1000 s).
 */
export class ExponentialBackoff<K> {
  readonly baseMs: number;
  readonly maxMs: number;
  readonly #failures = new Map<K, number>();

  constructor(opts: { baseMs?: number; maxMs?: number } = {}) {
    this.baseMs = opts.baseMs ?? 5;
    this.maxMs = opts.maxMs ?? 1_000_000;
    if (!(this.baseMs > 0) || !(this.maxMs >= this.baseMs)) {
      throw new Error(`invalid back-off: baseMs ${this.baseMs} must be > 0 and maxMs ${this.maxMs} ≥ baseMs`);
    }
  }

  /** the delay for the next retry of `key`; counts one more failure */
  when(key: K): number {
    const n = this.#failures.get(key) ?? 0;
    this.#failures.set(key, n + 1);
    // 2^n overflows to Infinity for large n; Math.min caps it
    return Math.min(this.baseMs * 2 ** n, this.maxMs);
  }

  failures(key: K): number {
    return this.#failures.get(key) ?? 0;
  }

  forget(key: K): void {
    this.#failures.delete(key);
  }
}

export interface WorkQueueOptions<K> {
  backoff?: ExponentialBackoff<K>;
  /** injectable timers for delayed adds (tests, simulated clocks) */
  timers?: Timers;
}

export class WorkQueue<K> {
  #queue: K[] = [];
  #head = 0;
  readonly #dirty = new Set<K>();
  readonly #processing = new Set<K>();
  readonly #delayed = new Map<K, { at: number; handle: unknown }>();
  readonly #waiters: Array<(k: K | undefined) => void> = [];
  readonly #backoff: ExponentialBackoff<K>;
  readonly #timers: Timers;
  #shutDown = false;
  #idle: Array<() => void> = [];

  constructor(opts: WorkQueueOptions<K> = {}) {
    this.#backoff = opts.backoff ?? new ExponentialBackoff<K>();
    this.#timers = opts.timers ?? realTimers;
  }

  /** keys waiting for a worker (not counting delayed or in-process ones) */
  get length(): number {
    return this.#queue.length - this.#head;
  }

  /** keys handed out and not yet `done()` */
  get processing(): number {
    return this.#processing.size;
  }

  /** delayed adds not yet due */
  get delayed(): number {
    return this.#delayed.size;
  }

  get isShutDown(): boolean {
    return this.#shutDown;
  }

  add(key: K): void {
    if (this.#shutDown || this.#dirty.has(key)) return;
    this.#dirty.add(key);
    if (this.#processing.has(key)) return;
    this.#push(key);
  }

  addAfter(key: K, ms: number): void {
    if (this.#shutDown) return;
    if (!(ms > 0)) {
      this.add(key);
      return;
    }
    const at = Date.now() + ms;
    const prev = this.#delayed.get(key);
    if (prev) {
      if (prev.at <= at) return;
      this.#timers.clearTimeout(prev.handle);
    }
    const handle = this.#timers.setTimeout(() => {
      this.#delayed.delete(key);
      this.add(key);
    }, ms);
    this.#delayed.set(key, { at, handle });
  }

  /** add after the key's back-off; returns the delay chosen */
  addRateLimited(key: K): number {
    const ms = this.#backoff.when(key);
    this.addAfter(key, ms);
    return ms;
  }

  forget(key: K): void {
    this.#backoff.forget(key);
  }

  numRequeues(key: K): number {
    return this.#backoff.failures(key);
  }

  /** the next key, or undefined once the queue is shut down */
  get(): Promise<K | undefined> {
    if (this.length > 0) return Promise.resolve(this.#take());
    if (this.#shutDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  done(key: K): void {
    if (!this.#processing.delete(key)) return;
    if (this.#dirty.has(key) && !this.#shutDown) this.#push(key);
    if (this.#processing.size === 0) for (const f of this.#idle.splice(0)) f();
  }

  /** Stop handing out keys, cancel delayed adds, wake every waiting `get()` with undefined. */
  shutDown(): void {
    if (this.#shutDown) return;
    this.#shutDown = true;
    for (const { handle } of this.#delayed.values()) this.#timers.clearTimeout(handle);
    this.#delayed.clear();
    this.#queue = [];
    this.#head = 0;
    for (const w of this.#waiters.splice(0)) w(undefined);
  }

  /** resolves once no key is being processed (every handed-out key got its `done()`) */
  whenIdle(): Promise<void> {
    if (this.#processing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #push(key: K): void {
    const w = this.#waiters.shift();
    if (w) {
      this.#dirty.delete(key);
      this.#processing.add(key);
      w(key);
      return;
    }
    this.#queue.push(key);
  }

  #take(): K {
    const key = this.#queue[this.#head++];
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    this.#dirty.delete(key);
    this.#processing.add(key);
    return key;
  }
}
