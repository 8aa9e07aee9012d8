/**
 * What a controller wrote and its informer has not shown yet (upstream `ControllerExpectations`).
 *
 * After creating 3 pods a replica set's next reconcile may run before the pod informer has
 * delivered them; counting from the cache then would create 3 more. So a controller records the
 * keys it creates or deletes *before* writing, and skips scaling until the cache reflects them
 * (present for creates; gone or terminating for deletes), or until `ttlMs` has passed.
 * Checked against the cache on every call, so it cannot go stale by missing an event.
 */
export class Expectations {
  readonly #ttlMs: number;
  readonly #byOwner = new Map<string, { creates: Set<string>; deletes: Set<string>; at: number }>();

  constructor(opts: { ttlMs?: number } = {}) {
    this.#ttlMs = opts.ttlMs ?? 60_000;
  }

  expectCreate(owner: string, key: string): void {
    this.#entry(owner).creates.add(key);
  }

  expectDelete(owner: string, key: string): void {
    this.#entry(owner).deletes.add(key);
  }

  /** the write failed: do not wait for it */
  cancel(owner: string, key: string): void {
    const e = this.#byOwner.get(owner);
    if (!e) return;
    e.creates.delete(key);
    e.deletes.delete(key);
  }

  /**
   * True when every recorded write of `owner` is visible: `seen(key)` says whether the cache
   * holds the object, `gone(key)` whether it is absent or terminating.
   */
  satisfied(owner: string, seen: (key: string) => boolean, gone: (key: string) => boolean): boolean {
    const e = this.#byOwner.get(owner);
    if (!e) return true;
    for (const k of e.creates) if (seen(k)) e.creates.delete(k);
    for (const k of e.deletes) if (gone(k)) e.deletes.delete(k);
    if ((e.creates.size === 0 && e.deletes.size === 0) || Date.now() - e.at > this.#ttlMs) {
      this.#byOwner.delete(owner);
      return true;
    }
    return false;
  }

  forget(owner: string): void {
    this.#byOwner.delete(owner);
  }

  #entry(owner: string) {
    let e = this.#byOwner.get(owner);
    if (!e) {
      e = { creates: new Set(), deletes: new Set(), at: Date.now() };
      this.#byOwner.set(owner, e);
    }
    e.at = Date.now();
    return e;
  }
}
