/**
 * A token bucket (client-go's `flowcontrol.NewTokenBucketRateLimiter` semantics without the
 * blocking wait): `ratePerSecond` tokens a second, at most `burst` saved up; the bucket starts
 * full. `tryTake()` never waits: callers queue what they could not do and come back after
 * `waitMs()`.
 */
export class TokenBucket {
  readonly ratePerSecond: number;
  readonly burst: number;
  readonly #now: () => number;
  #tokens: number;
  #last: number;

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

  /** ms until the next token is there (0: now) */
  waitMs(): number {
    this.#refill();
    return this.#tokens >= 1 ? 0 : Math.ceil(((1 - this.#tokens) * 1000) / this.ratePerSecond);
  }
}
