import { crc32 } from './journal-crc.js';

/**
 * One journal record = one committed transaction, framed so that a torn write is told apart
 * from corruption:
 *
 *   ┌────────────┬────────────┬──────────────────────────────────────────────────────────┐
 *   │ len  u32LE │ crc  u32LE │ payload (len bytes)                                      │
 *   └────────────┴────────────┴──────────────────────────────────────────────────────────┘
 *   payload: version u8 (=1) │ rv u48LE │ nops u32LE │ nops × op
 *   op:      1 (put) │ klen u32LE │ key │ vlen u32LE │ value      — or —   2 (delete) │ klen │ key
 *
 * `crc` is CRC-32 of the payload. Keys and values are UTF-8.
 */
export interface JournalOp {
  key: string;
  /** undefined: delete */
  value?: string;
}

export interface JournalRecord {
  rv: number;
  ops: JournalOp[];
}

const VERSION = 1;
const HEADER = 8;
/** version + rv + nops */
const MIN_PAYLOAD = 1 + 6 + 4;
/** no single transaction is this big (commits over it are refused); a larger length is damage */
const MAX_PAYLOAD = 256 * 1024 * 1024;
/** the largest whole record, header included */
export const MAX_RECORD = HEADER + MAX_PAYLOAD;
const PUT = 1;
const DEL = 2;

export function encodeRecord(r: JournalRecord): Buffer {
  let size = MIN_PAYLOAD;
  for (const op of r.ops) {
    size += 1 + 4 + Buffer.byteLength(op.key);
    if (op.value !== undefined) size += 4 + Buffer.byteLength(op.value);
  }
  const buf = Buffer.allocUnsafe(HEADER + size);
  let o = HEADER;
  o = buf.writeUInt8(VERSION, o);
  o = buf.writeUIntLE(r.rv, o, 6);
  o = buf.writeUInt32LE(r.ops.length, o);
  for (const op of r.ops) {
    o = buf.writeUInt8(op.value === undefined ? DEL : PUT, o);
    const kl = buf.write(op.key, o + 4);
    buf.writeUInt32LE(kl, o);
    o += 4 + kl;
    if (op.value !== undefined) {
      const vl = buf.write(op.value, o + 4);
      buf.writeUInt32LE(vl, o);
      o += 4 + vl;
    }
  }
  buf.writeUInt32LE(size, 0);
  buf.writeUInt32LE(crc32(buf, 0, HEADER, HEADER + size), 4);
  return buf;
}

/** The record at `o`, or why there is none (torn, damaged, or out of order). */
function recordAt(buf: Buffer, o: number, afterRv: number): { rec: JournalRecord; next: number } | string {
  if (buf.length - o < HEADER) return `only ${buf.length - o} bytes left, a header takes ${HEADER}`;
  const len = buf.readUInt32LE(o);
  if (len < MIN_PAYLOAD || len > MAX_PAYLOAD) return `impossible record length ${len}`;
  const end = o + HEADER + len;
  if (end > buf.length) return `record length ${len} runs past the end of the file`;
  const version = buf[o + HEADER];
  if (version !== VERSION) {
    return version > VERSION
      ? `record version ${version} is newer than this kubeloop's (${VERSION}): it was written by a newer kubeloop; run that one`
      : `unknown record version ${version}`;
  }
  const rv = buf.readUIntLE(o + HEADER + 1, 6);
  if (rv <= afterRv) return `revision ${rv} does not follow ${afterRv}`;
  if (crc32(buf, 0, o + HEADER, end) !== buf.readUInt32LE(o + 4)) return 'checksum mismatch';
  const ops: JournalOp[] = [];
  let p = o + HEADER + MIN_PAYLOAD;
  const n = buf.readUInt32LE(o + HEADER + 7);
  for (let i = 0; i < n; i++) {
    if (p + 5 > end) return 'op list runs past the record';
    const kind = buf[p];
    const kl = buf.readUInt32LE(p + 1);
    p += 5;
    if ((kind !== PUT && kind !== DEL) || p + kl > end) return 'malformed op';
    const key = buf.toString('utf8', p, p + kl);
    p += kl;
    if (kind === DEL) {
      ops.push({ key });
      continue;
    }
    if (p + 4 > end) return 'malformed op';
    const vl = buf.readUInt32LE(p);
    p += 4;
    if (p + vl > end) return 'malformed op';
    ops.push({ key, value: buf.toString('utf8', p, p + vl) });
    p += vl;
  }
  if (p !== end) return 'trailing bytes in the record';
  return { rec: { rv, ops }, next: end };
}

export interface ScanResult {
  records: JournalRecord[];
  /** bytes up to the end of the last whole record */
  goodBytes: number;
  /** set when the bytes after `goodBytes` are a torn tail (no whole record follows them) */
  torn?: string;
  /** set when a damaged record is followed by whole ones: not a crash, damage */
  corrupt?: { byte: number; record: number; why: string };
}

/**
 * Every whole record of a segment whose revisions are above `afterRv` and increasing. The
 * first bad one ends the scan: it is a torn tail of a write cut by a crash only when no whole
 * record follows it and the bytes left could be such a write (`tornPrefix`); else corruption.
 */
export function scanSegment(buf: Buffer, afterRv: number): ScanResult {
  const records: JournalRecord[] = [];
  let o = 0;
  let last = afterRv;
  while (o < buf.length) {
    const r = recordAt(buf, o, last);
    if (typeof r === 'string') {
      const later = findRecordAfter(buf, o + 1, last);
      if (later !== undefined || !tornPrefix(buf, o)) return { records, goodBytes: o, corrupt: { byte: o, record: records.length + 1, why: r } };
      return { records, goodBytes: o, torn: r };
    }
    records.push(r.rec);
    last = r.rec.rv;
    o = r.next;
  }
  return { records, goodBytes: o };
}

/**
 * Can the bytes from `o` to the end be what a crash leaves of one append: a prefix of a
 * record (the write stopped part way), or zeros (the size grew, the data never landed)?
 * Anything else there (random bytes, a record of another format version, a whole record that
 * fails its checksum followed by more bytes) is damage, and dropping it would silently lose
 * data, so it is not taken for a torn tail.
 */
function tornPrefix(buf: Buffer, o: number): boolean {
  let zeros = true;
  for (let p = o; p < buf.length && zeros; p++) zeros = buf[p] === 0;
  if (zeros) return true;
  const left = buf.length - o;
  if (left < HEADER) return true;
  const len = buf.readUInt32LE(o);
  if (len < MIN_PAYLOAD || len > MAX_PAYLOAD) return false;
  const end = o + HEADER + len;
  // the version byte, where it was written, is ours; a zero there is unwritten data
  if (left > HEADER && buf[o + HEADER] !== VERSION && buf[o + HEADER] !== 0) return false;
  if (end > buf.length) return true;
  // a whole record that fails its checks: torn only as the very last write (zeros may follow)
  for (let p = end; p < buf.length; p++) if (buf[p] !== 0) return false;
  return true;
}

/** the offset of the first whole, well-ordered record at or after `from`, if any */
function findRecordAfter(buf: Buffer, from: number, afterRv: number): number | undefined {
  for (let p = from; p + HEADER + MIN_PAYLOAD <= buf.length; p++) {
    // cheap filters first: a plausible version byte and revision before the checksum
    if (buf[p + HEADER] !== VERSION) continue;
    const len = buf.readUInt32LE(p);
    if (len < MIN_PAYLOAD || p + HEADER + len > buf.length) continue;
    const rv = buf.readUIntLE(p + HEADER + 1, 6);
    if (rv <= afterRv || rv > afterRv + 1e12) continue;
    if (typeof recordAt(buf, p, afterRv) !== 'string') return p;
  }
  return undefined;
}
