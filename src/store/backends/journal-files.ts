import { createReadStream } from 'node:fs';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { recordKey } from '../storage.js';
import { crc32 } from './journal-crc.js';

/**
 * The files of the embedded backend's state dir:
 *
 *   snapshot.json        the keyspace at (or, fuzzily, after) revision `rv`: NDJSON, a header
 *                        line, one `[key, rv, value]` line per record, a trailer with the
 *                        record count and the CRC-32 of every byte before it
 *   journal-<N>.log      a segment: the records of revisions > N, in order (journal-format.ts)
 *   store.json           the pre-journal format, imported once, then renamed *.migrated
 */
export const SNAPSHOT = 'snapshot.json';
export const LEGACY = 'store.json';
const SNAPSHOT_PREFIX = 'kubeloop-snapshot/';
const SNAPSHOT_FORMAT = `${SNAPSHOT_PREFIX}1`;

export interface Segment {
  name: string;
  path: string;
  /** holds revisions > start */
  start: number;
}

export type Keyspace = Map<string, { rv: number; value: string }>;

export const segmentName = (start: number): string => `journal-${start}.log`;

/** the journal segments among `files`, oldest first */
export function segmentsIn(dir: string, files: readonly string[]): Segment[] {
  const out: Segment[] = [];
  for (const name of files) {
    const m = /^journal-(\d+)\.log$/.exec(name);
    if (m) out.push({ name, path: join(dir, name), start: Number(m[1]) });
  }
  return out.sort((a, b) => a.start - b.start);
}

/** makes a create, rename or unlink in `dir` durable */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

const errno = (e: unknown): string | undefined => (e as NodeJS.ErrnoException).code;

export async function unlinkIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (e) {
    if (errno(e) !== 'ENOENT') throw e;
  }
}

export interface SnapshotWrite {
  dir: string;
  rv: number;
  /** the records, a chunk at a time; the writer awaits each write, so the loop is never held long */
  chunks: AsyncIterable<Array<[key: string, rv: number, value: string]>>;
  fsync: boolean;
}

/**
 * Writes `snapshot.json` atomically: a 0600 temp file written chunk by chunk, fsynced,
 * renamed over the old one, and the dir fsynced. Returns how many records it holds.
 */
export async function writeSnapshot(o: SnapshotWrite): Promise<number> {
  const final = join(o.dir, SNAPSHOT);
  const tmp = `${final}.tmp`;
  await unlinkIfPresent(tmp);
  const fh = await open(tmp, 'wx', 0o600);
  let records = 0;
  let crc = 0;
  const put = async (text: string): Promise<void> => {
    const b = Buffer.from(text);
    crc = crc32(b, crc);
    await fh.write(b);
  };
  try {
    await put(`${JSON.stringify({ format: SNAPSHOT_FORMAT, rv: o.rv, time: new Date().toISOString() })}\n`);
    for await (const chunk of o.chunks) {
      if (!chunk.length) continue;
      let text = '';
      for (const r of chunk) text += `${JSON.stringify(r)}\n`;
      records += chunk.length;
      await put(text);
    }
    await fh.write(`${JSON.stringify({ end: true, records, crc })}\n`);
    if (o.fsync) await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlinkIfPresent(tmp).catch(() => undefined);
    throw e;
  }
  await fh.close();
  await rename(tmp, final);
  if (o.fsync) await fsyncDir(o.dir);
  return records;
}

export interface SnapshotRead {
  rv: number;
  time: string;
  records: Keyspace;
}

/** `snapshot.json`, or undefined when there is none; an unreadable one throws what to do. */
export async function readSnapshot(dir: string): Promise<SnapshotRead | undefined> {
  const file = join(dir, SNAPSHOT);
  const fail = (why: string): Error =>
    new Error(
      `${file} is unreadable (${why}): restore it from a backup; moving it away starts the store from the journal segments ` +
        'alone, which loses every object last written before the oldest of them',
    );
  let stream;
  try {
    stream = createReadStream(file);
    await new Promise<void>((resolve, reject) => stream!.once('open', () => resolve()).once('error', reject));
  } catch (e) {
    stream?.destroy();
    if (errno(e) === 'ENOENT') return undefined;
    throw fail((e as Error).message);
  }
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  const records: Keyspace = new Map();
  let header: { format?: unknown; rv?: unknown; time?: unknown } | undefined;
  let trailer: { end?: unknown; records?: unknown; crc?: unknown } | undefined;
  let crc = 0;
  let n = 0;
  try {
    for await (const line of lines) {
      n++;
      if (trailer) throw fail(`line ${n} follows the end marker`);
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        throw fail(`line ${n} is not JSON`);
      }
      if (!header) {
        const h = v as { format?: unknown; rv?: unknown; time?: unknown } | null;
        const format = h !== null && typeof h === 'object' ? h.format : undefined;
        if (typeof format === 'string' && format !== SNAPSHOT_FORMAT && format.startsWith(SNAPSHOT_PREFIX)) {
          // not damage: a format this version does not know (a newer kubeloop wrote it)
          throw new Error(
            `${file} is in format ${JSON.stringify(format)}, which this kubeloop cannot read (it reads ${SNAPSHOT_FORMAT}): ` +
              'it was written by a newer kubeloop; run that one (nothing was changed)',
          );
        }
        if (format !== SNAPSHOT_FORMAT || typeof h?.rv !== 'number') throw fail('no snapshot header on line 1');
        header = h;
      } else if (Array.isArray(v)) {
        const [k, rv, value] = v as unknown[];
        if (typeof k !== 'string' || typeof rv !== 'number' || typeof value !== 'string') throw fail(`line ${n} is not a record`);
        records.set(k, { rv, value });
      } else {
        const t = v as { end?: unknown; records?: unknown; crc?: unknown } | null;
        if (t?.end !== true) throw fail(`line ${n} is not a record`);
        trailer = t;
        continue;
      }
      crc = crc32(Buffer.from(`${line}\n`), crc);
    }
  } finally {
    lines.close();
    stream.destroy();
  }
  if (!header) throw fail('the file is empty');
  if (!trailer) throw fail('the end marker is missing: the file was cut short');
  if (trailer.records !== records.size) throw fail(`the end marker counts ${String(trailer.records)} records, the file has ${records.size}`);
  if (trailer.crc !== crc) throw fail('checksum mismatch');
  return { rv: header.rv as number, time: String(header.time), records };
}

/**
 * The pre-journal `store.json`: `{ rv, objects: { "Kind/ns/name" | "Kind/name": "<object JSON>" } }`,
 * as records (the object's `metadata.resourceVersion` becomes the record's rv and leaves the value).
 */
export async function readLegacy(file: string): Promise<{ rv: number; records: Keyspace }> {
  const fail = (why: string): Error =>
    new Error(`${file} cannot be imported (${why}): fix or restore it, or move it away to start with an empty store`);
  let doc: { rv?: unknown; objects?: unknown };
  try {
    doc = JSON.parse(await readFile(file, 'utf8')) as typeof doc;
  } catch (e) {
    throw fail(e instanceof SyntaxError ? 'invalid JSON' : (e as Error).message);
  }
  if (!doc || typeof doc !== 'object' || !doc.objects || typeof doc.objects !== 'object') throw fail('no "objects" map');
  let rv = typeof doc.rv === 'number' && Number.isSafeInteger(doc.rv) && doc.rv > 0 ? doc.rv : 0;
  const records: Keyspace = new Map();
  for (const [k, text] of Object.entries(doc.objects as Record<string, unknown>)) {
    const parts = k.split('/');
    if ((parts.length !== 2 && parts.length !== 3) || parts.some((p) => !p) || typeof text !== 'string') {
      throw fail(`entry "${k}" is not "Kind/namespace/name" or "Kind/name" with an object JSON string`);
    }
    let obj: { metadata?: { resourceVersion?: unknown } };
    try {
      obj = JSON.parse(text) as typeof obj;
    } catch {
      throw fail(`entry "${k}" is not JSON`);
    }
    const objRv = Number(obj?.metadata?.resourceVersion);
    if (!Number.isSafeInteger(objRv) || objRv <= 0) throw fail(`entry "${k}" has no numeric metadata.resourceVersion`);
    delete obj.metadata!.resourceVersion;
    const key = parts.length === 3 ? recordKey(parts[0], parts[1], parts[2]) : recordKey(parts[0], undefined, parts[1]);
    records.set(key, { rv: objRv, value: JSON.stringify(obj) });
    if (objRv > rv) rv = objRv;
  }
  return { rv, records };
}

export async function markMigrated(dir: string): Promise<void> {
  await rename(join(dir, LEGACY), join(dir, `${LEGACY}.migrated`));
}
