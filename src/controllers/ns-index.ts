import type { KObject, Stored } from '../api/types.js';
import { type Selector, matches } from '../api/labels.js';
import type { Informer, InformerHandlers } from '../store/informer.js';
import { canonicalJson } from './names.js';
import { controllerRef } from './pod-util.js';

/**
 * An informer's objects grouped by namespace, so that "the pods of namespace X" is a map lookup
 * instead of a scan of every pod. Kept current by the informer's own handlers.
 */
export class NamespaceIndex<T extends KObject> {
  readonly #byNs = new Map<string, Map<string, Stored<T>>>();

  constructor(informer: Informer<T>) {
    informer.addHandler({
      onAdd: (o) => this.#set(o),
      onUpdate: (_old, cur) => this.#set(cur),
      onDelete: (o) => {
        const ns = o.metadata.namespace ?? '';
        const m = this.#byNs.get(ns);
        if (!m) return;
        m.delete(o.metadata.name);
        if (m.size === 0) this.#byNs.delete(ns);
      },
    });
  }

  list(namespace: string | undefined): Stored<T>[] {
    const m = this.#byNs.get(namespace ?? '');
    return m ? [...m.values()] : [];
  }

  #set(o: Stored<T>): void {
    const ns = o.metadata.namespace ?? '';
    let m = this.#byNs.get(ns);
    if (!m) {
      m = new Map();
      this.#byNs.set(ns, m);
    }
    m.set(o.metadata.name, o);
  }
}

/**
 * The owners of `kind` a dependent concerns, for enqueueing: its controller when it has one
 * (only if that owner still has the referenced uid), otherwise — unless it is terminating —
 * every owner in its namespace whose selector matches it, which may adopt it.
 */
export function ownersToSync<O extends KObject>(
  dependent: Stored<KObject>,
  kind: string,
  owners: Informer<O>,
  ownersByNs: NamespaceIndex<O>,
  selectorOf: (owner: Stored<O>) => Selector | undefined,
): Stored<O>[] {
  const ref = dependent.metadata.ownerReferences?.find((r) => r.controller);
  if (ref) {
    if (ref.kind !== kind) return [];
    const owner = owners.get(dependent.metadata.namespace, ref.name);
    return owner && owner.metadata.uid === ref.uid ? [owner] : [];
  }
  if (dependent.metadata.deletionTimestamp) return [];
  return ownersByNs.list(dependent.metadata.namespace).filter((o) => {
    const sel = selectorOf(o);
    return sel !== undefined && matches(sel, dependent.metadata.labels);
  });
}

/**
 * Handlers for a controller's dependents (its pods): each change enqueues the owners of the
 * dependent through `enqueueFor`, and an update that changes its controller or its labels
 * enqueues those of the old version too (the owner it left, or the ones that matched before).
 */
export function dependentHandlers<T extends KObject>(enqueueFor: (dependent: Stored<T>) => void): InformerHandlers<T> {
  return {
    onAdd: (d) => enqueueFor(d),
    onUpdate: (old, d) => {
      if (controllerRef(old)?.uid !== controllerRef(d)?.uid || canonicalJson(old.metadata.labels) !== canonicalJson(d.metadata.labels)) {
        enqueueFor(old);
      }
      enqueueFor(d);
    },
    onDelete: (d) => enqueueFor(d),
  };
}
