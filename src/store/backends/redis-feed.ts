/**
 * The change feed of one RedisStorage: a single `XREAD BLOCK` loop on its own connection
 * (a blocking read must not hold the command connection), shared by every `watch()`.
 *
 *            catch-up (XRANGE on the command connection)      live (the shared reader)
 *   fromRv ──────────────────────────────────────────► pos ≥ reader.pos ─────────────────►
 *
 * A new watcher first replays `(fromRv, …]` with XRANGE; it joins the reader once it has
 * caught up with what the reader already delivered, and from then on gets only batches newer
 * than its own position, so nothing is missed or delivered twice. The first replayed entry
 * must be `fromRv + 1`: when the stream was trimmed past it, the watcher ends with `Expired`.
 * Deliveries are synchronous calls from one loop per watcher at a time, in revision order,
 * never from inside `commit`.
 *
 * When Redis goes away the reader retries with backoff and resumes from the last revision it
 * delivered; after `outageMs` without a successful read, every watcher ends with
 * `ServiceUnavailable` (the watch cache relists when the store is back).
 */
import type { Logger } from 'pino';
import type { Redis } from 'ioredis';
import { ApiError } from '../../api/errors.js';
import type { ChangeBatch, StorageWatch } from '../storage.js';
import { decodeEntry, idRv, type RedisKeys } from './redis-script.js';

type Entry = [id: string, fields: string[]];

interface Watcher {
  pos: number;
  live: boolean;
  done: boolean;
  onBatch: (b: ChangeBatch) => void;
  onError: (err: Error) => void;
}

export interface ChangeFeedOptions {
  cmd: Redis;
  reader: Redis;
  keys: RedisKeys;
  log: Logger;
  /** wraps a Redis/connection error into the ApiError a caller sees */
  unavailable: (err: unknown) => ApiError;
  /**
   * Hints of this process's own writes in flight, by key with the value they describe: the
   * reader may see a commit before its writer sees the reply, so they are left before the
   * commit is sent and taken by the first delivered change with that exact value.
   */
  hints: Map<string, { value: string; hint: unknown }>;
  blockMs: number;
  outageMs: number;
  pageSize?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());

export class RedisChangeFeed {
  readonly #o: ChangeFeedOptions;
  readonly #watchers = new Set<Watcher>();
  readonly #page: number;
  /** the last revision the reader delivered; undefined until it started */
  #pos: number | undefined;
  #started: Promise<void> | undefined;
  #running = false;
  #closed = false;

  constructor(o: ChangeFeedOptions) {
    this.#o = o;
    this.#page = o.pageSize ?? 512;
  }

  get active(): boolean {
    return this.#watchers.size > 0;
  }

  add(fromRv: number, onBatch: (b: ChangeBatch) => void, onError: (err: Error) => void): StorageWatch {
    const w: Watcher = { pos: fromRv, live: false, done: false, onBatch, onError };
    if (this.#closed) {
      queueMicrotask(() => onError(new ApiError('ServiceUnavailable', 'the store is closed (kubeloop is shutting down)')));
      return { stop: () => undefined };
    }
    this.#watchers.add(w);
    this.#ensureReader();
    void this.#catchUp(w);
    return {
      stop: () => {
        w.done = true;
        this.#watchers.delete(w);
      },
    };
  }

  close(): void {
    this.#closed = true;
    for (const w of this.#watchers) w.done = true;
    this.#watchers.clear();
  }

  #fail(w: Watcher, err: Error): void {
    if (w.done) return;
    w.done = true;
    this.#watchers.delete(w);
    try {
      w.onError(err);
    } catch (e) {
      this.#o.log.error({ err: e }, 'watch error handler threw');
    }
  }

  #deliver(w: Watcher, b: ChangeBatch): void {
    w.pos = b.rv;
    try {
      w.onBatch(b);
    } catch (e) {
      this.#o.log.error({ err: e, rv: b.rv }, 'watch handler threw; the watch goes on');
    }
  }

  #batch(e: Entry): ChangeBatch {
    const b = decodeEntry(e[0], e[1]);
    const { hints } = this.#o;
    if (hints.size) {
      for (const c of b.changes) {
        const h = hints.get(c.key);
        if (h && c.value === h.value) {
          c.hint = h.hint;
          hints.delete(c.key);
        }
      }
    }
    return b;
  }

  async #catchUp(w: Watcher): Promise<void> {
    const { cmd, keys } = this.#o;
    try {
      await this.#startedPromise();
      while (!w.done) {
        if (this.#pos !== undefined && w.pos >= this.#pos) {
          w.live = true;
          return;
        }
        const entries = (await cmd.xrange(keys.changes, `${w.pos + 1}-0`, '+', 'COUNT', this.#page)) as Entry[];
        if (w.done) return;
        if (!entries.length || idRv(entries[0][0]) !== w.pos + 1) {
          const first = entries.length ? idRv(entries[0][0]) : (this.#pos ?? w.pos) + 1;
          this.#fail(w, expired(w.pos, first));
          return;
        }
        for (const e of entries) {
          if (w.done) return;
          this.#deliver(w, this.#batch(e));
        }
      }
    } catch (err) {
      this.#fail(w, this.#o.unavailable(err));
    }
  }

  #startedPromise(): Promise<void> {
    this.#started ??= (async () => {
      // commits are INCR + XADD in one script: the counter is the stream's last id
      this.#pos = Number((await this.#o.cmd.get(this.#o.keys.rev)) ?? 0);
    })().catch((err) => {
      this.#started = undefined;
      throw err;
    });
    return this.#started;
  }

  #ensureReader(): void {
    if (this.#running) return;
    this.#running = true;
    void this.#read().finally(() => {
      this.#running = false;
      if (!this.#closed && this.#watchers.size) this.#ensureReader();
    });
  }

  /** Ends every watcher, and forgets the reader's position (the next watch starts afresh). */
  #failAll(err: Error): void {
    for (const w of [...this.#watchers]) this.#fail(w, err);
    this.#pos = undefined;
    this.#started = undefined;
  }

  async #read(): Promise<void> {
    const { reader, keys, log } = this.#o;
    let downSince: number | undefined;
    let delay = 100;
    while (!this.#closed && this.#watchers.size) {
      try {
        await this.#startedPromise();
        if (downSince !== undefined) {
          // back after an outage: a Redis that lost its data would hand out old revisions again
          const rv = Number((await this.#o.cmd.get(keys.rev)) ?? 0);
          if (rv < (this.#pos ?? 0)) {
            log.error({ storeRv: rv, deliveredRv: this.#pos }, 'the store is behind what was delivered (Redis lost data): every watch must relist');
            this.#failAll(new ApiError('Expired', `too old resource version: ${this.#pos} (the store restarted at ${rv})`));
            return;
          }
          log.info({ rv: this.#pos }, 'store reachable again; the watch resumes');
          downSince = undefined;
          delay = 100;
        }
        const pos = this.#pos ?? 0;
        const res = (await reader.xread('COUNT', this.#page, 'BLOCK', this.#o.blockMs, 'STREAMS', keys.changes, `${pos}-0`)) as
          | [string, Entry[]][]
          | null;
        if (this.#closed) return;
        if (!res) continue;
        for (const e of res[0][1]) {
          const rv = idRv(e[0]);
          if (this.#pos === undefined || rv <= this.#pos) continue;
          if (rv !== this.#pos + 1) {
            // the stream was trimmed past the reader (it was down or far behind)
            this.#failAll(expired(this.#pos, rv));
            return;
          }
          const b = this.#batch(e);
          this.#pos = rv;
          for (const w of this.#watchers) if (w.live && !w.done && w.pos < rv) this.#deliver(w, b);
        }
      } catch (err) {
        if (this.#closed) return;
        const now = Date.now();
        downSince ??= now;
        if (now - downSince >= this.#o.outageMs) {
          this.#failAll(this.#o.unavailable(err));
          return;
        }
        if (delay === 100) log.warn({ err: this.#o.unavailable(err).message }, 'watch read failed; retrying');
        await sleep(delay);
        delay = Math.min(delay * 2, 2000);
      }
    }
  }
}

const expired = (from: number, firstRetained: number): ApiError =>
  new ApiError('Expired', `too old resource version: ${from} (${firstRetained - 1})`);
