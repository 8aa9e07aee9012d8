import type { KObject, Mutable, Stored } from '../api/types.js';
import type { Store } from '../store/types.js';
import { canonicalJson } from './names.js';

/**
 * Writes `status` over the status subresource of `obj` (fields it does not name are kept), only
 * while the stored object is still the one with `obj`'s uid, and not at all when nothing changes.
 */
export async function mergeStatus<T extends KObject & { status?: object }>(
  store: Store,
  kind: string,
  obj: Stored<T>,
  status: NonNullable<T['status']>,
): Promise<void> {
  const uid = obj.metadata.uid;
  await store.mutate<T>(
    kind,
    obj.metadata.namespace,
    obj.metadata.name,
    (o) => {
      if (o.metadata?.uid !== uid) return false;
      const before = canonicalJson(o.status);
      (o as Mutable<T>).status = { ...(o.status ?? {}), ...status } as T['status'];
      return canonicalJson(o.status) !== before;
    },
    { subresource: 'status' },
  );
}
