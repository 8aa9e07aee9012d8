/**
 * Per-key exponential back-off, with the semantics of client-go's `flowcontrol.Backoff`
 * (which the kubelet uses for CrashLoopBackOff):
 *
 * - `next(key)` is called when an attempt starts: the first call sets the delay to `initialMs`,
 *   later ones double it up to `maxMs`.
 * - An attempt that fails within the current delay of its start is "in back-off": the retry
 *   waits until `start + delay` (`remainingMs`).
 * - A key left alone for longer than `resetAfterMs` (default 2 × maxMs: 10 min for the kubelet's
 *   10 s..5 min curve) starts over at `initialMs`.
 */
export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  /** idle time after which a key starts over; default 2 × maxMs */
  resetAfterMs?: number;
  /** clock, for tests */
  now?: () => number;
}

interface Entry {
  delayMs: number;
  /** when the current delay was set (the start of the latest attempt) */
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

  /** Records the start of an attempt and returns the delay that now applies to the key. */
  next(key: string, at = this.#now()): number {
    const e = this.#entries.get(key);
    if (!e || at - e.lastUpdate > this.resetAfterMs) {
      this.#entries.set(key, { delayMs: this.initialMs, lastUpdate: at });
      return this.initialMs;
    }
    e.delayMs = Math.min(e.delayMs * 2, this.maxMs);
    e.lastUpdate = at;
    return e.delayMs;
  }

  /** The current delay of the key (0 when it has none). */
  delayMs(key: string): number {
    return this.#entries.get(key)?.delayMs ?? 0;
  }

  /** True when `eventTime` (e.g. a failure) lies within the current delay of the latest attempt. */
  isInBackOffSince(key: string, eventTime = this.#now()): boolean {
    const e = this.#entries.get(key);
    if (!e || eventTime - e.lastUpdate > this.resetAfterMs) return false;
    return eventTime - e.lastUpdate < e.delayMs;
  }

  /** Milliseconds until the key may be retried (0 when it may be retried now). */
  remainingMs(key: string, at = this.#now()): number {
    const e = this.#entries.get(key);
    if (!e) return 0;
    return Math.max(0, e.lastUpdate + e.delayMs - at);
  }

  reset(key: string): void {
    this.#entries.delete(key);
  }

  /** Forgets keys idle for longer than resetAfterMs. */
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
