import type { Logger } from 'pino';
import { type Selector, matches } from '../api/labels.js';
import type { KObject, Pod, Stored } from '../api/types.js';
import type { Store } from '../store/types.js';
import { controllerRef, isTerminating, ownerRefFor } from './pod-util.js';

export interface ClaimOptions {
  store: Store;
  owner: Stored<KObject>;
  selector: Selector;
  /** the pods of the owner's namespace (from a cache) */
  pods: readonly Stored<Pod>[];
  /** which orphans may be adopted (besides matching the selector); default all */
  adoptable?: (pod: Stored<Pod>) => boolean;
  log: Logger;
}

/**
 * Upstream `ClaimPods` for the StatefulSet and DaemonSet controllers: returns the pods the owner
 * controls and that still match its selector; adopts matching orphans (after re-reading the
 * owner: a deleted owner adopts nothing); releases its pods whose labels no longer match.
 */
export async function claimPods(o: ClaimOptions): Promise<Stored<Pod>[]> {
  const { store, owner, selector, log } = o;
  const uid = owner.metadata.uid;
  const out: Stored<Pod>[] = [];
  let canAdopt: boolean | undefined;
  for (const pod of o.pods) {
    const ref = controllerRef(pod);
    const selected = matches(selector, pod.metadata.labels);
    if (ref) {
      if (ref.uid !== uid) continue;
      if (selected) out.push(pod);
      else if (!isTerminating(owner)) {
        await store.mutate<Pod>('Pod', pod.metadata.namespace, pod.metadata.name, (p) => {
          const refs = p.metadata?.ownerReferences ?? [];
          const kept = refs.filter((r) => r.uid !== uid);
          if (kept.length === refs.length) return false;
          p.metadata!.ownerReferences = kept.length ? kept : undefined;
        });
        log.info({ pod: pod.metadata.name }, 'released pod whose labels no longer match');
      }
      continue;
    }
    if (!selected || isTerminating(pod) || isTerminating(owner) || (o.adoptable && !o.adoptable(pod))) continue;
    canAdopt ??= await (async () => {
      const fresh = await store.tryGet(owner.kind, owner.metadata.namespace, owner.metadata.name);
      return !!fresh && fresh.metadata.uid === uid && !isTerminating(fresh);
    })();
    if (!canAdopt) continue;
    const adopted = await store.mutate<Pod>('Pod', pod.metadata.namespace, pod.metadata.name, (p) => {
      if (p.metadata?.uid !== pod.metadata.uid || controllerRef(p) || !matches(selector, p.metadata?.labels)) return false;
      p.metadata!.ownerReferences = [...(p.metadata!.ownerReferences ?? []), ownerRefFor(owner)];
    });
    if (adopted && controllerRef(adopted)?.uid === uid) {
      log.info({ pod: pod.metadata.name }, 'adopted orphan pod');
      out.push(adopted);
    }
  }
  return out;
}
