import { chmod, readFile, rename, writeFile } from 'node:fs/promises';
import type { KObject } from '../api/types.js';

/** A batch of changes, coalesced per key: the last state of each key since the previous batch. */
export interface PersistBatch {
  rv: number;
  /** `Kind/ns/name` → object JSON */
  puts: Array<[string, string]>;
  dels: string[];
}

/**
 * Where the store's state survives. The store keeps the authoritative copy in memory and
 * writes behind; this is the only part that speaks to Redis.
 */
export interface Persistence {
  load(): Promise<{ rv: number; objects: KObject[] }>;
  write(batch: PersistBatch): Promise<void>;
  close(): Promise<void>;
}

/** The subset of the ioredis API used, so `ioredis` and `ioredis-mock` both fit. */
export interface RedisLike {
  get(key: string): Promise<string | null>;
  mget(...keys: string[]): Promise<Array<string | null>>;
  keys(pattern: string): Promise<string[]>;
  multi(): RedisMulti;
  quit(): Promise<unknown>;
}
interface RedisMulti {
  set(key: string, value: string): RedisMulti;
  del(...keys: string[]): RedisMulti;
  exec(): Promise<unknown>;
}

const OBJ = 'kubeloop:obj:';
const RV = 'kubeloop:rv';

export interface RedisPersistenceOptions {
  client: RedisLike;
  /**
   * For the embedded (in-process) Redis: a JSON file the keyspace is loaded from at start and
   * saved to at close, so state survives restarts. Not used with a real Redis server.
   */
  snapshotFile?: string;
  /**
   * The snapshot is also saved this long after a write (coalescing the writes in between), so a
   * daemon that is killed outright loses at most that much. Default 1000 ms.
   */
  snapshotDelayMs?: number;
}

/** Objects as `kubeloop:obj:<Kind>/<ns>/<name>` JSON strings and the version in `kubeloop:rv`. */
export class RedisPersistence implements Persistence {
  readonly #client: RedisLike;
  readonly #snapshot: string | undefined;
  readonly #snapshotDelayMs: number;
  #snapshotTimer: NodeJS.Timeout | undefined;
  #saving: Promise<void> = Promise.resolve();

  constructor(o: RedisPersistenceOptions) {
    this.#client = o.client;
    this.#snapshot = o.snapshotFile;
    this.#snapshotDelayMs = o.snapshotDelayMs ?? 1000;
  }

  async load(): Promise<{ rv: number; objects: KObject[] }> {
    if (this.#snapshot) await this.#restoreSnapshot(this.#snapshot);
    const keys = await this.#client.keys(`${OBJ}*`);
    const objects: KObject[] = [];
    for (let i = 0; i < keys.length; i += 500) {
      const vals = await this.#client.mget(...keys.slice(i, i + 500));
      for (const v of vals) if (v) objects.push(JSON.parse(v) as KObject);
    }
    const rv = Number((await this.#client.get(RV)) ?? 0);
    return { rv, objects };
  }

  async write(batch: PersistBatch): Promise<void> {
    const m = this.#client.multi();
    for (const [k, v] of batch.puts) m.set(OBJ + k, v);
    if (batch.dels.length) m.del(...batch.dels.map((k) => OBJ + k));
    m.set(RV, String(batch.rv));
    await m.exec();
    if (this.#snapshot && !this.#snapshotTimer) {
      const file = this.#snapshot;
      this.#snapshotTimer = setTimeout(() => {
        this.#snapshotTimer = undefined;
        this.#saving = this.#saving.then(() => this.#saveSnapshot(file)).catch(() => undefined);
      }, this.#snapshotDelayMs);
      this.#snapshotTimer.unref();
    }
  }

  async close(): Promise<void> {
    clearTimeout(this.#snapshotTimer);
    this.#snapshotTimer = undefined;
    await this.#saving;
    if (this.#snapshot) await this.#saveSnapshot(this.#snapshot);
    await this.#client.quit();
  }

  async #restoreSnapshot(file: string): Promise<void> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    let snap: { rv: number; objects: Record<string, string> };
    try {
      snap = JSON.parse(text);
    } catch {
      throw new Error(`${file} is not a kubeloop snapshot (invalid JSON): move it away or pass another --state-dir`);
    }
    const m = this.#client.multi();
    for (const [k, v] of Object.entries(snap.objects ?? {})) m.set(OBJ + k, v);
    m.set(RV, String(snap.rv ?? 0));
    await m.exec();
  }

  async #saveSnapshot(file: string): Promise<void> {
    const keys = await this.#client.keys(`${OBJ}*`);
    const objects: Record<string, string> = {};
    for (let i = 0; i < keys.length; i += 500) {
      const chunk = keys.slice(i, i + 500);
      const vals = await this.#client.mget(...chunk);
      chunk.forEach((k, j) => {
        if (vals[j]) objects[k.slice(OBJ.length)] = vals[j]!;
      });
    }
    const rv = Number((await this.#client.get(RV)) ?? 0);
    const tmp = `${file}.tmp`;
    // owner-only whatever the umask or a stale tmp file says: the snapshot holds Secrets
    await writeFile(tmp, JSON.stringify({ rv, objects }), { mode: 0o600 });
    await chmod(tmp, 0o600);
    await rename(tmp, file);
  }
}
