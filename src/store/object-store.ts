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
import { ApiError, alreadyExists, badRequest, conflict, invalidObject, notFound } from '../api/errors.js';
import { required } from '../api/field.js';
import { type Selector, matches, parse as parseSelector } from '../api/labels.js';
import { type FieldRequirement, fieldsMatch, parseFields } from '../api/labels.js';
import type { Strategies } from './strategy.js';
import type { Persistence } from './persistence.js';
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
  persistence: Persistence;
  log: Logger;
  /** how many events watch-from-version can replay (older ⇒ 410 Expired) */
  historySize?: number;
}

interface Watcher {
  kind: string;
  namespace?: string;
  labels?: Selector;
  fields?: FieldRequirement[];
  fn: (ev: WatchEvent) => void;
  /** events waiting behind a replay; undefined once live */
  backlog?: WatchEvent[];
  stopped: boolean;
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

/**
 * The embedded object store: authoritative state in memory (the watch cache), every write
 * serialized in-process and persisted write-behind through a Persistence on the ioredis API.
 *
 * History window (watch from a resourceVersion):
 *
 *     oldest kept ─┐                         ┌─ newest (== resourceVersion)
 *     rv:  ...  [ 91 | 92 | 93 | ... | 4186 ]
 *     watch(rv=90..4186) replays what follows rv; rv < 90 ⇒ 410 Expired
 */
export class ObjectStore implements Store {
  readonly #objects = new Map<string, Map<string, Stored<KObject>>>();
  readonly #watchers = new Set<Watcher>();
  readonly #history: WatchEvent[] = [];
  readonly #historySize: number;
  readonly #strategies: Strategies;
  readonly #persistence: Persistence;
  readonly #log: Logger;
  #rv = 0;
  #dirty = new Map<string, Stored<KObject> | null>();
  #flushing: Promise<void> | undefined;
  #queue: WatchEvent[] = [];
  #delivering = false;
  #closed = false;

  constructor(o: ObjectStoreOptions) {
    this.#strategies = o.strategies;
    this.#persistence = o.persistence;
    this.#log = o.log.child({ component: 'store' });
    this.#historySize = o.historySize ?? 10_000;
  }

  /** Loads the persisted state (once, before use). */
  async load(): Promise<void> {
    const { rv, objects } = await this.#persistence.load();
    for (const o of objects) {
      const info = requireKind(o.kind ?? '');
      const key = objectKey(info.namespaced ? o.metadata?.namespace : undefined, o.metadata?.name ?? '');
      this.#bucket(info.kind).set(key, deepFreeze(o) as Stored<KObject>);
      this.#strategies.restore(key, o);
      this.#rv = Math.max(this.#rv, Number(o.metadata?.resourceVersion ?? 0));
    }
    this.#rv = Math.max(this.#rv, rv);
  }

  get resourceVersion(): string {
    return String(this.#rv);
  }

  #bucket(kind: string): Map<string, Stored<KObject>> {
    let b = this.#objects.get(kind);
    if (!b) {
      b = new Map();
      this.#objects.set(kind, b);
    }
    return b;
  }

  #find(info: KindInfo, namespace: string | undefined, name: string): Stored<KObject> | undefined {
    return this.#objects.get(info.kind)?.get(objectKey(info.namespaced ? namespace : undefined, name));
  }

  async get<T extends KObject>(kind: string, namespace: string | undefined, name: string): Promise<Stored<T>> {
    const info = requireKind(kind);
    const o = this.#find(info, namespace, name);
    if (!o) throw notFound(info.plural, name);
    return o as Stored<T>;
  }

  async tryGet<T extends KObject>(kind: string, namespace: string | undefined, name: string): Promise<Stored<T> | undefined> {
    return this.#find(requireKind(kind), namespace, name) as Stored<T> | undefined;
  }

  async list<T extends KObject>(kind: string, opts: ListOptions = {}): Promise<ListResult<T>> {
    const info = requireKind(kind);
    const labels = typeof opts.labelSelector === 'string' ? parseSelector(opts.labelSelector) : opts.labelSelector;
    const fields = parseFields(opts.fieldSelector, info.kind);
    const items: Stored<T>[] = [];
    for (const o of this.#bucket(info.kind).values()) {
      if (info.namespaced && opts.namespace && o.metadata.namespace !== opts.namespace) continue;
      if (labels && labels.length && !matches(labels, o.metadata.labels)) continue;
      if (fields.length && !fieldsMatch(fields, o)) continue;
      items.push(o as Stored<T>);
    }
    return { items, resourceVersion: this.resourceVersion };
  }

  async create<T extends KObject>(input: T, opts: WriteOptions = {}): Promise<Stored<T>> {
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
      const ns = this.#find(requireKind('Namespace'), undefined, meta.namespace!);
      if (!ns) throw notFound('namespaces', meta.namespace!);
      if (ns.metadata.deletionTimestamp) {
        throw new ApiError(
          'Forbidden',
          `${info.plural} "${name}" is forbidden: unable to create new content in namespace ${meta.namespace} because it is being terminated`,
        );
      }
    }
    const key = objectKey(meta.namespace, name);
    if (this.#bucket(info.kind).has(key)) throw alreadyExists(info.plural, name);
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
      return deepFreeze(this.#stamp(obj, undefined, false)) as Stored<T>;
    }
    const stored = this.#commit(info, key, this.#stamp(obj, undefined, true), undefined);
    return stored as Stored<T>;
  }

  async update<T extends KObject>(input: T, opts: WriteOptions = {}): Promise<Stored<T>> {
    this.#open();
    const info = requireKind(input.kind ?? '');
    const name = input.metadata?.name ?? '';
    const old = this.#find(info, input.metadata?.namespace || (info.namespaced ? 'default' : undefined), name);
    if (!old) throw notFound(info.plural, name);
    const rv = input.metadata?.resourceVersion;
    if (rv && rv !== old.metadata.resourceVersion) {
      throw conflict(info.plural, name, 'the object has been modified; please apply your changes to the latest version and try again');
    }
    const uid = input.metadata?.uid;
    if (uid && uid !== old.metadata.uid) {
      throw conflict(info.plural, name, `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${old.metadata.uid}`);
    }
    let obj: KObject;
    if (opts.subresource === 'status') {
      obj = clone(old) as KObject;
      (obj as { status?: unknown }).status = clone((input as { status?: unknown }).status);
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
    const errs = this.#strategies.validate(obj, old);
    if (errs.length) throw invalidObject(info.kind, name, errs);
    if (opts.subresource !== 'status') {
      const allocErrs = this.#strategies.allocate(key, obj, old);
      if (allocErrs.length) throw invalidObject(info.kind, name, allocErrs);
    }
    const next = this.#stamp(obj, old, !opts.dryRun);
    if (opts.dryRun) return deepFreeze(next) as Stored<T>;
    if (isDeepStrictEqual({ ...next, metadata: { ...next.metadata, resourceVersion: '' } }, { ...old, metadata: { ...old.metadata, resourceVersion: '' } })) {
      return old as Stored<T>;
    }
    if (next.metadata.deletionTimestamp && old.metadata.finalizers?.length && !next.metadata.finalizers?.length) {
      // the last finalizer went: the object is gone
      return this.#remove(info, key, old) as Stored<T>;
    }
    return this.#commit(info, key, next, old) as Stored<T>;
  }

  async delete<T extends KObject>(
    kind: string,
    namespace: string | undefined,
    name: string,
    opts: DeleteOptions = {},
  ): Promise<Stored<T>> {
    this.#open();
    const info = requireKind(kind);
    const old = this.#find(info, namespace, name);
    if (!old) throw notFound(info.plural, name);
    const pre = opts.preconditions;
    if (pre?.uid && pre.uid !== old.metadata.uid) {
      throw conflict(info.plural, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${old.metadata.uid}`);
    }
    if (pre?.resourceVersion && pre.resourceVersion !== old.metadata.resourceVersion) {
      throw conflict(info.plural, name, 'the object has been modified; please apply your changes to the latest version and try again');
    }
    const key = objectKey(info.namespaced ? namespace : undefined, name);
    const graceful = this.#gracePeriod(info, old, opts);
    if (opts.dryRun) return old as Stored<T>;
    if (info.kind === 'Namespace') await this.#emptyNamespace(name);
    if (opts.propagationPolicy === 'Orphan') await this.#orphanDependents(old.metadata.uid);
    if (opts.propagationPolicy === 'Foreground' && !old.metadata.deletionTimestamp && this.#hasDependents(old.metadata.uid)) {
      // the garbage collector deletes the dependents, then drops the finalizer; the owner goes last
      const next = clone(old) as KObject;
      const m = next.metadata as Mutable<ObjectMeta>;
      m.finalizers = [...(m.finalizers ?? []), 'foregroundDeletion'];
      m.deletionTimestamp = now();
      m.deletionGracePeriodSeconds = 0;
      return this.#commit(info, key, this.#stamp(next, old, true), old) as Stored<T>;
    }
    if (graceful !== undefined || old.metadata.finalizers?.length) {
      if (old.metadata.deletionTimestamp && graceful === undefined) return old as Stored<T>;
      const next = clone(old) as KObject;
      const m = next.metadata as Mutable<ObjectMeta>;
      if (!m.deletionTimestamp || (graceful !== undefined && graceful < (m.deletionGracePeriodSeconds ?? Infinity))) {
        m.deletionTimestamp = new Date(Date.now() + (graceful ?? 0) * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
        m.deletionGracePeriodSeconds = graceful ?? 0;
        return this.#commit(info, key, this.#stamp(next, old, true), old) as Stored<T>;
      }
      return old as Stored<T>;
    }
    return this.#remove(info, key, old) as Stored<T>;
  }

  /** Seconds of graceful termination for a pod bound to a node, undefined for an immediate delete. */
  #gracePeriod(info: KindInfo, old: Stored<KObject>, opts: DeleteOptions): number | undefined {
    if (info.kind !== 'Pod') return undefined;
    const pod = old as Stored<Pod>;
    if (!pod.spec?.nodeName) return undefined;
    const phase = pod.status?.phase;
    if (phase === 'Succeeded' || phase === 'Failed' || phase === 'Pending' && !pod.status?.podIP) {
      if (opts.gracePeriodSeconds === undefined) return undefined;
    }
    const g = opts.gracePeriodSeconds ?? pod.spec.terminationGracePeriodSeconds ?? 30;
    return g <= 0 ? undefined : g;
  }

  async #emptyNamespace(ns: string): Promise<void> {
    for (const [kind, bucket] of this.#objects) {
      const info = requireKind(kind);
      if (!info.namespaced) continue;
      for (const o of [...bucket.values()]) {
        if (o.metadata.namespace !== ns) continue;
        await this.delete(kind, ns, o.metadata.name).catch(() => undefined);
      }
    }
  }

  #hasDependents(uid: string): boolean {
    for (const bucket of this.#objects.values()) {
      for (const o of bucket.values()) if (o.metadata.ownerReferences?.some((r: OwnerReference) => r.uid === uid)) return true;
    }
    return false;
  }

  async #orphanDependents(uid: string): Promise<void> {
    for (const [kind, bucket] of this.#objects) {
      for (const o of [...bucket.values()]) {
        if (!o.metadata.ownerReferences?.some((r: OwnerReference) => r.uid === uid)) continue;
        await this.mutate(kind, o.metadata.namespace, o.metadata.name, (d) => {
          d.metadata!.ownerReferences = d.metadata!.ownerReferences!.filter((r) => r.uid !== uid);
          if (!d.metadata!.ownerReferences.length) delete d.metadata!.ownerReferences;
        });
      }
    }
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
        if (e instanceof ApiError && e.reason === 'Conflict' && attempt < 20) continue;
        if (e instanceof ApiError && e.reason === 'NotFound') return undefined;
        throw e;
      }
    }
  }

  watch<T extends KObject>(kind: string, opts: WatchOptions, onEvent: (ev: WatchEvent<T>) => void): Watch {
    if (kind !== '*') requireKind(kind);
    const w: Watcher = {
      kind,
      namespace: opts.namespace,
      labels: typeof opts.labelSelector === 'string' ? parseSelector(opts.labelSelector) : opts.labelSelector,
      fields: opts.fieldSelector ? parseFields(opts.fieldSelector, kind === '*' ? undefined : kind) : undefined,
      fn: onEvent as (ev: WatchEvent) => void,
      stopped: false,
    };
    const from = opts.resourceVersion && opts.resourceVersion !== '0' ? Number(opts.resourceVersion) : undefined;
    if (from !== undefined) {
      if (!Number.isInteger(from) || from < 0) throw badRequest(`invalid resourceVersion "${opts.resourceVersion}"`);
      const oldest = this.#history.length ? Number(this.#history[0].object.metadata.resourceVersion) : this.#rv + 1;
      if (from < oldest - 1 && from < this.#rv) {
        throw new ApiError('Expired', `too old resource version: ${from} (${oldest - 1})`);
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

  /** Flushes pending writes to the backend and closes it. Writes after close are refused. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.flush();
    for (const w of this.#watchers) w.stopped = true;
    this.#watchers.clear();
    await this.#persistence.close();
  }

  /** Resolves once every write so far is in the backend. */
  async flush(): Promise<void> {
    while (this.#flushing || this.#dirty.size) {
      if (this.#flushing) await this.#flushing;
      else this.#scheduleFlush();
    }
  }

  #open(): void {
    if (this.#closed) throw new ApiError('ServiceUnavailable', 'the store is closed (kubeloop is shutting down)');
  }

  /** Server-set metadata for a create (`old` undefined) or an update. */
  #stamp(obj: KObject, old: Stored<KObject> | undefined, bump: boolean): Stored<KObject> {
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
    m.resourceVersion = bump ? String(this.#rv + 1) : (old?.metadata.resourceVersion ?? '0');
    return obj as Stored<KObject>;
  }

  #commit(info: KindInfo, key: string, obj: Stored<KObject>, old: Stored<KObject> | undefined): Stored<KObject> {
    this.#rv = Number(obj.metadata.resourceVersion);
    deepFreeze(obj);
    this.#bucket(info.kind).set(key, obj);
    this.#markDirty(info.kind, key, obj);
    this.#emit({ type: old ? 'MODIFIED' : 'ADDED', object: obj, ...(old ? { old } : {}) });
    return obj;
  }

  #remove(info: KindInfo, key: string, old: Stored<KObject>): Stored<KObject> {
    this.#rv += 1;
    this.#bucket(info.kind).delete(key);
    this.#strategies.release(old);
    const last = deepFreeze({ ...old, metadata: { ...old.metadata, resourceVersion: String(this.#rv) } }) as Stored<KObject>;
    this.#markDirty(info.kind, key, null);
    this.#emit({ type: 'DELETED', object: last, old });
    return last;
  }

  #markDirty(kind: string, key: string, obj: Stored<KObject> | null): void {
    // serialised lazily at flush time: repeated writes to one key cost one JSON.stringify
    this.#dirty.set(`${kind}/${key}`, obj);
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#flushing) return;
    this.#flushing = new Promise<void>((resolve) => setImmediate(resolve))
      .then(async () => {
        const dirty = this.#dirty;
        this.#dirty = new Map();
        const puts: Array<[string, string]> = [];
        const dels: string[] = [];
        for (const [k, v] of dirty) {
          if (v === null) dels.push(k);
          else puts.push([k, JSON.stringify(v)]);
        }
        await this.#persistence.write({ rv: this.#rv, puts, dels });
      })
      .catch((err: unknown) => this.#log.error({ err }, 'persisting the store failed; state is kept in memory'))
      .finally(() => {
        this.#flushing = undefined;
        if (this.#dirty.size) this.#scheduleFlush();
      });
  }

  #emit(ev: WatchEvent): void {
    this.#history.push(ev);
    if (this.#history.length > this.#historySize) this.#history.splice(0, this.#history.length - this.#historySize);
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
        o !== undefined &&
        (!w.labels || matches(w.labels, o.metadata?.labels)) &&
        (!w.fields || fieldsMatch(w.fields, o));
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
