import { ApiError } from '../../api/errors.js';
import type { ChangeBatch, CommitResult, Storage, StorageOp, StorageWatch, StoredRecord } from '../storage.js';

export interface EmbeddedStorageOptions {
  /** journal + snapshots live here; omit for a throw-away store */
  dir?: string;
  /** batches kept for watch-from-revision */
  historySize?: number;
}

/**
 * v0 placeholder: in-memory only (no journal yet). Being replaced by the journaled
 * ioredis-mock backend.
 */
export class EmbeddedStorage implements Storage {
  readonly name = 'embedded';
  readonly #data = new Map<string, StoredRecord>();
  readonly #history: ChangeBatch[] = [];
  readonly #historySize: number;
  readonly #watchers = new Set<{ fn: (b: ChangeBatch) => void; onError: (e: Error) => void }>();
  #rv = 0;
  #closed = false;

  constructor(o: EmbeddedStorageOptions = {}) {
    this.#historySize = o.historySize ?? 10_000;
  }

  static async open(o: EmbeddedStorageOptions = {}): Promise<EmbeddedStorage> {
    return new EmbeddedStorage(o);
  }

  async currentRv(): Promise<number> {
    return this.#rv;
  }

  async get(key: string): Promise<StoredRecord | undefined> {
    return this.#data.get(key);
  }

  async list(prefix: string): Promise<{ records: StoredRecord[]; rv: number }> {
    const records: StoredRecord[] = [];
    for (const [k, r] of this.#data) if (k.startsWith(prefix)) records.push(r);
    return { records, rv: this.#rv };
  }

  async commit(ops: StorageOp[]): Promise<CommitResult> {
    if (this.#closed) throw new ApiError('ServiceUnavailable', 'the store is closed (kubeloop is shutting down)');
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i];
      const cur = this.#data.get(op.key);
      const ok = op.op === 'create' ? !cur : !!cur && (op.expectRv === undefined || cur.rv === op.expectRv);
      if (!ok) return { ok: false, index: i, current: cur };
    }
    const rv = ++this.#rv;
    const batch: ChangeBatch = { rv, changes: [] };
    for (const op of ops) {
      if (op.op === 'delete') {
        this.#data.delete(op.key);
        batch.changes.push({ key: op.key });
      } else {
        this.#data.set(op.key, { key: op.key, value: op.value, rv });
        batch.changes.push({ key: op.key, value: op.value, hint: op.hint });
      }
    }
    this.#history.push(batch);
    if (this.#history.length > this.#historySize) this.#history.splice(0, this.#history.length - this.#historySize);
    for (const w of this.#watchers) w.fn(batch);
    return { ok: true, rv };
  }

  watch(fromRv: number, onBatch: (b: ChangeBatch) => void, onError: (err: Error) => void): StorageWatch {
    const w = { fn: onBatch, onError };
    const oldest = this.#history.length ? this.#history[0].rv : this.#rv + 1;
    if (fromRv < oldest - 1 && fromRv < this.#rv) {
      queueMicrotask(() => onError(new ApiError('Expired', `too old resource version: ${fromRv} (${oldest - 1})`)));
      return { stop: () => undefined };
    }
    for (const b of this.#history) if (b.rv > fromRv) onBatch(b);
    this.#watchers.add(w);
    return { stop: () => void this.#watchers.delete(w) };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#watchers.clear();
  }
}
