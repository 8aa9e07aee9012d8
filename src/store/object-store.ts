import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import {
  type KObject,
  type KindInfo,
  type Mutable,
  type ObjectMeta,
  type OwnerReference,
  type Pod,
  type Stored,
  clone,
  deepFreeze,
  objectKey,
  requireKind,
} from '../api/types.js';
import { ApiError, alreadyExists, conflict, invalidObject, notFound } from '../api/errors.js';
import { required } from '../api/field.js';
import type { Strategies } from './strategy.js';
import { WatchCache } from './cache.js';
import { type CommitResult, type StorageOp, type Storage, type StoredRecord, recordKey } from './storage.js';
import type {
  DeleteOptions,
  ListOptions,
  ListResult,
  Store,
  Watch,
  WatchEvent,
  WatchOptions,
  WriteOptions,
} from './types.js';

export interface ObjectStoreOptions {
  strategies: Strategies;
  storage: Storage;
  log: Logger;
  /** how many events watch-from-version can replay (older ⇒ 410 Expired) */
  historySize?: number;
}

const now = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

const NAME_CHARS = 'bcdfghjklmnpqrstvwxz2456789';
export const randomSuffix = (n = 5): string => {
  let s = '';
  for (let i = 0; i < n; i++) s += NAME_CHARS[Math.floor(Math.random() * NAME_CHARS.length)];
  return s;
};

/** Everything but metadata and status: a change here bumps `metadata.generation`. */
function specOf(o: KObject): unknown {
  const { metadata: _m, status: _s, ...rest } = o as KObject & { status?: unknown };
  return rest;
}

/** The stored form: the object without its resourceVersion (the version lives beside it, as etcd's mod_revision). */
function encode(obj: KObject): string {
  const m = obj.metadata as Mutable<ObjectMeta> | undefined;
  if (m) delete m.resourceVersion;
  return JSON.stringify(obj);
}

/** namespaces that may not be deleted (upstream's NamespaceLifecycle `immortalNamespaces`) */
const IMMORTAL_NAMESPACES: ReadonlySet<string> = new Set(['default', 'kube-system', 'kube-public']);

const STALE = 'the object has been modified; please apply your changes to the latest version and try again';
/** how often a write is retried when another writer (or an allocation race) got there first */
const MAX_ATTEMPTS = 16;

/**
 * The registry (apiserver's `registry/generic` + strategies): defaulting, validation,
 * allocation, stamping, finalizers, graceful deletion and cascades, over a `Storage` backend.
 * Reads and watches come from the watch cache; every write is one conditional storage commit
 * (compare the resourceVersion the write was based on), so several registries on one storage
 * (several daemons on one Redis) never lose an update: one wins, the other gets 409 Conflict.
 *
 * A write resolves once storage made it durable and the cache holds it, so a caller reads its
 * own writes. Reads without a version are consistent: the cache first catches up with the
 * storage's latest revision (apiserver's consistent reads from cache).
 */
export class ObjectStore implements Store {
  readonly #cache: WatchCache;
  readonly #storage: Storage;
  readonly #strategies: Strategies;
  readonly #log: Logger;
  #closed = false;

  constructor(o: ObjectStoreOptions) {
    this.#strategies = o.strategies;
    this.#storage = o.storage;
    this.#log = o.log.child({ component: 'store' });
    this.#cache = new WatchCache({
      storage: o.storage,
      log: o.log,
      historySize: o.historySize,
      onRecord: (key, value) => this.#strategies.observeRecord(key, value),
      onEvent: (ev) => this.#strategies.observe(ev),
    });
  }

  /** Lists the storage into the cache and follows its changes (once, before use). */
  async load(): Promise<void> {
    await this.#cache.start();
    await this.#repairAllocations();
  }

  get resourceVersion(): string {
    return String(this.#cache.rv);
  }

  /** the backend's name (`embedded`, `redis`) */
  get backend(): string {
    return this.#storage.name;
  }

  async get<T extends KObject>(kind: string, namespace: string | undefined, name: string): Promise<Stored<T>> {
    const info = requireKind(kind);
    const o = await this.tryGet<T>(info.kind, namespace, name);
    if (!o) throw notFound(info.plural, name);
    return o;
  }

  async tryGet<T extends KObject>(kind: string, namespace: string | undefined, name: string): Promise<Stored<T> | undefined> {
    const info = requireKind(kind);
    await this.#cache.sync();
    return this.#cache.get(info.kind, info.namespaced ? namespace || 'default' : undefined, name) as Stored<T> | undefined;
  }

  async list<T extends KObject>(kind: string, opts: ListOptions = {}): Promise<ListResult<T>> {
    const info = requireKind(kind);
    await this.#cache.sync();
    const r = this.#cache.list(info.kind, opts);
    const out: ListResult<T> = { items: r.items as Stored<T>[], resourceVersion: r.resourceVersion };
    if (r.next !== undefined) out.next = r.next;
    if (r.remaining !== undefined) out.remaining = r.remaining;
    return out;
  }

  async create<T extends KObject>(input: T, opts: WriteOptions = {}): Promise<Stored<T>> {
    for (let attempt = 0; ; attempt++) {
      this.#open();
      const obj = clone(input) as KObject;
      const info = requireKind(obj.kind ?? '');
      obj.apiVersion ??= info.apiVersion;
      const meta = (obj.metadata ??= {});
      if (info.namespaced) meta.namespace ||= 'default';
      else delete meta.namespace;
      if (!meta.name && meta.generateName) meta.name = `${meta.generateName}${randomSuffix()}`;
      const name = meta.name ?? '';
      if (!name) throw invalidObject(info.kind, '', [required('metadata.name', 'name or generateName is required')]);
      if (info.namespaced) {
        await this.#cache.sync();
        const ns = this.#cache.get('Namespace', undefined, meta.namespace!);
        if (!ns) throw notFound('namespaces', meta.namespace!);
        if (ns.metadata.deletionTimestamp) {
          throw new ApiError(
            'Forbidden',
            `${info.plural} "${name}" is forbidden: unable to create new content in namespace ${meta.namespace} because it is being terminated`,
          );
        }
      }
      const key = objectKey(meta.namespace, name);
      if (this.#cache.get(info.kind, meta.namespace, name)) throw alreadyExists(info.plural, name);
      if (info.hasStatus) delete (obj as { status?: unknown }).status;
      // the uid exists before defaulting: a Job's generated selector is built from it
      (meta as Mutable<ObjectMeta>).uid = randomUUID();
      this.#strategies.prepare(obj);
      const errs = this.#strategies.validate(obj);
      if (errs.length) throw invalidObject(info.kind, name, errs);
      const allocErrs = this.#strategies.allocate(key, obj);
      if (allocErrs.length) throw invalidObject(info.kind, name, allocErrs);
      if (opts.dryRun) {
        this.#strategies.release(obj);
        return deepFreeze(this.#stamp(obj, undefined)) as Stored<T>;
      }
      const stamped = this.#stamp(obj, undefined);
      const rk = recordKey(info.kind, meta.namespace, name);
      const ops: StorageOp[] = [{ op: 'create', key: rk, value: encode(stamped), hint: stamped }, ...this.#allocationOps(stamped, undefined)];
      const res = await this.#commit(ops, () => this.#strategies.release(obj));
      if (res.ok) return (await this.#result(info, meta.namespace, name, res.rv, ops[0])) as Stored<T>;
      this.#strategies.release(obj);
      if (res.index === 0) throw alreadyExists(info.plural, name);
      // an address or port another writer took since this registry last heard: note it and pick again
      this.#strategies.observeRecord(ops[res.index].key, res.current?.value ?? '?');
      if (attempt >= MAX_ATTEMPTS) throw new ApiError('Conflict', `${info.plural} "${name}": allocation kept racing with other writers; try again`);
    }
  }

  async update<T extends KObject>(input: T, opts: WriteOptions = {}): Promise<Stored<T>> {
    this.#open();
    const info = requireKind(input.kind ?? '');
    const name = input.metadata?.name ?? '';
    const ns = info.namespaced ? input.metadata?.namespace || 'default' : undefined;
    const rv = input.metadata?.resourceVersion;
    let old = await this.tryGet<KObject>(info.kind, ns, name);
    for (let attempt = 0; ; attempt++) {
      if (!old) throw notFound(info.plural, name);
      if (rv && rv !== old.metadata.resourceVersion) throw conflict(info.plural, name, STALE);
      const uid = input.metadata?.uid;
      if (uid && uid !== old.metadata.uid) {
        throw conflict(info.plural, name, `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${old.metadata.uid}`);
      }
      let obj: KObject;
      if (opts.subresource === 'status') {
        obj = clone(old) as KObject;
        (obj as { status?: unknown }).status = clone((input as { status?: unknown }).status);
      } else if (opts.subresource === 'ephemeralcontainers') {
        // upstream's podEphemeralContainersStrategy: the stored pod with the request's ephemeral containers
        obj = clone(old) as KObject;
        const spec = ((obj as { spec?: Record<string, unknown> }).spec ??= {});
        const want = (input as { spec?: { ephemeralContainers?: unknown } }).spec?.ephemeralContainers;
        if (want === undefined || want === null) delete spec.ephemeralContainers;
        else spec.ephemeralContainers = clone(want);
        this.#strategies.prepare(obj, old);
      } else {
        obj = clone(input) as KObject;
        obj.apiVersion = info.apiVersion;
        if (info.hasStatus) {
          const st = (old as { status?: unknown }).status;
          if (st === undefined) delete (obj as { status?: unknown }).status;
          else (obj as { status?: unknown }).status = clone(st);
        }
        const m = (obj.metadata ??= {});
        m.namespace = old.metadata.namespace;
        if (!info.namespaced) delete m.namespace;
        this.#strategies.prepare(obj, old);
      }
      const key = objectKey(old.metadata.namespace, name);
      const errs = this.#strategies.validate(obj, old, opts.subresource);
      if (errs.length) throw invalidObject(info.kind, name, errs);
      if (opts.subresource === undefined) {
        const allocErrs = this.#strategies.allocate(key, obj, old);
        if (allocErrs.length) throw invalidObject(info.kind, name, allocErrs);
      }
      const next = this.#stamp(obj, old) as Stored<KObject>;
      if (opts.dryRun) return deepFreeze({ ...next, metadata: { ...next.metadata, resourceVersion: old.metadata.resourceVersion } }) as Stored<T>;
      if (isDeepStrictEqual(specAndMeta(next), specAndMeta(old))) return old as Stored<T>;
      if (next.metadata.deletionTimestamp && old.metadata.finalizers?.length && !next.metadata.finalizers?.length) {
        // the last finalizer went: the object is gone
        return (await this.#remove(info, old)) as Stored<T>;
      }
      const rk = recordKey(info.kind, old.metadata.namespace, name);
      const ops: StorageOp[] = [
        { op: 'update', key: rk, value: encode(next), expectRv: Number(old.metadata.resourceVersion), hint: next },
        ...this.#allocationOps(next, old),
      ];
      const before = old;
      const res = await this.#commit(ops, () => this.#strategies.resync(obj, before));
      if (res.ok) return (await this.#result(info, old.metadata.namespace, name, res.rv, ops[0])) as Stored<T>;
      this.#strategies.resync(obj, old);
      if (res.index === 0) {
        // the object moved on since the version this write was based on
        const cur = res.current ? this.#decode(res.current) : undefined;
        if (rv && cur?.metadata.resourceVersion !== rv) throw conflict(info.plural, name, STALE);
        if (attempt >= MAX_ATTEMPTS) throw conflict(info.plural, name, STALE);
        old = cur;
        continue;
      }
      this.#strategies.observeRecord(ops[res.index].key, res.current?.value ?? '?');
      if (attempt >= MAX_ATTEMPTS) throw conflict(info.plural, name, 'allocation kept racing with other writers; try again');
      old = await this.tryGet<KObject>(info.kind, ns, name);
    }
  }

  async delete<T extends KObject>(
    kind: string,
    namespace: string | undefined,
    name: string,
    opts: DeleteOptions = {},
  ): Promise<Stored<T>> {
    this.#open();
    const info = requireKind(kind);
    const ns = info.namespaced ? namespace || 'default' : undefined;
    for (let attempt = 0; ; attempt++) {
      const old = await this.tryGet<KObject>(info.kind, ns, name);
      if (!old) throw notFound(info.plural, name);
      const pre = opts.preconditions;
      if (pre?.uid && pre.uid !== old.metadata.uid) {
        throw conflict(info.plural, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${old.metadata.uid}`);
      }
      if (pre?.resourceVersion && pre.resourceVersion !== old.metadata.resourceVersion) throw conflict(info.plural, name, STALE);
      try {
        return (await this.#deleteOnce(info, old, opts)) as Stored<T>;
      } catch (e) {
        // raced with another writer: decide again on what is there now (upstream's GuaranteedUpdate)
        if (e instanceof ApiError && e.reason === 'Conflict' && !pre?.resourceVersion && attempt < MAX_ATTEMPTS) continue;
        throw e;
      }
    }
  }

  async #deleteOnce(info: KindInfo, old: Stored<KObject>, opts: DeleteOptions): Promise<Stored<KObject>> {
    const name = old.metadata.name;
    if (info.kind === 'Namespace' && IMMORTAL_NAMESPACES.has(name)) {
      // upstream's NamespaceLifecycle admission: deleting one would take every system object with it
      throw new ApiError('Forbidden', `${info.plural} "${name}" is forbidden: this namespace may not be deleted`);
    }
    const graceful = this.#gracePeriod(info, old, opts);
    if (opts.dryRun) return old;
    if (info.kind === 'Namespace') return this.#deleteNamespace(info, old);
    if (opts.propagationPolicy === 'Orphan') await this.#orphanDependents(old.metadata.uid);
    if (opts.propagationPolicy === 'Foreground' && !old.metadata.deletionTimestamp && this.#hasDependents(old.metadata.uid)) {
      // the garbage collector deletes the dependents, then drops the finalizer; the owner goes last
      const next = clone(old) as KObject;
      const m = next.metadata as Mutable<ObjectMeta>;
      m.finalizers = [...(m.finalizers ?? []), 'foregroundDeletion'];
      m.deletionTimestamp = now();
      m.deletionGracePeriodSeconds = 0;
      return this.#put(info, this.#stamp(next, old), old);
    }
    if (graceful !== undefined || old.metadata.finalizers?.length) {
      if (old.metadata.deletionTimestamp && graceful === undefined) return old;
      const next = clone(old) as KObject;
      const m = next.metadata as Mutable<ObjectMeta>;
      if (!m.deletionTimestamp || (graceful !== undefined && graceful < (m.deletionGracePeriodSeconds ?? Infinity))) {
        m.deletionTimestamp = new Date(Date.now() + (graceful ?? 0) * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
        m.deletionGracePeriodSeconds = graceful ?? 0;
        return this.#put(info, this.#stamp(next, old), old);
      }
      return old;
    }
    return this.#remove(info, old);
  }

  /** Seconds of graceful termination for a pod bound to a node, undefined for an immediate delete. */
  #gracePeriod(info: KindInfo, old: Stored<KObject>, opts: DeleteOptions): number | undefined {
    if (info.kind !== 'Pod') return undefined;
    const pod = old as Stored<Pod>;
    if (!pod.spec?.nodeName) return undefined;
    const phase = pod.status?.phase;
    if (phase === 'Succeeded' || phase === 'Failed' || (phase === 'Pending' && !pod.status?.podIP)) {
      if (opts.gracePeriodSeconds === undefined) return undefined;
    }
    const g = opts.gracePeriodSeconds ?? pod.spec.terminationGracePeriodSeconds ?? 30;
    return g <= 0 ? undefined : g;
  }

  /**
   * A namespace is marked Terminating first (a committed write, so every registry's create,
   * after its consistent read, refuses new content: upstream's NamespaceLifecycle admission),
   * then emptied until a pass finds nothing new, then removed; a last pass takes what a
   * create that was already in flight put there meanwhile. Without the mark, creates through
   * another daemon went on during the emptying and stayed behind in a namespace that no
   * longer existed.
   */
  async #deleteNamespace(info: KindInfo, old: Stored<KObject>): Promise<Stored<KObject>> {
    let ns = old;
    const name = old.metadata.name;
    if (!old.metadata.deletionTimestamp) {
      const next = clone(old) as KObject & { status?: { phase?: string } };
      const m = next.metadata as Mutable<ObjectMeta>;
      m.deletionTimestamp = now();
      m.deletionGracePeriodSeconds = 0;
      next.status = { ...next.status, phase: 'Terminating' };
      ns = await this.#put(info, this.#stamp(next, old), old);
    }
    for (let pass = 0; pass < 5; pass++) {
      await this.#cache.sync();
      if ((await this.#emptyNamespace(name)) === 0) break;
    }
    // with finalizers it stays (Terminating) until the last one is taken off: an update removes it then
    if (ns.metadata.finalizers?.length) return ns;
    const gone = await this.#remove(info, ns);
    await this.#cache.sync();
    await this.#emptyNamespace(name);
    return gone;
  }

  /** Deletes what is in `ns`; returns how many objects it found that were not being deleted already. */
  async #emptyNamespace(ns: string): Promise<number> {
    let found = 0;
    for (const kind of this.#cache.kinds()) {
      const info = requireKind(kind);
      if (!info.namespaced) continue;
      for (const o of this.#cache.list(kind, { namespace: ns }).items) {
        if (!o.metadata.deletionTimestamp) found++;
        await this.delete(kind, ns, o.metadata.name).catch(() => undefined);
      }
    }
    return found;
  }

  #hasDependents(uid: string): boolean {
    for (const kind of this.#cache.kinds()) {
      for (const o of this.#cache.list(kind).items) if (o.metadata.ownerReferences?.some((r: OwnerReference) => r.uid === uid)) return true;
    }
    return false;
  }

  async #orphanDependents(uid: string): Promise<void> {
    for (const kind of this.#cache.kinds()) {
      for (const o of this.#cache.list(kind).items) {
        if (!o.metadata.ownerReferences?.some((r: OwnerReference) => r.uid === uid)) continue;
        await this.mutate(kind, o.metadata.namespace, o.metadata.name, (d) => {
          d.metadata!.ownerReferences = d.metadata!.ownerReferences!.filter((r) => r.uid !== uid);
          if (!d.metadata!.ownerReferences.length) delete d.metadata!.ownerReferences;
        });
      }
    }
  }

  /** Writes `next` over `old` if `old` is still what is stored (else Conflict). */
  async #put(info: KindInfo, next: KObject, old: Stored<KObject>): Promise<Stored<KObject>> {
    const ops: StorageOp[] = [
      { op: 'update', key: recordKey(info.kind, old.metadata.namespace, old.metadata.name), value: encode(next), expectRv: Number(old.metadata.resourceVersion), hint: next },
      ...this.#allocationOps(next, old),
    ];
    const res = await this.#storage.commit(ops);
    if (!res.ok) throw conflict(info.plural, old.metadata.name, STALE);
    return this.#result(info, old.metadata.namespace, old.metadata.name, res.rv, ops[0]);
  }

  /** Removes `old` (if it is still what is stored) with the allocation records it holds. */
  async #remove(info: KindInfo, old: Stored<KObject>): Promise<Stored<KObject>> {
    const rk = recordKey(info.kind, old.metadata.namespace, old.metadata.name);
    let ops: StorageOp[] = [{ op: 'delete', key: rk, expectRv: Number(old.metadata.resourceVersion) }, ...this.#allocationOps(undefined, old)];
    for (let attempt = 0; ; attempt++) {
      const res = await this.#storage.commit(ops);
      if (res.ok) {
        await this.#cache.waitFor(res.rv);
        return deepFreeze({ ...old, metadata: { ...old.metadata, resourceVersion: String(res.rv) } }) as Stored<KObject>;
      }
      if (res.index === 0) throw conflict(info.plural, old.metadata.name, STALE);
      // an allocation record that is already gone: nothing to release there
      const gone = ops[res.index].key;
      ops = ops.filter((op, i) => i === 0 || op.key !== gone);
      if (attempt >= MAX_ATTEMPTS) throw conflict(info.plural, old.metadata.name, STALE);
    }
  }

  /**
   * Commits `ops`; when storage throws (unreachable, out of memory, a closed store) `undo` gives
   * back what this registry's allocators took for the write, since no record holds it. (A write
   * whose reply was lost may still have landed: its object then reaches the allocators through
   * the feed like any other writer's.)
   */
  async #commit(ops: StorageOp[], undo: () => void): Promise<CommitResult> {
    try {
      return await this.#storage.commit(ops);
    } catch (e) {
      undo();
      throw e;
    }
  }

  /** The object a write stored, as the cache holds it (the write's own copy if the cache lags or moved on). */
  async #result(info: KindInfo, namespace: string | undefined, name: string, rv: number, op: StorageOp): Promise<Stored<KObject>> {
    await this.#cache.waitFor(rv);
    const cached = this.#cache.get(info.kind, namespace, name);
    if (cached && cached.metadata.resourceVersion === String(rv)) return cached;
    return this.#decode({ key: op.key, value: (op as { value: string }).value, rv });
  }

  #decode(r: StoredRecord): Stored<KObject> {
    const obj = JSON.parse(r.value) as KObject;
    ((obj.metadata ??= {}) as Mutable<ObjectMeta>).resourceVersion = String(r.rv);
    return deepFreeze(obj) as Stored<KObject>;
  }

  /** Create/delete ops for the allocation records `next` holds and `old` did not, and the reverse. */
  #allocationOps(next: KObject | undefined, old: KObject | undefined): StorageOp[] {
    const want = next ? this.#strategies.allocationRecords(next) : new Map<string, string>();
    const had = old ? this.#strategies.allocationRecords(old) : new Map<string, string>();
    const ops: StorageOp[] = [];
    for (const [k, owner] of want) if (!had.has(k)) ops.push({ op: 'create', key: k, value: owner });
    for (const k of had.keys()) if (!want.has(k)) ops.push({ op: 'delete', key: k });
    return ops;
  }

  /**
   * Creates the allocation records that stored objects hold but storage lacks (a store from
   * before allocations were records, or a crash of an older version): upstream's repair loops.
   */
  async #repairAllocations(): Promise<void> {
    let repaired = 0;
    for (const kind of this.#strategies.allocatingKinds) {
      for (const o of this.#cache.list(kind).items) {
        for (const [k, owner] of this.#strategies.allocationRecords(o)) {
          if (this.#cache.record(k) !== undefined) continue;
          const res = await this.#storage.commit([{ op: 'create', key: k, value: owner }]);
          if (res.ok) repaired++;
          else this.#log.warn({ record: k, owner, holder: res.current?.value }, 'an allocation is held twice: the other holder keeps it');
        }
      }
    }
    if (repaired) this.#log.info({ repaired }, 'allocation records repaired');
  }

  async mutate<T extends KObject>(
    kind: string,
    namespace: string | undefined,
    name: string,
    fn: (obj: T) => boolean | void,
    opts: WriteOptions = {},
  ): Promise<Stored<T> | undefined> {
    for (let attempt = 0; ; attempt++) {
      const cur = await this.tryGet<T>(kind, namespace, name);
      if (!cur) return undefined;
      const draft = clone(cur) as T;
      if (fn(draft) === false) return cur;
      try {
        return await this.update(draft, opts);
      } catch (e) {
        if (e instanceof ApiError && e.reason === 'Conflict' && attempt < 20) {
          // another writer got there first: read its version (consistent read) and apply fn again
          await this.#cache.sync();
          continue;
        }
        if (e instanceof ApiError && e.reason === 'NotFound') return undefined;
        throw e;
      }
    }
  }

  watch<T extends KObject>(
    kind: string,
    opts: WatchOptions,
    onEvent: (ev: WatchEvent<T>) => void,
    onError?: (err: Error) => void,
  ): Watch {
    return this.#cache.watch(kind, opts, onEvent as (ev: WatchEvent) => void, onError);
  }

  /** Stops the cache and closes the backend (which makes everything durable). Writes after close are refused. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#cache.stop();
    await this.#storage.close();
  }

  /** Every acknowledged write is durable already; kept for callers that want a barrier. */
  async flush(): Promise<void> {}

  #open(): void {
    if (this.#closed) throw new ApiError('ServiceUnavailable', 'the store is closed (kubeloop is shutting down)');
  }

  /** Server-set metadata for a create (`old` undefined) or an update; the resourceVersion is the commit's. */
  #stamp(obj: KObject, old: Stored<KObject> | undefined): KObject {
    const m = (obj.metadata ??= {}) as Mutable<ObjectMeta>;
    if (old) {
      m.uid = old.metadata.uid;
      m.creationTimestamp = old.metadata.creationTimestamp;
      m.generation = old.metadata.generation;
      if (old.metadata.deletionTimestamp && !m.deletionTimestamp) {
        m.deletionTimestamp = old.metadata.deletionTimestamp;
        m.deletionGracePeriodSeconds = old.metadata.deletionGracePeriodSeconds;
      }
      if (!isDeepStrictEqual(specOf(obj), specOf(old))) m.generation = (old.metadata.generation ?? 1) + 1;
    } else {
      m.uid ||= randomUUID();
      m.creationTimestamp = now();
      m.generation = 1;
    }
    delete m.resourceVersion;
    return obj;
  }
}

/** An object without its resourceVersion, to tell a no-op update. */
function specAndMeta(o: KObject): unknown {
  return { ...o, metadata: { ...o.metadata, resourceVersion: '' } };
}
