/**
 * The storage seam: what the registry (`object-store.ts`) needs from a backend, and nothing
 * more. A backend is one file under `store/backends/` that implements `Storage`; the
 * registry, the watch cache and every layer above are the same for all of them.
 *
 * Model (etcd's, on the Redis protocol):
 * - a flat keyspace of string keys → string values (object JSON without
 *   `metadata.resourceVersion`: the version lives beside the value, as etcd's mod_revision);
 * - one global revision, bumped once per successful `commit`; every record written by that
 *   commit carries it;
 * - a commit is a list of conditional ops applied all-or-nothing (a transaction), so an
 *   object and the allocation records it holds (`~ip/…`, `~port/…`) change together;
 * - a change feed of committed batches in revision order, replayable from a revision inside
 *   a retained window (older ⇒ `Expired`).
 *
 * Keys: `<Kind>/<namespace>/<name>` or `<Kind>//<name>` for cluster-scoped kinds (see
 * `recordKey`). Keys starting with `~` are internal records (allocations); the registry
 * never hands them out as objects.
 *
 * Durability: `commit` resolves only once the batch is durable by the backend's standard
 * (embedded: fsynced to the journal; redis: acknowledged by the server, durable as its
 * `appendfsync` says). Watchers see a batch only after it is durable: a watcher never sees a
 * change that a crash can take back.
 *
 * Errors: a backend that cannot be reached throws `ApiError('ServiceUnavailable')` (the API
 * answers 503 with Retry-After); a watch that falls out of the retained window ends with an
 * `ApiError('Expired')` through `onError`.
 */

export interface StoredRecord {
  key: string;
  value: string;
  /** the revision of the commit that last wrote this key */
  rv: number;
}

export type StorageOp =
  /** fails when the key exists */
  | { op: 'create'; key: string; value: string; hint?: unknown }
  /** fails unless the key exists with exactly `expectRv` (omit `expectRv`: unconditional, the key must exist) */
  | { op: 'update'; key: string; value: string; expectRv?: number; hint?: unknown }
  /** fails unless the key exists (with `expectRv`, when given) */
  | { op: 'delete'; key: string; expectRv?: number };

export type CommitResult =
  | { ok: true; rv: number }
  /**
   * Nothing was written. `index` is the first op whose condition failed; `current` is what
   * that key holds now (undefined: absent), so a caller can retry without another read.
   */
  | { ok: false; index: number; current?: StoredRecord };

export interface Change {
  key: string;
  /** undefined for a delete */
  value?: string;
  /**
   * The decoded object the writer passed as `hint` (same process only): saves the watch
   * cache a JSON.parse of what it just stringified. Readers must not rely on it.
   */
  hint?: unknown;
}

/** One committed transaction, as the change feed delivers it. */
export interface ChangeBatch {
  rv: number;
  changes: Change[];
}

export interface StorageWatch {
  stop(): void;
}

export interface Storage {
  /** `embedded` or `redis`, for logs and metrics */
  readonly name: string;

  /** The latest durable revision (what a consistent read must have caught up to). */
  currentRv(): Promise<number>;

  get(key: string): Promise<StoredRecord | undefined>;

  /**
   * Every record whose key starts with `prefix` (`Service/`, `~ip/`; `''` for all), and the
   * revision the list reflects: every commit ≤ `rv` is in it. A backend that cannot list
   * atomically may return records newer than `rv` (never older): replaying the feed from
   * `rv` and applying only changes newer than a record's own `rv` converges.
   */
  list(prefix: string): Promise<{ records: StoredRecord[]; rv: number }>;

  /** Applies every op or none. */
  commit(ops: StorageOp[]): Promise<CommitResult>;

  /**
   * Delivers every batch with revision > `fromRv`, in order, then new ones as they become
   * durable. `onError` is called at most once, and the watch is over: `Expired` when
   * `fromRv` is older than the retained window (list again, then watch from the list's rv),
   * `ServiceUnavailable` when the backend went away and the watch could not resume.
   */
  watch(fromRv: number, onBatch: (b: ChangeBatch) => void, onError: (err: Error) => void): StorageWatch;

  /** Makes everything durable, stops watches, releases the connection/files. */
  close(): Promise<void>;
}

/** `Service/default/web`, `Namespace//default` */
export const recordKey = (kind: string, namespace: string | undefined, name: string): string =>
  `${kind}/${namespace ?? ''}/${name}`;

/** The kind of a record key; undefined for internal records (`~…`). */
export function kindOfKey(key: string): string | undefined {
  if (key.startsWith('~')) return undefined;
  const i = key.indexOf('/');
  return i > 0 ? key.slice(0, i) : undefined;
}
