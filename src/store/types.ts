import type { KObject, Stored } from '../api/types.js';
import type { Selector } from '../api/labels.js';

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface WatchEvent<T extends KObject = KObject> {
  type: EventType;
  /** the object after the change (for DELETED: the last state, with the deletion's resourceVersion) */
  object: Stored<T>;
  /** the object before the change (MODIFIED and DELETED) */
  old?: Stored<T>;
}

export interface ListOptions {
  /** omit for all namespaces */
  namespace?: string;
  /** string syntax (`app=web,tier in (a,b)`) or a parsed selector */
  labelSelector?: string | Selector;
  /** `spec.nodeName=n1,status.phase!=Failed` */
  fieldSelector?: string;
  /** at most this many items (a page); the result's `next` resumes after the last */
  limit?: number;
  /** resume after this position (a previous page's `next`) */
  after?: string;
}

export interface ListResult<T extends KObject> {
  items: Stored<T>[];
  /** the store's resourceVersion when the list was taken: watch from it to miss nothing */
  resourceVersion: string;
  /** set when `limit` cut the list: pass it as `after` for the next page */
  next?: string;
  /** how many objects follow the page (only for lists no selector filtered) */
  remaining?: number;
}

export interface WatchOptions extends ListOptions {
  /**
   * Deliver every change after this version. Omitted or "0": start now (no replay).
   * Older than the bounded history: throws an ApiError with reason `Expired` (HTTP 410).
   */
  resourceVersion?: string;
}

export interface Watch {
  stop(): void;
}

export interface WriteOptions {
  /** validate, default and check everything, change nothing */
  dryRun?: boolean;
  /**
   * `status`: only `.status` (and metadata labels/annotations untouched) is taken from the object;
   * a main-resource update of a kind with a status subresource keeps the stored status.
   * `ephemeralcontainers` (pods): only `.spec.ephemeralContainers` is taken from the object,
   * validated by upstream's rules for that subresource (added, never changed or removed).
   */
  subresource?: 'status' | 'ephemeralcontainers';
}

export type PropagationPolicy = 'Foreground' | 'Background' | 'Orphan';

export interface DeleteOptions {
  dryRun?: boolean;
  /** 0 removes a pod at once; otherwise a pod on a node is marked terminating and its node agent removes it */
  gracePeriodSeconds?: number;
  preconditions?: { resourceVersion?: string; uid?: string };
  propagationPolicy?: PropagationPolicy;
}

/**
 * The versioned object store. Every component meets the others only here.
 *
 * - Writes are linearised: each bumps one global resourceVersion.
 * - `update` with `metadata.resourceVersion` set fails with Conflict (409) when the stored
 *   object has moved on; without it the update is unconditional.
 * - Objects handed out are deep-frozen; clone (`api/types.clone`) before changing one.
 * - Creates and updates go through the kind's strategy (defaults, validation, allocation):
 *   an invalid object is rejected with an `Invalid` ApiError carrying field causes.
 * - Watch handlers run in commit order, never re-entrantly; they must be quick (update a
 *   cache, enqueue a key) and must not throw.
 */
export interface Store {
  /** the current global resourceVersion */
  readonly resourceVersion: string;

  get<T extends KObject>(kind: string, namespace: string | undefined, name: string): Promise<Stored<T>>;
  /** like get, but undefined instead of NotFound */
  tryGet<T extends KObject>(kind: string, namespace: string | undefined, name: string): Promise<Stored<T> | undefined>;
  list<T extends KObject>(kind: string, opts?: ListOptions): Promise<ListResult<T>>;

  create<T extends KObject>(obj: T, opts?: WriteOptions): Promise<Stored<T>>;
  update<T extends KObject>(obj: T, opts?: WriteOptions): Promise<Stored<T>>;
  delete<T extends KObject>(
    kind: string,
    namespace: string | undefined,
    name: string,
    opts?: DeleteOptions,
  ): Promise<Stored<T>>;

  /**
   * Read-modify-write with retry on Conflict. `fn` gets a mutable copy; returning `false`
   * (or leaving the copy unchanged) skips the write. Resolves to the stored object, or
   * undefined when it does not exist.
   */
  mutate<T extends KObject>(
    kind: string,
    namespace: string | undefined,
    name: string,
    fn: (obj: T) => boolean | void,
    opts?: WriteOptions,
  ): Promise<Stored<T> | undefined>;

  /**
   * Watch one kind (`'*'` for every kind). Throws Expired when `resourceVersion` is too old.
   * `onError` (optional) is told when the watch ends without `stop()`: list again and watch
   * from the new list's resourceVersion, as client-go's reflector does.
   */
  watch<T extends KObject>(
    kind: string,
    opts: WatchOptions,
    onEvent: (ev: WatchEvent<T>) => void,
    onError?: (err: Error) => void,
  ): Watch;
}
