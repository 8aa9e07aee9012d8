/** What changed for one key since the last `take()`: the state applied before, and the newest. */
export interface Change<T> {
  /** undefined: the object did not exist at the last sync */
  readonly prev: T | undefined;
  /** undefined: the object is gone */
  readonly cur: T | undefined;
}

export interface ChangeTrackerOptions<T> {
  /** structural equality of two values; default: deep equality of plain data */
  equal?: (a: T, b: T) => boolean;
}

/**
 * Pending changes keyed `ns/name` (upstream `ServiceChangeTracker`). Keeps the *first* `prev`
 * and the *latest* `cur` per key, so a burst of updates collapses into one change; a change
 * that ends where it started (including add-then-delete) is dropped.
 */
export class ChangeTracker<T extends { readonly key: string }> {
  readonly #pending = new Map<string, Change<T>>();
  readonly #equal: (a: T, b: T) => boolean;

  constructor(o: ChangeTrackerOptions<T> = {}) {
    this.#equal = o.equal ?? deepEqual;
  }

  /** Record a change (add: no prev; delete: no cur). Returns whether anything is pending for the key. */
  update(prev: T | undefined, cur: T | undefined): boolean {
    const key = (cur ?? prev)?.key;
    if (key === undefined) return false;
    const first = this.#pending.has(key) ? this.#pending.get(key)!.prev : prev;
    if (first === undefined ? cur === undefined : cur !== undefined && this.#equal(first, cur)) {
      this.#pending.delete(key);
      return false;
    }
    this.#pending.set(key, { prev: first, cur });
    return true;
  }

  get size(): number {
    return this.#pending.size;
  }

  /**
   * Gives back changes taken by `take()` that could not be applied: each is merged under any
   * change recorded since (its `prev`, the newer `cur`), so nothing is lost and nothing is
   * applied twice out of order.
   */
  restore(taken: ReadonlyMap<string, Change<T>>): void {
    for (const [key, ch] of taken) {
      const newer = this.#pending.get(key);
      this.#pending.delete(key);
      if (!newer) this.#pending.set(key, ch);
      else if (!(ch.prev === undefined ? newer.cur === undefined : newer.cur !== undefined && this.#equal(ch.prev, newer.cur))) {
        this.#pending.set(key, { prev: ch.prev, cur: newer.cur });
      }
    }
  }

  /** All pending changes; the tracker is empty afterwards. */
  take(): Map<string, Change<T>> {
    const out = new Map(this.#pending);
    this.#pending.clear();
    return out;
  }
}

/** Deep equality of plain JSON-like data (objects, arrays, primitives). */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b, k)) return false;
    if (!deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}
