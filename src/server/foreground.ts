/**
 * Foreground cascading deletion (`propagationPolicy: Foreground`), which the store does not do
 * by itself: the owner gets the `foregroundDeletion` finalizer and a deletionTimestamp (so it
 * stays visible, "being deleted"), its dependents are deleted (foreground too), and once none
 * is left the finalizer goes and the store removes the owner. Resumed at start for owners left
 * half-way by a previous run.
 */
import type { Logger } from 'pino';
import { isApiError } from '../api/errors.js';
import { KINDS, type KObject, type Stored } from '../api/types.js';
import type { DeleteOptions, Store, Watch } from '../store/types.js';

export const FOREGROUND = 'foregroundDeletion';

export class ForegroundDeleter {
  readonly #store: Store;
  readonly #log: Logger;
  /** uid → running drain */
  readonly #active = new Map<string, Promise<void>>();
  #watch: Watch | undefined;
  #wake = new Set<() => void>();
  #stopped = false;

  constructor(o: { store: Store; log: Logger }) {
    this.#store = o.store;
    this.#log = o.log;
  }

  /** Resumes owners that carry the finalizer, and starts noticing deletions. */
  async start(): Promise<void> {
    this.#watch = this.#store.watch('*', {}, (ev) => {
      if (ev.type === 'DELETED' || ev.type === 'MODIFIED') for (const w of this.#wake) w();
    });
    for (const info of KINDS) {
      const { items } = await this.#store.list(info.kind);
      for (const o of items) {
        if (o.metadata.deletionTimestamp && o.metadata.finalizers?.includes(FOREGROUND)) this.#drain(info.kind, o);
      }
    }
  }

  stop(): void {
    this.#stopped = true;
    this.#watch?.stop();
    for (const w of this.#wake) w();
  }

  /** Marks the object for foreground deletion and drains it in the background. */
  async delete(kind: string, namespace: string | undefined, name: string, opts: DeleteOptions): Promise<Stored<KObject>> {
    if (opts.dryRun) return this.#store.delete(kind, namespace, name, { ...opts, propagationPolicy: 'Background' });
    const cur = await this.#store.get(kind, namespace, name);
    if (opts.preconditions?.uid && opts.preconditions.uid !== cur.metadata.uid) {
      return this.#store.delete(kind, namespace, name, opts);
    }
    if (!(await this.#hasDependents(cur.metadata.uid))) {
      return this.#store.delete(kind, namespace, name, { ...opts, propagationPolicy: 'Background' });
    }
    await this.#store.mutate(kind, namespace, name, (o) => {
      const m = o.metadata!;
      if (m.finalizers?.includes(FOREGROUND)) return false;
      m.finalizers = [...(m.finalizers ?? []), FOREGROUND];
    });
    const marked = await this.#store.delete(kind, namespace, name, { ...opts, propagationPolicy: 'Background' });
    this.#drain(kind, marked);
    return marked;
  }

  async #dependents(uid: string): Promise<Stored<KObject>[]> {
    const out: Stored<KObject>[] = [];
    for (const info of KINDS) {
      const { items } = await this.#store.list(info.kind);
      for (const o of items) if (o.metadata.ownerReferences?.some((r) => r.uid === uid)) out.push(o);
    }
    return out;
  }

  async #hasDependents(uid: string): Promise<boolean> {
    return (await this.#dependents(uid)).length > 0;
  }

  #drain(kind: string, owner: Stored<KObject>): void {
    const uid = owner.metadata.uid;
    if (this.#active.has(uid)) return;
    const run = (async () => {
      const asked = new Set<string>();
      while (!this.#stopped) {
        const deps = await this.#dependents(uid);
        if (deps.length === 0) break;
        for (const d of deps) {
          if (asked.has(d.metadata.uid)) continue;
          asked.add(d.metadata.uid);
          const hasOwnDeps = await this.#hasDependents(d.metadata.uid);
          const p = hasOwnDeps ? this.delete(d.kind, d.metadata.namespace, d.metadata.name, { propagationPolicy: 'Foreground' }) : this.#store.delete(d.kind, d.metadata.namespace, d.metadata.name, { propagationPolicy: 'Background' });
          await p.catch((err: unknown) => {
            if (!isApiError(err, 'NotFound')) this.#log.warn({ err, obj: `${d.kind}/${d.metadata.name}` }, 'foreground deletion of a dependent failed');
          });
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(done, 1000);
          t.unref();
          function done() {
            clearTimeout(t);
            resolve();
          }
          this.#wake.add(done);
          setTimeout(() => this.#wake.delete(done), 1000).unref();
        });
      }
      if (this.#stopped) return;
      await this.#store
        .mutate(kind, owner.metadata.namespace, owner.metadata.name, (o) => {
          if (o.metadata?.uid !== uid || !o.metadata.finalizers?.includes(FOREGROUND)) return false;
          o.metadata.finalizers = o.metadata.finalizers.filter((f) => f !== FOREGROUND);
        })
        .catch((err: unknown) => this.#log.warn({ err, kind, name: owner.metadata.name }, 'removing the foregroundDeletion finalizer failed'));
    })().finally(() => this.#active.delete(uid));
    this.#active.set(uid, run);
  }
}
