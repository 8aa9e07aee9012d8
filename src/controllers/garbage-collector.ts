import type { Logger } from 'pino';
import { isApiError } from '../api/errors.js';
import type { KObject, OwnerReference, Stored } from '../api/types.js';
import { KINDS, kindInfo, keyOf, objectKey } from '../api/types.js';
import type { Informer, InformerFactory } from '../store/informer.js';
import type { Store } from '../store/types.js';
import { isTerminating } from './pod-util.js';
import { type ReconcileContext, Runner } from './runner.js';

export const FOREGROUND_FINALIZER = 'foregroundDeletion';
export const ORPHAN_FINALIZER = 'orphan';

/** Events carry no owner references and are the most numerous kind: not watched. */
const UNWATCHED = new Set(['Event']);

export interface GarbageCollectorOptions {
  store: Store;
  informers: InformerFactory;
  log: Logger;
  workers?: number;
}

/** `Kind|ns/name` */
type Ref = string;
const refOf = (o: KObject): Ref => `${o.kind}|${keyOf(o)}`;

/**
 * Cascading deletion through `metadata.ownerReferences`, as upstream's garbage collector:
 *
 * - An object all of whose owners are gone (no object of that kind and name with that uid)
 *   is deleted (background propagation: the owner went first, dependents follow).
 * - Owner references to owners that are gone are removed when other owners remain.
 * - An owner being deleted with the `orphan` finalizer has its references removed from its
 *   dependents, then the finalizer; with `foregroundDeletion` its dependents are deleted first,
 *   and the finalizer goes once none is left. (The store itself orphans synchronously on
 *   `propagationPolicy: Orphan`; the finalizer path serves stores that use finalizers.)
 *
 * Absence is confirmed with a live read from the store before anything is deleted: a cache
 * that has not seen an owner yet never costs a dependent its life.
 */
export class GarbageCollector {
  readonly runner: Runner;
  readonly #store: Store;
  readonly #informers = new Map<string, Informer>();
  /** owner uid → refs of the objects that name it */
  readonly #dependents = new Map<string, Set<Ref>>();
  /** uid → ref of every watched object */
  readonly #byUid = new Map<string, Ref>();

  constructor(opts: GarbageCollectorOptions) {
    this.#store = opts.store;
    for (const info of KINDS) {
      if (!UNWATCHED.has(info.kind)) this.#informers.set(info.kind, opts.informers.for(info.kind));
    }
    // the runner exists before any handler: an informer that has synced already replays its
    // objects into a new handler at once
    this.runner = new Runner({
      name: 'garbage-collector',
      reconciler: this,
      log: opts.log,
      informers: [...this.#informers.values()],
      workers: opts.workers ?? 4,
    });
    for (const inf of this.#informers.values()) {
      inf.addHandler({
        onAdd: (o) => this.#observe(o, undefined),
        onUpdate: (old, o) => this.#observe(o, old),
        onDelete: (o) => this.#forget(o),
      });
    }
  }

  start(): Promise<void> {
    return this.runner.start();
  }

  stop(): Promise<void> {
    return this.runner.stop();
  }

  #observe(o: Stored<KObject>, old: Stored<KObject> | undefined): void {
    const ref = refOf(o);
    this.#byUid.set(o.metadata.uid, ref);
    const refs = o.metadata.ownerReferences ?? [];
    const oldRefs = old?.metadata.ownerReferences ?? [];
    for (const r of oldRefs) if (!refs.some((x) => x.uid === r.uid)) this.#dependents.get(r.uid)?.delete(ref);
    for (const r of refs) {
      let s = this.#dependents.get(r.uid);
      if (!s) {
        s = new Set();
        this.#dependents.set(r.uid, s);
      }
      s.add(ref);
    }
    const refsChanged = !old || JSON.stringify(oldRefs) !== JSON.stringify(refs);
    if (refs.length && refsChanged) this.runner.enqueue(ref);
    if (isTerminating(o) && hasGcFinalizer(o)) this.runner.enqueue(ref);
  }

  #forget(o: Stored<KObject>): void {
    const ref = refOf(o);
    this.#byUid.delete(o.metadata.uid);
    for (const r of o.metadata.ownerReferences ?? []) {
      const deps = this.#dependents.get(r.uid);
      deps?.delete(ref);
      if (deps?.size === 0) this.#dependents.delete(r.uid);
      // an owner waiting in foreground deletion may now be free to go
      const owner = this.#byUid.get(r.uid);
      const ownerObj = owner && this.#cached(owner);
      if (ownerObj && isTerminating(ownerObj) && hasGcFinalizer(ownerObj)) this.runner.enqueue(owner!);
    }
    for (const dep of this.#dependents.get(o.metadata.uid) ?? []) this.runner.enqueue(dep);
  }

  #cached(ref: Ref): Stored<KObject> | undefined {
    const i = ref.indexOf('|');
    return this.#informers.get(ref.slice(0, i))?.getByKey(ref.slice(i + 1));
  }

  async reconcile(ref: Ref, { log }: ReconcileContext): Promise<void> {
    const obj = this.#cached(ref);
    if (!obj) return;
    if (isTerminating(obj) && hasGcFinalizer(obj)) await this.#finalize(obj, log);
    const refs = obj.metadata.ownerReferences ?? [];
    if (!refs.length) return;

    const gone: OwnerReference[] = [];
    let waitingForeground = false;
    for (const r of refs) {
      const state = await this.#ownerState(r, obj);
      if (state === 'absent') gone.push(r);
      else if (state === 'foreground' && r.blockOwnerDeletion) waitingForeground = true;
    }
    if (gone.length === refs.length) {
      log.debug({ owners: refs.map((r) => `${r.kind}/${r.name}`) }, 'owners gone; deleting dependent');
      await this.#delete(obj, 'Background');
      return;
    }
    if (gone.length) {
      const goneUids = new Set(gone.map((r) => r.uid));
      await this.#store.mutate(obj.kind, obj.metadata.namespace, obj.metadata.name, (o) => {
        if (o.metadata?.uid !== obj.metadata.uid) return false;
        o.metadata.ownerReferences = o.metadata.ownerReferences?.filter((r) => !goneUids.has(r.uid));
      });
      log.debug({ removed: gone.map((r) => `${r.kind}/${r.name}`) }, 'removed references to owners that are gone');
      return;
    }
    if (waitingForeground && !isTerminating(obj)) await this.#delete(obj, 'Foreground');
  }

  /** Orphan or foreground-delete the dependents of an owner being deleted, then drop the finalizer. */
  async #finalize(owner: Stored<KObject>, log: Logger): Promise<void> {
    const finalizers = owner.metadata.finalizers ?? [];
    const uid = owner.metadata.uid;
    const deps = [...(this.#dependents.get(uid) ?? [])];
    let done: string | undefined;
    if (finalizers.includes(ORPHAN_FINALIZER)) {
      for (const dep of deps) {
        const d = this.#cached(dep);
        if (!d) continue;
        await this.#store.mutate(d.kind, d.metadata.namespace, d.metadata.name, (o) => {
          const kept = o.metadata?.ownerReferences?.filter((r) => r.uid !== uid);
          if (kept?.length === o.metadata?.ownerReferences?.length) return false;
          o.metadata!.ownerReferences = kept?.length ? kept : undefined;
        });
      }
      log.debug({ dependents: deps.length }, 'orphaned dependents');
      done = ORPHAN_FINALIZER;
    } else if (finalizers.includes(FOREGROUND_FINALIZER)) {
      let blocking = 0;
      for (const dep of deps) {
        const d = this.#cached(dep);
        if (!d) continue;
        if (d.metadata.ownerReferences?.some((r) => r.uid === uid && r.blockOwnerDeletion)) blocking++;
        if (!isTerminating(d)) await this.#delete(d, 'Foreground');
      }
      if (blocking > 0) return;
      done = FOREGROUND_FINALIZER;
    }
    if (!done) return;
    await this.#store.mutate(owner.kind, owner.metadata.namespace, owner.metadata.name, (o) => {
      if (o.metadata?.uid !== uid || !o.metadata.finalizers?.includes(done!)) return false;
      o.metadata.finalizers = o.metadata.finalizers.filter((f) => f !== done);
    });
  }

  async #ownerState(r: OwnerReference, dependent: Stored<KObject>): Promise<'present' | 'absent' | 'foreground' | 'unknown'> {
    const info = kindInfo(r.kind);
    // a kind we do not store, or a namespaced owner of a cluster-scoped object: not ours to judge
    if (!info || (info.namespaced && !dependent.metadata.namespace)) return 'unknown';
    const ns = info.namespaced ? dependent.metadata.namespace : undefined;
    let owner: Stored<KObject> | undefined = this.#informers.get(info.kind)?.getByKey(objectKey(ns, r.name));
    if (!owner || owner.metadata.uid !== r.uid) owner = await this.#store.tryGet(info.kind, ns, r.name);
    if (!owner || owner.metadata.uid !== r.uid) return 'absent';
    if (isTerminating(owner) && owner.metadata.finalizers?.includes(FOREGROUND_FINALIZER)) return 'foreground';
    return 'present';
  }

  async #delete(o: Stored<KObject>, policy: 'Background' | 'Foreground'): Promise<void> {
    try {
      await this.#store.delete(o.kind, o.metadata.namespace, o.metadata.name, {
        preconditions: { uid: o.metadata.uid },
        propagationPolicy: policy,
      });
    } catch (err) {
      // gone already, or a new object of that name: nothing of ours to delete
      if (isApiError(err, 'NotFound') || isApiError(err, 'Conflict')) return;
      throw err;
    }
  }
}

function hasGcFinalizer(o: KObject): boolean {
  const f = o.metadata?.finalizers;
  return !!f && (f.includes(ORPHAN_FINALIZER) || f.includes(FOREGROUND_FINALIZER));
}
