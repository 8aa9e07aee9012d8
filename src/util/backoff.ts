/**
 * Per-key exponential back-off with the semantics of client-go's `flowcontrol.Backoff`, as the
 * kubelet uses it for CrashLoopBackOff (events are e.g. a container's finish times):
 *
 * - `next(key, t)` when a retry is made for an event at `t`: the first sets the delay to
 *   `initialMs`, later ones double it up to `maxMs`.
 * - `isInBackOffSince(key, t)`: less than the current delay has passed since `t`, so the retry
 *   must wait `remainingMs(key, t)`.
 * - An event more than `resetAfterMs` (default 2 × maxMs: 10 min for the kubelet's 10 s..5 min
 *   curve) after the previous one starts the key over at `initialMs`.
 */
export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  /** quiet time after which a key starts over; default 2 × maxMs */
  resetAfterMs?: number;
  /** clock, for tests */
  now?: () => number;
}

interface Entry {
  delayMs: number;
  /** the event time of the latest `next` */
  lastUpdate: number;
}

export class Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly resetAfterMs: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();

  constructor(opts: BackoffOptions) {
    if (!(opts.initialMs > 0) || !(opts.maxMs >= opts.initialMs)) {
      throw new Error(`bad back-off ${opts.initialMs}..${opts.maxMs} ms: need 0 < initialMs <= maxMs`);
    }
    this.initialMs = opts.initialMs;
    this.maxMs = opts.maxMs;
    this.resetAfterMs = opts.resetAfterMs ?? 2 * opts.maxMs;
    this.#now = opts.now ?? Date.now;
  }

  #live(key: string, eventTime: number): Entry | undefined {
    const e = this.#entries.get(key);
    return e && eventTime - e.lastUpdate <= this.resetAfterMs ? e : undefined;
  }

  /** Records a retry for the event at `eventTime`; returns the delay that now applies. */
  next(key: string, eventTime = this.#now()): number {
    const e = this.#live(key, eventTime);
    const delayMs = e ? Math.min(e.delayMs * 2, this.maxMs) : this.initialMs;
    this.#entries.set(key, { delayMs, lastUpdate: eventTime });
    return delayMs;
  }

  /** The current delay of the key (0 when it has none). */
  delayMs(key: string): number {
    return this.#entries.get(key)?.delayMs ?? 0;
  }

  /** True while less than the key's current delay has passed since `eventTime`. */
  isInBackOffSince(key: string, eventTime: number): boolean {
    return this.remainingMs(key, eventTime) > 0;
  }

  /** Milliseconds until a retry for the event at `eventTime` may be made. */
  remainingMs(key: string, eventTime: number): number {
    const e = this.#live(key, eventTime);
    return e ? Math.max(0, eventTime + e.delayMs - this.#now()) : 0;
  }

  reset(key: string): void {
    this.#entries.delete(key);
  }

  /** Forgets keys quiet for longer than resetAfterMs. */
  gc(at = this.#now()): void {
    for (const [k, e] of this.#entries) if (at - e.lastUpdate > this.resetAfterMs) this.#entries.delete(k);
  }

  get size(): number {
    return this.#entries.size;
  }
}

/** `10s`, `1m20s`, `300ms`: a duration as Go's `time.Duration.String` prints the kubelet's back-off. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const totalS = ms / 1000;
  const h = Math.floor(totalS / 3600);
  const m = Math.floor((totalS % 3600) / 60);
  const s = Math.round((totalS % 60) * 1000) / 1000;
  if (h) return `${h}h${m}m${s}s`;
  if (m) return `${m}m${s}s`;
  return `${s}s`;
}
