import type { KObject, Stored } from '../api/types.js';
import { keyOf, objectKey } from '../api/types.js';
import type { ListOptions, Store, Watch, WatchEvent } from './types.js';

/**
 * What an informer tells its handlers. Add and delete are updates with nothing on one side.
 * Handlers run in commit order and must be quick: update own state, enqueue, return.
 */
export interface InformerHandlers<T extends KObject> {
  onAdd?(obj: Stored<T>): void;
  onUpdate?(old: Stored<T>, cur: Stored<T>): void;
  onDelete?(obj: Stored<T>): void;
  /** once, after the initial list has been delivered as onAdd calls */
  onSynced?(): void;
}

/**
 * A read-only cache of one kind, kept current by list + watch, with handlers.
 * `hasSynced()` turns true once the initial list is in; nothing should act before it.
 */
export class Informer<T extends KObject = KObject> {
  readonly kind: string;
  readonly #store: Store;
  readonly #opts: ListOptions;
  readonly #cache = new Map<string, Stored<T>>();
  readonly #handlers: InformerHandlers<T>[] = [];
  #watch: Watch | undefined;
  #synced = false;
  #stopped = false;
  #starting: Promise<void> | undefined;
  /** how many times the watch ended and the informer listed again */
  relists = 0;

  constructor(store: Store, kind: string, opts: ListOptions = {}) {
    this.#store = store;
    this.kind = kind;
    this.#opts = opts;
  }

  /** Add handlers; if the informer has synced already, the current objects are replayed as adds. */
  addHandler(h: InformerHandlers<T>): void {
    this.#handlers.push(h);
    if (this.#synced) {
      for (const o of this.#cache.values()) h.onAdd?.(o);
      h.onSynced?.();
    }
  }

  hasSynced(): boolean {
    return this.#synced;
  }

  get(namespace: string | undefined, name: string): Stored<T> | undefined {
    return this.#cache.get(objectKey(namespace, name));
  }

  getByKey(key: string): Stored<T> | undefined {
    return this.#cache.get(key);
  }

  /** every cached object, or those of one namespace */
  list(namespace?: string): Stored<T>[] {
    const all = [...this.#cache.values()];
    return namespace === undefined ? all : all.filter((o) => o.metadata.namespace === namespace);
  }

  get size(): number {
    return this.#cache.size;
  }

  /** Idempotent: resolves once the initial list has been delivered. */
  start(): Promise<void> {
    this.#starting ??= this.#run();
    return this.#starting;
  }

  stop(): void {
    this.#stopped = true;
    this.#watch?.stop();
    this.#watch = undefined;
  }

  async #run(): Promise<void> {
    await this.#listAndWatch();
    for (const h of this.#handlers) for (const o of this.#cache.values()) h.onAdd?.(o);
    this.#synced = true;
    for (const h of this.#handlers) h.onSynced?.();
  }

  /**
   * client-go's reflector: list, then watch from the list's resourceVersion; when the watch
   * ends (410 Expired: the history moved past us), list again, tell the handlers the
   * difference as ordinary adds, updates and deletes, and watch from there.
   */
  async #listAndWatch(): Promise<void> {
    const { items, resourceVersion } = await this.#store.list<T>(this.kind, this.#opts);
    if (this.#stopped) return;
    const fresh = new Map<string, Stored<T>>();
    for (const o of items) fresh.set(keyOf(o), o);
    if (this.#synced) {
      for (const [k, old] of this.#cache) {
        if (fresh.has(k)) continue;
        this.#cache.delete(k);
        for (const h of this.#handlers) h.onDelete?.(old);
      }
      for (const [k, o] of fresh) {
        const old = this.#cache.get(k);
        this.#cache.set(k, o);
        if (old?.metadata.resourceVersion === o.metadata.resourceVersion) continue;
        for (const h of this.#handlers) {
          if (old) h.onUpdate?.(old, o);
          else h.onAdd?.(o);
        }
      }
    } else {
      for (const [k, o] of fresh) this.#cache.set(k, o);
    }
    this.#watch = this.#store.watch<T>(
      this.kind,
      { ...this.#opts, resourceVersion },
      (ev) => this.#onEvent(ev),
      () => {
        this.#watch = undefined;
        if (this.#stopped) return;
        this.relists++;
        this.#relist(0);
      },
    );
  }

  /** Lists and watches again; while the store cannot be reached, tries again (500 ms doubling to 30 s). */
  #relist(attempt: number): void {
    this.#listAndWatch().catch(() => {
      if (this.#stopped) return;
      setTimeout(() => this.#relist(attempt + 1), Math.min(30_000, 500 * 2 ** attempt)).unref();
    });
  }

  #onEvent(ev: WatchEvent<T>): void {
    const key = keyOf(ev.object);
    const old = this.#cache.get(key);
    if (ev.type === 'DELETED') {
      this.#cache.delete(key);
      if (this.#synced) for (const h of this.#handlers) h.onDelete?.(ev.object);
      return;
    }
    this.#cache.set(key, ev.object);
    if (!this.#synced) return;
    for (const h of this.#handlers) {
      if (old) h.onUpdate?.(old, ev.object);
      else h.onAdd?.(ev.object);
    }
  }
}

/** One informer per kind, shared by every component of the process. */
export class InformerFactory {
  readonly #store: Store;
  readonly #informers = new Map<string, Informer>();

  constructor(store: Store) {
    this.#store = store;
  }

  for<T extends KObject>(kind: string): Informer<T> {
    let inf = this.#informers.get(kind);
    if (!inf) {
      inf = new Informer(this.#store, kind);
      this.#informers.set(kind, inf);
    }
    return inf as unknown as Informer<T>;
  }

  /** start every informer asked for so far; resolves when all have synced */
  async start(): Promise<void> {
    await Promise.all([...this.#informers.values()].map((i) => i.start()));
  }

  stop(): void {
    for (const i of this.#informers.values()) i.stop();
  }
}
