import type { Logger } from 'pino';
import { ApiError, badRequest } from '../api/errors.js';
import { type KObject, type Stored, deepFreeze, requireKind } from '../api/types.js';
import { type FieldRequirement, type Selector, fieldsMatch, matches, parse as parseSelector, parseFields } from '../api/labels.js';
import { type ChangeBatch, type Storage, type StorageWatch, type StoredRecord, kindOfKey } from './storage.js';
import type { ListOptions, Watch, WatchEvent, WatchOptions } from './types.js';

/**
 * The watch cache (apiserver's Cacher): every object of every kind decoded once, frozen, kept
 * sorted per kind, and fed by the storage's change feed. Reads and watches are served from
 * here; only the registry's writes go to storage.
 *
 *     storage ── change feed (durable batches, rv order) ──► WatchCache ──► watchers (informers, API watches)
 *                                                              │
 *                                          list/get ◄──────────┘ (sorted per kind: a page costs O(limit))
 *
 * History window (watch from a resourceVersion):
 *
 *     oldest kept ─┐                         ┌─ newest (== resourceVersion)
 *     rv:  ...  [ 91 | 92 | 93 | ... | 4186 ]
 *     watch(rv=90..4186) replays what follows rv; rv < 90 ⇒ 410 Expired
 *
 * When the feed itself expires (a Redis stream trimmed past us), the cache lists again and
 * tells its watchers the difference as ordinary events; the history restarts there.
 */
export interface WatchCacheOptions {
  storage: Storage;
  log: Logger;
  /** events kept for watch-from-version (older ⇒ 410 Expired) */
  historySize?: number;
  /** internal records (`~…`) as they change: the allocators' view of storage */
  onRecord?: (key: string, value: string | undefined) => void;
  /** every object event, before watchers see it (the allocators follow Services here) */
  onEvent?: (ev: WatchEvent) => void;
}

interface Waiter {
  rv: number;
  resolve: () => void;
}

interface Watcher {
  kind: string;
  namespace?: string;
  labels?: Selector;
  fields?: FieldRequirement[];
  fn: (ev: WatchEvent) => void;
  onError?: (err: Error) => void;
  /** events waiting behind a replay; undefined once live */
  backlog?: WatchEvent[];
  stopped: boolean;
}

/** objects decoded per turn of the event loop in a relist */
const RELIST_CHUNK = 512;

const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Sort key of an object in its kind: namespace, then name (`\0` sorts before every name character). */
export const sortKey = (namespace: string | undefined, name: string): string => `${namespace ?? ''}\u0000${name}`;

class KindCache {
  objects = new Map<string, Stored<KObject>>();
  /** sort keys, ascending */
  sorted: string[] = [];

  /** the whole kind at once (a relist): one sort instead of an insertion per object */
  replace(objects: Map<string, Stored<KObject>>): void {
    this.objects = objects;
    this.sorted = [...objects.keys()].sort();
  }

  set(sk: string, obj: Stored<KObject>): Stored<KObject> | undefined {
    const old = this.objects.get(sk);
    this.objects.set(sk, obj);
    if (!old) this.sorted.splice(lowerBound(this.sorted, sk), 0, sk);
    return old;
  }

  delete(sk: string): Stored<KObject> | undefined {
    const old = this.objects.get(sk);
    if (!old) return undefined;
    this.objects.delete(sk);
    const i = lowerBound(this.sorted, sk);
    if (this.sorted[i] === sk) this.sorted.splice(i, 1);
    return old;
  }
}

function lowerBound(a: string[], k: string): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] < k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** `Kind/ns/name` → [kind, namespace|undefined, name] */
function splitKey(key: string): [string, string | undefined, string] | undefined {
  const a = key.indexOf('/');
  const b = key.indexOf('/', a + 1);
  if (a <= 0 || b < 0) return undefined;
  return [key.slice(0, a), key.slice(a + 1, b) || undefined, key.slice(b + 1)];
}

export interface CachedList {
  items: Stored<KObject>[];
  resourceVersion: string;
  /** objects after the page (only when `limit` cut the list and no selector filtered it) */
  remaining?: number;
  /** set when `limit` cut the list: pass it back as `after` for the next page */
  next?: string;
}

export class WatchCache {
  readonly #storage: Storage;
  readonly #log: Logger;
  readonly #historySize: number;
  readonly #onRecord?: (key: string, value: string | undefined) => void;
  readonly #onEvent?: (ev: WatchEvent) => void;
  readonly #kinds = new Map<string, KindCache>();
  readonly #records = new Map<string, string>();
  readonly #watchers = new Set<Watcher>();
  #history: WatchEvent[] = [];
  /** the revision the history starts after: watch(rv ≥ this) can be served */
  #historyFrom = 0;
  #rv = 0;
  #feed: StorageWatch | undefined;
  #waiters: Waiter[] = [];
  #queue: WatchEvent[] = [];
  #delivering = false;
  #stopped = false;
  #retry: NodeJS.Timeout | undefined;

  constructor(o: WatchCacheOptions) {
    this.#storage = o.storage;
    this.#log = o.log.child({ component: 'watch-cache' });
    this.#historySize = o.historySize ?? 10_000;
    this.#onRecord = o.onRecord;
    this.#onEvent = o.onEvent;
  }

  get rv(): number {
    return this.#rv;
  }

  /** Lists everything and follows the feed. Resolves once the initial list is in. */
  async start(): Promise<void> {
    await this.#relist(false);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#retry);
    this.#feed?.stop();
    this.#feed = undefined;
    for (const w of this.#watchers) w.stopped = true;
    this.#watchers.clear();
    for (const w of this.#waiters.splice(0)) w.resolve();
  }

  /** Resolves once every commit ≤ rv is in the cache (or after `timeoutMs`, false). */
  waitFor(rv: number, timeoutMs = 5000): Promise<boolean> {
    if (this.#rv >= rv || this.#stopped) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const t = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== entry);
        resolve(false);
      }, timeoutMs);
      const entry = {
        rv,
        resolve: () => {
          clearTimeout(t);
          resolve(true);
        },
      };
      this.#waiters.push(entry);
    });
  }

  /** A consistent read point: the cache has caught up with storage's latest durable revision. */
  async sync(): Promise<void> {
    const rv = await this.#storage.currentRv();
    if (rv > this.#rv) await this.waitFor(rv);
  }

  record(key: string): string | undefined {
    return this.#records.get(key);
  }

  records(prefix: string): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (const [k, v] of this.#records) if (k.startsWith(prefix)) out.push([k, v]);
    return out;
  }

  get(kind: string, namespace: string | undefined, name: string): Stored<KObject> | undefined {
    return this.#kinds.get(kind)?.objects.get(sortKey(namespace, name));
  }

  /** the kinds that have (or had) objects */
  kinds(): string[] {
    return [...this.#kinds.keys()];
  }

  count(kind: string): number {
    return this.#kinds.get(kind)?.objects.size ?? 0;
  }

  /**
   * Objects of a kind in (namespace, name) order. With `limit`, at most that many, starting
   * after `after` (a `next` from a previous page): the cost is the page, not the kind.
   */
  list(kind: string, opts: ListOptions = {}): CachedList {
    const info = requireKind(kind);
    const kc = this.#kinds.get(info.kind);
    const resourceVersion = String(this.#rv);
    if (!kc) return { items: [], resourceVersion };
    const labels = typeof opts.labelSelector === 'string' ? parseSelector(opts.labelSelector) : opts.labelSelector;
    const fields = parseFields(opts.fieldSelector, info.kind);
    const filtered = (labels !== undefined && labels.length > 0) || fields.length > 0;
    const ns = info.namespaced ? opts.namespace || undefined : undefined;
    const nsPrefix = ns !== undefined ? `${ns}\u0000` : '';
    let i = lowerBound(kc.sorted, nsPrefix);
    if (opts.after !== undefined) i = Math.max(i, lowerBound(kc.sorted, opts.after + '\u0000'));
    const first = i;
    const limit = opts.limit && opts.limit > 0 ? opts.limit : Infinity;
    const items: Stored<KObject>[] = [];
    let cut = false;
    for (; i < kc.sorted.length; i++) {
      const sk = kc.sorted[i];
      if (nsPrefix && !sk.startsWith(nsPrefix)) break;
      const o = kc.objects.get(sk)!;
      if (labels && labels.length && !matches(labels, o.metadata.labels)) continue;
      if (fields.length && !fieldsMatch(fields, o)) continue;
      if (items.length === limit) {
        cut = true;
        break;
      }
      items.push(o);
    }
    const out: CachedList = { items, resourceVersion };
    if (cut) {
      const last = items[items.length - 1];
      out.next = sortKey(last.metadata.namespace, last.metadata.name);
      if (!filtered) {
        const end = nsPrefix ? lowerBound(kc.sorted, `${ns}\u0001`) : kc.sorted.length;
        out.remaining = end - first - items.length;
      }
    }
    return out;
  }

  watch(kind: string, opts: WatchOptions, onEvent: (ev: WatchEvent) => void, onError?: (err: Error) => void): Watch {
    if (kind !== '*') requireKind(kind);
    const w: Watcher = {
      kind,
      namespace: opts.namespace,
      labels: typeof opts.labelSelector === 'string' ? parseSelector(opts.labelSelector) : opts.labelSelector,
      fields: opts.fieldSelector ? parseFields(opts.fieldSelector, kind === '*' ? undefined : kind) : undefined,
      fn: onEvent,
      onError,
      stopped: false,
    };
    const from = opts.resourceVersion && opts.resourceVersion !== '0' ? Number(opts.resourceVersion) : undefined;
    if (from !== undefined) {
      if (!Number.isInteger(from) || from < 0) throw badRequest(`invalid resourceVersion "${opts.resourceVersion}"`);
      if (from < this.#historyFrom && from < this.#rv) {
        throw new ApiError('Expired', `too old resource version: ${from} (${this.#historyFrom})`);
      }
      const replay = this.#history.filter((ev) => Number(ev.object.metadata.resourceVersion) > from);
      if (replay.length) {
        w.backlog = replay;
        queueMicrotask(() => {
          const backlog = w.backlog ?? [];
          w.backlog = undefined;
          for (const ev of backlog) this.#deliverTo(w, ev);
        });
      }
    }
    this.#watchers.add(w);
    return {
      stop: () => {
        w.stopped = true;
        this.#watchers.delete(w);
      },
    };
  }

  // ---- feeding ----

  async #relist(diff: boolean): Promise<void> {
    this.#feed?.stop();
    this.#feed = undefined;
    const { records, rv } = await this.#storage.list('');
    if (this.#stopped) return;
    // decoded a chunk at a time, stepping through the event loop (30,000 objects in one piece
    // held it ~1.3 s); the feed is stopped meanwhile, so the cache itself does not move, and it
    // changes only in the synchronous step below: a read never sees half a relist
    const next = new Map<string, Map<string, Stored<KObject>>>();
    const newRecords = new Map<string, string>();
    // after a loss of data a revision number no longer names one version of a key
    const reuse = rv >= this.#rv;
    for (let i = 0; i < records.length; i++) {
      if (i > 0 && i % RELIST_CHUNK === 0) {
        await nextTurn();
        if (this.#stopped) return;
      }
      const r = records[i];
      const kind = kindOfKey(r.key);
      if (kind === undefined) {
        newRecords.set(r.key, r.value);
        continue;
      }
      const parts = splitKey(r.key);
      if (!parts) continue;
      const sk = sortKey(parts[1], parts[2]);
      const old = this.#kinds.get(kind)?.objects.get(sk);
      const obj = reuse && old && old.metadata.resourceVersion === String(r.rv) ? old : this.#decode(r);
      if (!obj) continue;
      let m = next.get(kind);
      if (!m) next.set(kind, (m = new Map()));
      m.set(sk, obj);
    }
    const events: WatchEvent[] = [];
    for (const [kind, m] of next) {
      const kc = this.#kind(kind);
      if (!diff) continue;
      for (const [sk, obj] of m) {
        const old = kc.objects.get(sk);
        if (old !== obj) events.push(old ? { type: 'MODIFIED', object: obj, old } : { type: 'ADDED', object: obj });
      }
    }
    for (const [kind, kc] of this.#kinds) {
      const m = next.get(kind) ?? new Map<string, Stored<KObject>>();
      if (diff) {
        for (const [sk, old] of kc.objects) {
          if (m.has(sk)) continue;
          events.push({ type: 'DELETED', object: deepFreeze({ ...old, metadata: { ...old.metadata, resourceVersion: String(rv) } }) as Stored<KObject>, old });
        }
      }
      kc.replace(m);
    }
    for (const k of this.#records.keys()) if (!newRecords.has(k)) this.#onRecord?.(k, undefined);
    for (const [k, v] of newRecords) if (this.#records.get(k) !== v) this.#onRecord?.(k, v);
    this.#records.clear();
    for (const [k, v] of newRecords) this.#records.set(k, v);
    // records newer than `rv` are possible (a backend that cannot list atomically): the feed
    // from `rv` then repeats their changes, and #apply skips what a record already reflects.
    // A list older than what the cache has seen means storage lost commits (a Redis restarted
    // without persistence): the cache follows storage from there; keeping its own higher
    // revision would skip every new commit until the revisions caught up again.
    if (rv < this.#rv) {
      this.#log.error(
        { storeRv: rv, seenRv: this.#rv },
        `the store's resourceVersion went back from ${this.#rv} to ${rv}: it lost data (a Redis restarted without persistence, ` +
          'or a state dir restored from an older copy); what it lost is gone: following the store from here. ' +
          'Restart every kubeloop daemon on this store to register its nodes and system namespaces again',
      );
    }
    this.#rv = rv;
    // what happened before the relist is no longer replayable: watchers that can list again are
    // ended with 410 (as the apiserver's cacher does); the others are told the difference
    this.#history = [];
    this.#historyFrom = this.#rv;
    if (diff) {
      const gone = new ApiError('Expired', `the watch cache was re-listed at resourceVersion ${this.#rv}: list again`);
      for (const w of [...this.#watchers]) {
        if (!w.onError) continue;
        w.stopped = true;
        this.#watchers.delete(w);
        try {
          w.onError(gone);
        } catch (err) {
          this.#log.error({ err }, 'a watch error handler threw; it must not');
        }
      }
    }
    for (const ev of events) this.#emit(ev);
    if (!diff) for (const kc of this.#kinds.values()) for (const o of kc.objects.values()) this.#onEvent?.({ type: 'ADDED', object: o });
    this.#follow(rv);
    this.#wake();
  }

  #follow(from: number): void {
    this.#feed = this.#storage.watch(
      from,
      (b) => this.#apply(b),
      (err) => {
        if (this.#stopped) return;
        const expired = err instanceof ApiError && (err.reason === 'Expired' || err.reason === 'Gone');
        this.#log.warn({ err: err.message, rv: this.#rv }, expired ? 'the change feed expired: listing again' : 'the change feed ended: resuming');
        this.#feed = undefined;
        this.#retry = setTimeout(() => {
          const next = expired ? this.#relist(true) : Promise.resolve(this.#follow(this.#rv));
          next.catch((e: unknown) => {
            this.#log.warn({ err: (e as Error).message }, 'listing the store failed: retrying');
            this.#retry = setTimeout(() => void this.#relist(true).catch(() => undefined), 1000);
          });
        }, expired ? 0 : 500);
      },
    );
  }

  #apply(b: ChangeBatch): void {
    if (this.#stopped || b.rv <= this.#rv) return;
    const rvText = String(b.rv);
    for (const ch of b.changes) {
      const kind = kindOfKey(ch.key);
      if (kind === undefined) {
        if (ch.value === undefined) this.#records.delete(ch.key);
        else this.#records.set(ch.key, ch.value);
        this.#onRecord?.(ch.key, ch.value);
        continue;
      }
      const parts = splitKey(ch.key);
      if (!parts) continue;
      const sk = sortKey(parts[1], parts[2]);
      const kc = this.#kind(kind);
      const old = kc.objects.get(sk);
      if (old && Number(old.metadata.resourceVersion) >= b.rv) continue;
      if (ch.value === undefined) {
        if (!old) continue;
        kc.delete(sk);
        const last = deepFreeze({ ...old, metadata: { ...old.metadata, resourceVersion: rvText } }) as Stored<KObject>;
        this.#emit({ type: 'DELETED', object: last, old });
        continue;
      }
      const obj = this.#decode({ key: ch.key, value: ch.value, rv: b.rv }, ch.hint);
      if (!obj) continue;
      kc.set(sk, obj);
      this.#emit(old ? { type: 'MODIFIED', object: obj, old } : { type: 'ADDED', object: obj });
    }
    this.#rv = b.rv;
    this.#wake();
  }

  #decode(r: StoredRecord, hint?: unknown): Stored<KObject> | undefined {
    let obj: KObject;
    if (hint && typeof hint === 'object' && !Object.isFrozen(hint)) obj = hint as KObject;
    else {
      try {
        obj = JSON.parse(r.value) as KObject;
      } catch (err) {
        this.#log.error({ key: r.key, err: (err as Error).message }, 'a stored record is not JSON: skipped');
        return undefined;
      }
    }
    ((obj.metadata ??= {}) as { resourceVersion?: string }).resourceVersion = String(r.rv);
    return deepFreeze(obj) as Stored<KObject>;
  }

  #kind(kind: string): KindCache {
    let kc = this.#kinds.get(kind);
    if (!kc) {
      kc = new KindCache();
      this.#kinds.set(kind, kc);
    }
    return kc;
  }

  #wake(): void {
    if (!this.#waiters.length) return;
    const keep: Waiter[] = [];
    for (const w of this.#waiters) {
      if (w.rv <= this.#rv) w.resolve();
      else keep.push(w);
    }
    this.#waiters = keep;
  }

  #emit(ev: WatchEvent): void {
    this.#onEvent?.(ev);
    this.#history.push(ev);
    if (this.#history.length > this.#historySize) {
      const drop = this.#history.length - this.#historySize;
      this.#historyFrom = Number(this.#history[drop - 1].object.metadata.resourceVersion);
      this.#history.splice(0, drop);
    }
    this.#queue.push(ev);
    if (this.#delivering) return;
    this.#delivering = true;
    try {
      for (let i = 0; i < this.#queue.length; i++) {
        const e = this.#queue[i];
        for (const w of this.#watchers) {
          if (w.backlog) w.backlog.push(e);
          else this.#deliverTo(w, e);
        }
      }
    } finally {
      this.#queue = [];
      this.#delivering = false;
    }
  }

  #deliverTo(w: Watcher, ev: WatchEvent): void {
    if (w.stopped) return;
    if (w.kind !== '*' && w.kind !== ev.object.kind) return;
    if (w.namespace && ev.object.metadata.namespace !== w.namespace) return;
    let out = ev;
    if ((w.labels && w.labels.length) || (w.fields && w.fields.length)) {
      const sel = (o: KObject | undefined): boolean =>
        o !== undefined && (!w.labels || matches(w.labels, o.metadata?.labels)) && (!w.fields || fieldsMatch(w.fields, o));
      const now = sel(ev.object);
      const before = ev.type === 'MODIFIED' ? sel(ev.old) : now;
      if (!now && !before) return;
      if (ev.type === 'MODIFIED' && now !== before) out = { ...ev, type: now ? 'ADDED' : 'DELETED' };
    }
    try {
      w.fn(out);
    } catch (err) {
      this.#log.error({ err, kind: ev.object.kind }, 'a watch handler threw; it must not');
    }
  }
}
