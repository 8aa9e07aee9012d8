/**
 * A token bucket (client-go's `flowcontrol.NewTokenBucketRateLimiter` semantics without the
 * blocking wait): `ratePerSecond` tokens a second, at most `burst` saved up; the bucket starts
 * full. `tryTake()` never waits (callers queue what they could not do and come back after
 * `waitMs()`); `take()` waits its turn.
 */
export class TokenBucket {
  readonly ratePerSecond: number;
  readonly burst: number;
  readonly #now: () => number;
  #tokens: number;
  #last: number;
  readonly #waiters: Array<{ resolve: (took: boolean) => void; wanted: () => boolean }> = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(o: { ratePerSecond: number; burst?: number; now?: () => number }) {
    if (!(o.ratePerSecond > 0)) throw new Error(`token bucket: rate must be > 0, got ${o.ratePerSecond}`);
    this.ratePerSecond = o.ratePerSecond;
    this.burst = Math.max(1, Math.floor(o.burst ?? o.ratePerSecond));
    this.#now = o.now ?? Date.now;
    this.#tokens = this.burst;
    this.#last = this.#now();
  }

  #refill(): void {
    const now = this.#now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) / 1000) * this.ratePerSecond);
    this.#last = now;
  }

  /** takes one token when there is one */
  tryTake(): boolean {
    this.#refill();
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /**
   * Resolves true once a token is taken, in call order (client-go's blocking `Wait`): a burst
   * of callers is spread at the rate instead of going at once. A caller whose `wanted()` turns
   * false while it waits is let go without a token (resolves false).
   */
  take(wanted: () => boolean = () => true): Promise<boolean> {
    if (!this.#waiters.length && this.tryTake()) return Promise.resolve(true);
    return new Promise((resolve) => {
      this.#waiters.push({ resolve, wanted });
      this.#serve();
    });
  }

  #serve(): void {
    if (this.#timer) return;
    for (;;) {
      const w = this.#waiters[0];
      if (!w) return;
      if (!w.wanted()) {
        this.#waiters.shift();
        w.resolve(false);
        continue;
      }
      if (!this.tryTake()) break;
      this.#waiters.shift();
      w.resolve(true);
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#serve();
    }, Math.max(1, this.waitMs()));
  }

  /** ms until the next token is there (0: now) */
  waitMs(): number {
    this.#refill();
    return this.#tokens >= 1 ? 0 : Math.ceil(((1 - this.#tokens) * 1000) / this.ratePerSecond);
  }
}
