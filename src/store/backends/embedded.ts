import { randomUUID } from 'node:crypto';
import { type FileHandle, mkdir, open, readFile, readdir, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { type RedisMock, loadRedisMock } from './redis-mock.js';
import pino, { type Logger } from 'pino';
import { ApiError } from '../../api/errors.js';
import type { Change, ChangeBatch, CommitResult, Storage, StorageOp, StorageWatch, StoredRecord } from '../storage.js';
import { MAX_RECORD, encodeRecord, scanSegment } from './journal-format.js';
import {
  type Keyspace,
  LEGACY,
  SNAPSHOT,
  type Segment,
  fsyncDir,
  markMigrated,
  readLegacy,
  readSnapshot,
  segmentName,
  segmentsIn,
  unlinkIfPresent,
  writeSnapshot,
} from './journal-files.js';

export interface EmbeddedStorageOptions {
  /** journal + snapshots live here (created 0700); omit for a throw-away in-memory store */
  dir?: string;
  /** batches kept for watch-from-revision; default 10,000 */
  historySize?: number;
  /** fdatasync each batch before acknowledging it; default true. Off: a crash may lose acknowledged writes */
  fsync?: boolean;
  /** snapshot (and start a new journal segment) after this many journaled commits; default 10,000 */
  snapshotEvery?: number;
  /** ... or after this many journal bytes; default 64 MiB */
  snapshotBytes?: number;
  log?: Logger;
}

export interface EmbeddedStats {
  /** acknowledged successful commits */
  commits: number;
  /** journal fdatasyncs */
  fsyncs: number;
  /** journal writes (one per group of commits) */
  batches: number;
  snapshots: number;
}

interface Pending {
  rv: number;
  ops: StorageOp[];
  record?: Buffer;
  resolve: (r: CommitResult) => void;
  reject: (e: Error) => void;
}

interface Watcher {
  queue: ChangeBatch[];
  draining: boolean;
  stopped: boolean;
  onBatch: (b: ChangeBatch) => void;
  onError: (err: Error) => void;
}

interface Journal {
  fh: FileHandle;
  segment: Segment;
  /** journaled since the last snapshot */
  records: number;
  bytes: number;
}

/**
 * Records per MGET/MSET and per snapshot write: at ~1 KiB each a chunk is a few ms of work
 * (JSON, CRC, copying), so a 50,000-record snapshot never holds the loop long.
 */
const CHUNK = 256;

/**
 * The default backend: the keyspace in an in-process `ioredis-mock`, made durable by an
 * append-only journal in `dir` (etcd's WAL shape, SQLite's group commit):
 *
 *   commit ─► check conditions against #index (sync) ─► rv++ ─► queue
 *                                                         │
 *   flush loop: take the whole queue ─► one write + one fdatasync ─► apply to the mock
 *               ─► resolve those commits ─► feed watchers ─► (maybe rotate + snapshot)
 *
 * The mock holds each record as `<key>` → `"<rv> <value>"` (one MGET serves list and snapshot).
 * Commits arriving while a batch is being synced wait for the next one. `#index` (key → rv,
 * including queued commits) is what conditions are checked against, so a commit is
 * linearized at its call; the mock and every read see only durable batches. A journal write
 * or fsync error is fatal: memory (the index) is then ahead of disk, so every queued and
 * later commit fails with ServiceUnavailable until a restart replays the journal.
 *
 * Snapshots are fuzzy: at a batch boundary a new segment `journal-<S>.log` starts, then the
 * keyspace is copied from the mock a chunk at a time while commits continue, so it may hold
 * records newer than S. Replay applies a journal record only over an older one, which makes
 * that converge; once the snapshot is renamed into place the older segments are deleted.
 */
export class EmbeddedStorage implements Storage {
  readonly name = 'embedded';
  readonly #dir: string | undefined;
  readonly #fsync: boolean;
  readonly #historySize: number;
  readonly #snapshotEvery: number;
  readonly #snapshotBytes: number;
  readonly #log: Logger;
  readonly #mock: InstanceType<RedisMock>;
  /** key → rv of every existing key, queued commits included: what conditions are checked against */
  readonly #index = new Map<string, number>();
  /** key → rv of its latest write that is not durable yet */
  readonly #pending = new Map<string, number>();
  /** the retained batches are `#history[#historyHead..]` (a queue without a splice per commit) */
  #history: ChangeBatch[] = [];
  #historyHead = 0;
  readonly #watchers = new Set<Watcher>();
  readonly #stats: EmbeddedStats = { commits: 0, fsyncs: 0, batches: 0, snapshots: 0 };
  #queue: Pending[] = [];
  #flushing: Promise<void> | undefined;
  #durableWaiters: Array<{ rv: number; resolve: () => void; reject: (e: Error) => void }> = [];
  /** last assigned revision */
  #rv = 0;
  /** last revision that is durable and in the mock */
  #durableRv = 0;
  #journal: Journal | undefined;
  #snapshotting: Promise<void> | undefined;
  #fatal: ApiError | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  #released = false;

  private constructor(o: EmbeddedStorageOptions, Mock: RedisMock) {
    this.#dir = o.dir;
    this.#fsync = o.fsync ?? true;
    this.#historySize = Math.max(1, o.historySize ?? 10_000);
    this.#snapshotEvery = Math.max(1, o.snapshotEvery ?? 10_000);
    this.#snapshotBytes = Math.max(1, o.snapshotBytes ?? 64 * 1024 * 1024);
    this.#log = (o.log ?? pino({ level: 'silent' })).child({ component: 'store-embedded' });
    // instances with the same host share a keyspace: each store gets its own
    this.#mock = new Mock({ host: `embedded-${randomUUID()}` });
  }

  /** Opens (creating, migrating or replaying) the store in `o.dir`; throws what to do when the files are damaged. */
  static async open(o: EmbeddedStorageOptions = {}): Promise<EmbeddedStorage> {
    const s = new EmbeddedStorage(o, await loadRedisMock());
    try {
      if (s.#dir) await s.#recover(s.#dir);
    } catch (e) {
      await s.#mock.quit().catch(() => undefined);
      throw e;
    }
    return s;
  }

  stats(): EmbeddedStats {
    return { ...this.#stats };
  }

  async currentRv(): Promise<number> {
    return this.#durableRv;
  }

  async get(key: string): Promise<StoredRecord | undefined> {
    this.#assertOpen();
    return decode(key, await this.#mock.get(key));
  }

  async list(prefix: string): Promise<{ records: StoredRecord[]; rv: number }> {
    this.#assertOpen();
    // every commit ≤ rv is in the mock before this read; later ones may show (newer, never older)
    const rv = this.#durableRv;
    const keys: string[] = [];
    for (const k of this.#index.keys()) if (k.startsWith(prefix)) keys.push(k);
    const records: StoredRecord[] = [];
    for (let i = 0; i < keys.length; i += CHUNK) {
      if (i) await nextTurn();
      const chunk = keys.slice(i, i + CHUNK);
      const vals = await this.#mock.mget(...chunk);
      chunk.forEach((k, j) => {
        const r = decode(k, vals[j]);
        if (r) records.push(r);
      });
    }
    return { records, rv };
  }

  commit(ops: StorageOp[]): Promise<CommitResult> {
    if (this.#fatal) return Promise.reject(this.#fatal);
    if (this.#closed) return Promise.reject(closedError());
    if (!ops.length) return Promise.reject(new ApiError('BadRequest', 'a storage commit needs at least one op'));
    // checked and applied to the index in one synchronous step: no other commit interleaves
    const WRITTEN = -1;
    const local = new Map<string, number | undefined>();
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i];
      const cur = local.has(op.key) ? local.get(op.key) : this.#index.get(op.key);
      const ok = op.op === 'create' ? cur === undefined : cur !== undefined && (op.expectRv === undefined || cur === op.expectRv);
      if (!ok) return this.#conflict(i, op.key);
      local.set(op.key, op.op === 'delete' ? undefined : WRITTEN);
    }
    const rv = this.#rv + 1;
    let record: Buffer | undefined;
    if (this.#dir) {
      record = encodeRecord({ rv, ops: ops.map((op) => ({ key: op.key, value: op.op === 'delete' ? undefined : op.value })) });
      if (record.length > MAX_RECORD) {
        return Promise.reject(new ApiError('RequestEntityTooLarge', `a storage commit of ${record.length} bytes is over the journal's ${MAX_RECORD}-byte record limit`));
      }
    }
    this.#rv = rv;
    for (const op of ops) {
      if (op.op === 'delete') this.#index.delete(op.key);
      else this.#index.set(op.key, rv);
      this.#pending.set(op.key, rv);
    }
    return new Promise<CommitResult>((resolve, reject) => {
      this.#queue.push({ rv, ops, record, resolve, reject });
      this.#kick();
    });
  }

  watch(fromRv: number, onBatch: (b: ChangeBatch) => void, onError: (err: Error) => void): StorageWatch {
    const fail = (e: Error): StorageWatch => {
      queueMicrotask(() => onError(e));
      return { stop: () => undefined };
    };
    if (this.#fatal) return fail(this.#fatal);
    if (this.#closed) return fail(closedError());
    const h = this.#history;
    const oldest = h.length > this.#historyHead ? h[this.#historyHead].rv : this.#durableRv + 1;
    if (fromRv < oldest - 1 && fromRv < this.#durableRv) {
      return fail(new ApiError('Expired', `too old resource version: ${fromRv} (${oldest - 1})`));
    }
    let lo = this.#historyHead;
    let hi = h.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (h[mid].rv <= fromRv) lo = mid + 1;
      else hi = mid;
    }
    const w: Watcher = { queue: h.slice(lo), draining: false, stopped: false, onBatch, onError };
    this.#watchers.add(w);
    if (w.queue.length) this.#scheduleDrain(w);
    return {
      stop: () => {
        w.stopped = true;
        this.#watchers.delete(w);
      },
    };
  }

  /** Drains queued commits (fsynced), writes a final snapshot, ends watches, releases the files. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    while (this.#flushing || this.#snapshotting) {
      await this.#flushing;
      await this.#snapshotting;
    }
    for (const w of this.#watchers) w.stopped = true;
    this.#watchers.clear();
    try {
      if (this.#journal && !this.#fatal) {
        // nothing moves now: a snapshot at #durableRv covers every segment
        await this.#journal.fh.close();
        const old = await this.#segments();
        await this.#snapshot(this.#durableRv);
        for (const s of old) await unlinkIfPresent(s.path);
        this.#journal = undefined;
      }
    } catch (e) {
      this.#log.error({ err: e }, 'final snapshot failed; the journal is kept and replayed at the next start');
    } finally {
      await this.#journal?.fh.close().catch(() => undefined);
      this.#journal = undefined;
      this.#released = true;
      await this.#mock.quit().catch(() => undefined);
    }
  }

  #assertOpen(): void {
    // reads go on while close() drains; once the mock is released they fail clearly
    if (this.#released) throw closedError();
  }

  /** a failed condition: `current` is read once the write it saw is durable */
  async #conflict(index: number, key: string): Promise<CommitResult> {
    const seen = this.#pending.get(key);
    if (seen !== undefined) await this.#waitDurable(seen);
    return { ok: false, index, current: await this.get(key) };
  }

  #waitDurable(rv: number): Promise<void> {
    if (this.#durableRv >= rv) return Promise.resolve();
    if (this.#fatal) return Promise.reject(this.#fatal);
    return new Promise((resolve, reject) => this.#durableWaiters.push({ rv, resolve, reject }));
  }

  #kick(): void {
    if (this.#flushing) return;
    // one turn of the loop lets the commits of the same tick join the first batch
    this.#flushing = new Promise<void>((r) => setImmediate(r))
      .then(() => this.#flushLoop())
      .catch((e: unknown) => this.#die(e as Error, []));
  }

  async #flushLoop(): Promise<void> {
    try {
      while (this.#queue.length && !this.#fatal) {
        const batch = this.#queue;
        this.#queue = [];
        try {
          if (this.#journal) await this.#append(batch);
          await this.#apply(batch);
        } catch (e) {
          this.#die(e as Error, batch);
          return;
        }
        this.#acknowledge(batch);
        if (this.#journal && !this.#snapshotting && !this.#closed && this.#dueForSnapshot()) await this.#rotate();
      }
    } finally {
      this.#flushing = undefined;
      if (this.#queue.length && !this.#fatal) this.#kick();
    }
  }

  async #append(batch: Pending[]): Promise<void> {
    const j = this.#journal!;
    const buf = batch.length === 1 ? batch[0].record! : Buffer.concat(batch.map((p) => p.record!));
    let off = 0;
    while (off < buf.length) {
      const { bytesWritten } = await j.fh.write(buf, off, buf.length - off);
      off += bytesWritten;
    }
    this.#stats.batches++;
    if (this.#fsync) {
      await j.fh.datasync();
      this.#stats.fsyncs++;
    }
    j.records += batch.length;
    j.bytes += buf.length;
  }

  /** writes the batch's net effect into the mock, values prefixed with their rv */
  async #apply(batch: Pending[]): Promise<void> {
    const net = new Map<string, string | null>();
    for (const p of batch) for (const op of p.ops) net.set(op.key, op.op === 'delete' ? null : `${p.rv} ${op.value}`);
    const sets: string[] = [];
    const dels: string[] = [];
    for (const [k, v] of net) {
      if (v === null) dels.push(k);
      else sets.push(k, v);
    }
    const m = this.#mock.multi();
    if (sets.length) m.mset(...sets);
    if (dels.length) m.del(...dels);
    await m.exec();
  }

  #acknowledge(batch: Pending[]): void {
    const batches: ChangeBatch[] = [];
    for (const p of batch) {
      const changes: Change[] = [];
      for (const op of p.ops) {
        if (this.#pending.get(op.key) === p.rv) this.#pending.delete(op.key);
        changes.push(op.op === 'delete' ? { key: op.key } : { key: op.key, value: op.value, hint: op.hint });
      }
      batches.push({ rv: p.rv, changes });
    }
    this.#durableRv = batch[batch.length - 1].rv;
    for (const b of batches) this.#history.push(b);
    this.#historyHead = Math.max(this.#historyHead, this.#history.length - this.#historySize);
    if (this.#historyHead >= 1024 && this.#historyHead * 2 >= this.#history.length) {
      this.#history = this.#history.slice(this.#historyHead);
      this.#historyHead = 0;
    }
    this.#stats.commits += batch.length;
    for (const p of batch) p.resolve({ ok: true, rv: p.rv });
    if (this.#durableWaiters.length) {
      const due = this.#durableWaiters.filter((w) => w.rv <= this.#durableRv);
      this.#durableWaiters = this.#durableWaiters.filter((w) => w.rv > this.#durableRv);
      for (const w of due) w.resolve();
    }
    for (const w of this.#watchers) {
      for (const b of batches) w.queue.push(b);
      this.#scheduleDrain(w);
    }
  }

  /** the journal failed: nothing more is acknowledged until a restart replays what is on disk */
  #die(err: Error, batch: Pending[]): void {
    const file = this.#journal?.segment.path ?? this.#dir ?? 'the journal';
    this.#fatal = new ApiError(
      'ServiceUnavailable',
      `the store's journal ${file} failed (${err.message}): no write is accepted until kubeloop is restarted ` +
        '(every acknowledged write is on disk and is replayed at start)',
    );
    this.#log.error({ err, file }, 'journal write failed: the store refuses writes until restarted');
    for (const p of [...batch, ...this.#queue]) p.reject(this.#fatal);
    this.#queue = [];
    for (const w of this.#durableWaiters) w.reject(this.#fatal);
    this.#durableWaiters = [];
    for (const w of this.#watchers) {
      w.stopped = true;
      const e = this.#fatal;
      queueMicrotask(() => w.onError(e));
    }
    this.#watchers.clear();
  }

  #scheduleDrain(w: Watcher): void {
    if (w.draining) return;
    w.draining = true;
    queueMicrotask(() => {
      let i = 0;
      try {
        while (!w.stopped && i < w.queue.length) {
          const b = w.queue[i++];
          try {
            w.onBatch(b);
          } catch (err) {
            this.#log.error({ err, rv: b.rv }, 'a watcher threw on a batch');
          }
        }
      } finally {
        w.queue.splice(0, i);
        w.draining = false;
        if (w.queue.length && !w.stopped) this.#scheduleDrain(w);
      }
    });
  }

  #dueForSnapshot(): boolean {
    const j = this.#journal!;
    return j.records >= this.#snapshotEvery || j.bytes >= this.#snapshotBytes;
  }

  /**
   * At a batch boundary (nothing in flight): start segment `journal-<durableRv>.log` for the
   * commits to come, then snapshot in the background and drop the older segments.
   */
  async #rotate(): Promise<void> {
    const dir = this.#dir!;
    const start = this.#durableRv;
    const old = this.#journal!;
    const segment: Segment = { name: segmentName(start), path: join(dir, segmentName(start)), start };
    let fh: FileHandle | undefined;
    try {
      fh = await open(segment.path, 'a', 0o600);
      if (this.#fsync) await fsyncDir(dir);
    } catch (err) {
      // the old segment is whole and open: keep appending there, try again after as many records
      await fh?.close().catch(() => undefined);
      if (fh) await unlinkIfPresent(segment.path).catch(() => undefined);
      old.records = 0;
      old.bytes = 0;
      this.#log.error({ err, file: segment.path }, 'cannot start a new journal segment; the current one goes on growing');
      return;
    }
    this.#journal = { fh, segment, records: 0, bytes: 0 };
    await old.fh.close().catch((err: unknown) => this.#log.warn({ err, file: old.segment.path }, 'closing a journal segment failed'));
    this.#snapshotting = (async () => {
      try {
        const obsolete = (await this.#segments()).filter((s) => s.start < start);
        await this.#snapshot(start);
        for (const s of obsolete) await unlinkIfPresent(s.path);
      } catch (err) {
        // the older segments stay, so nothing is lost; the next rotation tries again
        this.#log.error({ err, dir }, 'snapshot failed; journal segments are kept');
      } finally {
        this.#snapshotting = undefined;
      }
    })();
  }

  async #segments(): Promise<Segment[]> {
    return segmentsIn(this.#dir!, await readdir(this.#dir!));
  }

  /** a snapshot at `rv` copied from the mock a chunk at a time (fuzzy when commits continue) */
  async #snapshot(rv: number): Promise<void> {
    const keys = [...this.#index.keys()];
    const mock = this.#mock;
    const n = await writeSnapshot({
      dir: this.#dir!,
      rv,
      fsync: this.#fsync,
      chunks: (async function* () {
        for (let i = 0; i < keys.length; i += CHUNK) {
          const chunk = keys.slice(i, i + CHUNK);
          const vals = await mock.mget(...chunk);
          const out: Array<[string, number, string]> = [];
          chunk.forEach((k, j) => {
            const r = decode(k, vals[j]);
            if (r) out.push([k, r.rv, r.value]);
          });
          yield out;
        }
      })(),
    });
    this.#stats.snapshots++;
    this.#log.info({ rv, records: n }, 'snapshot written');
  }

  /** snapshot (or store.json) then every journal segment, into the mock; then a segment to append to */
  async #recover(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    let files = await readdir(dir);
    let segments = segmentsIn(dir, files);
    if (!files.includes(SNAPSHOT) && !segments.length && files.includes(LEGACY)) {
      await this.#migrate(dir);
      files = await readdir(dir);
      segments = segmentsIn(dir, files);
    } else if (files.includes(LEGACY)) {
      this.#log.warn({ file: join(dir, LEGACY) }, 'ignoring the old store.json: the journal and snapshot are newer');
    }
    const snap = await readSnapshot(dir);
    const space: Keyspace = snap?.records ?? new Map();
    let rv = snap?.rv ?? 0;
    for (const r of space.values()) rv = Math.max(rv, r.rv);
    const snapRv = snap?.rv ?? 0;
    const lostAfter = snap ? `the snapshot of revision ${snap.rv}, taken ${snap.time}; later writes are lost` : 'there is no snapshot: the store starts empty';
    let tailRecords = 0;
    for (let i = 0; i < segments.length; i++) {
      const seg = segments[i];
      const last = i === segments.length - 1;
      // wholly older than the snapshot (its deletion was cut short by a crash)
      if (!last && segments[i + 1].start <= snapRv) continue;
      const buf = await readFile(seg.path);
      const scan = scanSegment(buf, 0);
      if (scan.corrupt || (scan.torn && !last)) {
        const at = scan.corrupt ?? { byte: scan.goodBytes, record: scan.records.length + 1, why: scan.torn };
        if (/newer kubeloop/.test(at.why ?? '')) {
          throw new Error(`${seg.path} cannot be read at byte ${at.byte} (record ${at.record}: ${at.why}); nothing was changed`);
        }
        throw new Error(
          `${seg.path} is corrupt at byte ${at.byte} (record ${at.record}: ${at.why}): restore it from a backup, or move it ` +
            `and the journal-*.log after it away to start from ${lostAfter}`,
        );
      }
      if (scan.torn) {
        this.#log.warn(
          { file: seg.path, bytes: buf.length - scan.goodBytes, at: scan.goodBytes, why: scan.torn },
          `dropping a torn journal tail of ${buf.length - scan.goodBytes} bytes (a write cut by a crash; it was never acknowledged)`,
        );
        await truncate(seg.path, scan.goodBytes);
      }
      tailRecords = scan.records.length;
      let n = 0;
      for (const rec of scan.records) {
        if (rec.rv <= snapRv) continue;
        if (rec.rv > rv) rv = rec.rv;
        for (const op of rec.ops) {
          const cur = space.get(op.key);
          if (cur && cur.rv >= rec.rv) continue;
          if (op.value === undefined) space.delete(op.key);
          else space.set(op.key, { rv: rec.rv, value: op.value });
        }
        if (++n % 5000 === 0) await nextTurn();
      }
    }
    let flat: string[] = [];
    for (const [k, r] of space) {
      flat.push(k, `${r.rv} ${r.value}`);
      this.#index.set(k, r.rv);
      if (flat.length >= 2 * CHUNK) {
        await this.#mock.mset(...flat);
        flat = [];
        await nextTurn();
      }
    }
    if (flat.length) await this.#mock.mset(...flat);
    const size = space.size;
    space.clear();
    this.#rv = this.#durableRv = rv;
    const tail = segments.at(-1);
    const segment = tail ?? { name: segmentName(rv), path: join(dir, segmentName(rv)), start: rv };
    const fh = await open(segment.path, 'a', 0o600);
    if (!tail && this.#fsync) await fsyncDir(dir).catch(async (e: unknown) => {
      await fh.close();
      throw e;
    });
    // a long tail segment is snapshotted after the first batch rather than after snapshotEvery more
    this.#journal = { fh, segment, records: tail ? tailRecords : 0, bytes: (await fh.stat()).size };
    this.#log.info({ dir, rv, records: size, segments: segments.length, snapshot: snap?.rv }, 'store replayed');
  }

  async #migrate(dir: string): Promise<void> {
    const file = join(dir, LEGACY);
    const { rv, records } = await readLegacy(file);
    const entries = [...records].map(([k, r]): [string, number, string] => [k, r.rv, r.value]);
    await writeSnapshot({
      dir,
      rv,
      fsync: this.#fsync,
      chunks: (async function* () {
        for (let i = 0; i < entries.length; i += CHUNK) yield entries.slice(i, i + CHUNK);
      })(),
    });
    await markMigrated(dir);
    if (this.#fsync) await fsyncDir(dir);
    this.#log.info({ file, rv, records: records.size }, `imported ${file} into the journaled store; it is kept as ${LEGACY}.migrated`);
  }
}

/**
 * ioredis-mock answers in a microtask, so awaiting it never lets timers and sockets run: loops
 * over many chunks step through the event loop with this.
 */
const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

function decode(key: string, stored: string | null): StoredRecord | undefined {
  if (stored === null) return undefined;
  const sp = stored.indexOf(' ');
  return { key, rv: Number(stored.slice(0, sp)), value: stored.slice(sp + 1) };
}

const closedError = (): ApiError => new ApiError('ServiceUnavailable', 'the store is closed (kubeloop is shutting down)');
