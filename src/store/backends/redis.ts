/**
 * The `redis` storage backend (`--store redis://…`): the Storage model on a real Redis server,
 * so several daemons on one Redis are one cluster (as several kube-apiservers on one etcd).
 * Layout and the commit script: `redis-script.ts`; the change feed: `redis-feed.ts`.
 *
 * Failure model: commands are never queued while the server is away (`enableOfflineQueue:
 * false`), never re-sent after a reconnect (`autoResendUnfulfilledCommands: false`,
 * `maxRetriesPerRequest: 0`) and bounded by `commandTimeout`, so every call fails fast with
 * `ServiceUnavailable` during an outage. A commit whose reply was lost is ambiguous: it fails
 * with ServiceUnavailable and is not retried here; the client's retry then meets the
 * condition it set (a create finds the key, an update a newer rv), never a duplicate write.
 */
import { isIP } from 'node:net';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { ApiError } from '../../api/errors.js';
import type { ChangeBatch, CommitResult, Storage, StorageOp, StorageWatch, StoredRecord } from '../storage.js';
import { RedisChangeFeed } from './redis-feed.js';
import { COMMIT_LUA, MAX_OPS_PER_COMMIT, commitArgs, indexName, redisKeys, type RedisKeys } from './redis-script.js';
import { parseRedisUrl, type RedisTarget } from './redis-url.js';

export { redactUrl } from './redis-url.js';

export interface RedisStorageOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS) */
  url: string;
  log: Logger;
  /** used when the URL has none (the CLI passes `$KUBELOOP_REDIS_PASSWORD`) */
  password?: string;
  /**
   * `rediss://` only: PEM of the CA that signed the server's certificate, when it is not one the
   * system trusts (Node's `NODE_EXTRA_CA_CERTS` works too). The certificate is always verified.
   */
  tlsCa?: string;
  /** key prefix; default `kubeloop:` (several clusters can share one Redis database) */
  keyPrefix?: string;
  /** change-stream entries kept for watch-from-revision (`XADD MAXLEN ~`); default 10,000 */
  streamMaxLen?: number;
  /** alias of streamMaxLen, as the embedded backend names it */
  historySize?: number;
  /** per command; default 5,000 ms */
  commandTimeoutMs?: number;
  /** connecting at open(); default 5,000 ms */
  connectTimeoutMs?: number;
  /** how long a watch outlives an outage before it ends with ServiceUnavailable; default 30,000 ms */
  watchOutageMs?: number;
  /** XREAD BLOCK; default 5,000 ms */
  watchBlockMs?: number;
  /** Retry-After hint on ServiceUnavailable; default 1 */
  retryAfterSeconds?: number;
}

type CommitReply = [1, string] | [0, number, string | null, string | null];

interface WithCommit {
  kubeloopCommit(...args: (string | number)[]): Promise<CommitReply>;
}

/** Records are read in pipelines of this many keys. */
const LIST_CHUNK = 500;
/** Hints waiting for the reader, at most (it takes them as it delivers). */
const MAX_HINTS = 10_000;

/**
 * Disconnects without leaving a socket that can still emit an unhandled 'error' (a TLS peer's
 * late alert after ioredis let go of the socket would crash the process).
 */
function quietDisconnect(r: Redis): void {
  r.stream?.on('error', () => undefined);
  r.disconnect();
}

export class RedisStorage implements Storage {
  readonly name = 'redis';
  readonly #target: RedisTarget;
  readonly #cmd: Redis & WithCommit;
  readonly #reader: Redis;
  readonly #keys: RedisKeys;
  readonly #log: Logger;
  readonly #maxLen: number;
  readonly #retryAfter: number;
  readonly #hints = new Map<string, { value: string; hint: unknown }>();
  readonly #feed: RedisChangeFeed;
  #closed: Promise<void> | undefined;

  private constructor(o: RedisStorageOptions, target: RedisTarget, cmd: Redis, reader: Redis) {
    this.#target = target;
    this.#log = o.log;
    this.#keys = redisKeys(o.keyPrefix ?? 'kubeloop:');
    this.#maxLen = o.streamMaxLen ?? o.historySize ?? 10_000;
    this.#retryAfter = o.retryAfterSeconds ?? 1;
    cmd.defineCommand('kubeloopCommit', { lua: COMMIT_LUA });
    this.#cmd = cmd as Redis & WithCommit;
    this.#reader = reader;
    this.#feed = new RedisChangeFeed({
      cmd,
      reader,
      keys: this.#keys,
      log: o.log,
      unavailable: (e) => this.#unavailable(e),
      hints: this.#hints,
      blockMs: o.watchBlockMs ?? 5_000,
      outageMs: o.watchOutageMs ?? 30_000,
    });
  }

  /**
   * Connects (and authenticates) before resolving. Throws a plain Error naming the problem for
   * a bad URL; `ServiceUnavailable` when the server cannot be reached or refuses the credentials.
   */
  static async open(o: RedisStorageOptions): Promise<RedisStorage> {
    const target = parseRedisUrl(o.url, o.password);
    const log = o.log.child({ component: 'store', store: target.redacted });
    const commandTimeout = o.commandTimeoutMs ?? 5_000;
    const base: RedisOptions = {
      host: target.host,
      port: target.port,
      db: target.db,
      username: target.username,
      password: target.password,
      // SNI carries host names only (RFC 6066); the certificate is checked against the host either way
      ...(target.tls ? { tls: { ...(isIP(target.host) ? {} : { servername: target.host }), ...(o.tlsCa ? { ca: o.tlsCa } : {}) } } : {}),
      lazyConnect: true,
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      commandTimeout,
      connectTimeout: o.connectTimeoutMs ?? 5_000,
      retryStrategy: (n: number) => Math.min(n * 100, 2_000),
      reconnectOnError: () => false,
      keepAlive: 10_000,
      connectionName: 'kubeloop',
    };
    const cmd = new Redis(base);
    // a blocking XREAD outlasts commandTimeout by design; give it its block time plus a margin
    const reader = new Redis({ ...base, commandTimeout: (o.watchBlockMs ?? 5_000) + commandTimeout, connectionName: 'kubeloop-watch' });
    const s = new RedisStorage({ ...o, log }, target, cmd, reader);
    let lastError: Error | undefined;
    for (const c of [cmd, reader]) {
      c.on('error', (err: Error) => {
        // ioredis reports every failed reconnect; one line per distinct problem is enough
        if (err.message !== lastError?.message) log.warn({ err: s.#unavailable(err).message }, 'redis connection error');
        lastError = err;
      });
    }
    try {
      // one after the other: a refused first connection leaves no second socket half-open
      await cmd.connect();
      await cmd.ping();
      await reader.connect();
    } catch (err) {
      quietDisconnect(cmd);
      quietDisconnect(reader);
      // the cause (a refused AUTH, an untrusted certificate) surfaces as an 'error' event;
      // connect() itself only says that the connection closed
      throw s.#unavailable(lastError ?? err);
    }
    log.info({ maxLen: s.#maxLen }, 'redis store opened');
    return s;
  }

  /** Every failure of the server or the connection, as the API shows it (password redacted). */
  #unavailable(err: unknown): ApiError {
    if (err instanceof ApiError) return err;
    const raw = err instanceof Error ? err.message : String(err);
    // ioredis's words for a command refused while its connection is down (no offline queue, no retries)
    const down = /^(Stream isn't writeable|Reached the max retries per request limit|Connection is closed)/.test(raw);
    const msg = down ? 'the connection is down' : this.#target.password ? raw.split(this.#target.password).join('***') : raw;
    const what = /NOAUTH|WRONGPASS|invalid password|invalid username/i.test(msg)
      ? `refused the credentials: ${msg} — set the password in the URL or $KUBELOOP_REDIS_PASSWORD`
      : /^OOM /.test(msg)
        ? `is out of memory: ${msg} — raise its maxmemory or free memory there`
        : /^WRONGTYPE key /.test(msg)
          ? `refused the write: ${msg}`
          : `is unreachable: ${msg}`;
    return new ApiError('ServiceUnavailable', `the store (redis at ${this.#target.redacted}) ${what}`, {
      retryAfterSeconds: this.#retryAfter,
    });
  }

  async #call<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new ApiError('ServiceUnavailable', 'the store is closed (kubeloop is shutting down)');
    try {
      return await fn();
    } catch (err) {
      throw this.#unavailable(err);
    }
  }

  async currentRv(): Promise<number> {
    return this.#call(async () => Number((await this.#cmd.get(this.#keys.rev)) ?? 0));
  }

  async get(key: string): Promise<StoredRecord | undefined> {
    const [v, rv] = await this.#call(() => this.#cmd.hmget(this.#keys.record(key), 'v', 'rv'));
    return rv === null || v === null ? undefined : { key, value: v, rv: Number(rv) };
  }

  /**
   * The revision is read first, then the records, chunk by chunk from the per-kind indexes. A
   * record written meanwhile comes back newer than `rv` (never older, since every commit ≤ rv
   * was already in Redis); a watch from `rv` replays that commit again, and a consumer that
   * applies only changes newer than a record's own rv converges on the same state.
   */
  async list(prefix: string): Promise<{ records: StoredRecord[]; rv: number }> {
    return this.#call(async () => {
      const rv = Number((await this.#cmd.get(this.#keys.rev)) ?? 0);
      const names = prefix.includes('/')
        ? [indexName(prefix)]
        : (await this.#cmd.smembers(this.#keys.idxs)).filter((n) => n.startsWith(prefix)).sort();
      const records: StoredRecord[] = [];
      for (const name of names) {
        const idx = this.#keys.index(name);
        let min = prefix.includes('/') ? `[${prefix}` : '-';
        for (;;) {
          const members = await this.#cmd.zrangebylex(idx, min, '+', 'LIMIT', 0, LIST_CHUNK);
          const keys = members.filter((m) => m.startsWith(prefix));
          if (keys.length) {
            const p = this.#cmd.pipeline();
            for (const k of keys) p.hmget(this.#keys.record(k), 'v', 'rv');
            const replies = (await p.exec()) ?? [];
            replies.forEach(([err, r], i) => {
              if (err) throw err;
              const [v, krv] = r as (string | null)[];
              if (v !== null && krv !== null) records.push({ key: keys[i], value: v, rv: Number(krv) });
            });
          }
          if (members.length < LIST_CHUNK || keys.length < members.length) break;
          min = `(${members[members.length - 1]}`;
        }
      }
      return { records, rv };
    });
  }

  async commit(ops: StorageOp[]): Promise<CommitResult> {
    if (ops.length === 0) throw new ApiError('BadRequest', 'a commit needs at least one operation');
    if (ops.length > MAX_OPS_PER_COMMIT) {
      throw new ApiError('RequestEntityTooLarge', `a commit of ${ops.length} operations is more than the redis store takes at once (${MAX_OPS_PER_COMMIT}): split it`);
    }
    const args = commitArgs(this.#keys, ops, this.#maxLen);
    const hinted = this.#feed.active ? ops.filter((o) => o.op !== 'delete' && o.hint !== undefined) : [];
    for (const o of hinted) {
      if (o.op === 'delete') continue;
      this.#hints.set(o.key, { value: o.value, hint: o.hint });
      if (this.#hints.size > MAX_HINTS) this.#hints.delete(this.#hints.keys().next().value as string);
    }
    let reply: CommitReply;
    try {
      reply = await this.#call(() => this.#cmd.kubeloopCommit(...args));
    } catch (err) {
      for (const o of hinted) this.#hints.delete(o.key);
      throw err;
    }
    if (reply[0] === 1) return { ok: true, rv: Number(reply[1]) };
    for (const o of hinted) this.#hints.delete(o.key);
    const [, index, v, rv] = reply;
    const key = ops[index].key;
    return { ok: false, index, current: rv === null || v === null ? undefined : { key, value: v, rv: Number(rv) } };
  }

  watch(fromRv: number, onBatch: (b: ChangeBatch) => void, onError: (err: Error) => void): StorageWatch {
    return this.#feed.add(fromRv, onBatch, onError);
  }

  async close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#feed.close();
      quietDisconnect(this.#reader);
      // QUIT waits for the replies of commands already sent (every acknowledged commit is in Redis)
      await this.#cmd.quit().catch(() => quietDisconnect(this.#cmd));
      this.#log.info('redis store closed');
    })();
    return this.#closed;
  }
}
