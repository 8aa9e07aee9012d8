/**
 * Encoded answers keyed by their question (name with ASCII case folded, type, class), read
 * straight from a query packet. `reply()` is the UDP hot path: it checks a plain query with
 * wire.ts's `scanQuery` (no allocation), hashes its question, and patches a reply buffer the
 * entry owns in place (ID, RD/CD,
 * the question's own case, an OPT when asked), so a hit allocates nothing: no Query object, no
 * key string, no reply buffer. Whatever it does not handle (no entry, odd header, EDNS version
 * > 0, a reply that needs truncating) it leaves to the general path, which answers the same bytes
 * (`patch()` in wire.ts).
 */
import { randomInt } from 'node:crypto';
import { HEADER, MAX_UDP_SIZE, OPT_LEN, SCAN_QUERY, lowerByte, lowerWire, patch, scanQuery, scanned, udpLimit } from './wire.js';
import type { Query } from './wire.js';

/**
 * FNV-1a from a per-process random start. That alone does not stop a flood of colliding names
 * (FNV collisions found for one start often hold for another: a test saw 9+ of 16 still share
 * a bucket now and then), so a bucket holds at most MAX_CHAIN questions and more go to the
 * general path: colliding names cannot make lookups slow.
 */
const FNV_START = (0x811c9dc5 ^ randomInt(0x7fffffff)) >>> 0;
const FNV_PRIME = 16777619;
const MAX_CHAIN = 8;

interface Entry {
  /** the question name, wire form, lower case */
  readonly name: Buffer;
  readonly qtype: number;
  readonly qclass: number;
  /** the encoded answer (ID 0, no OPT), as `Responder` made it */
  readonly encoded: Buffer;
  /** reply buffers patched in place per query; replaced by a copy while the kernel holds one */
  plain: Buffer | undefined;
  withOpt: Buffer | undefined;
  next: Entry | undefined;
}

/**
 * Sends a reply; returns true when the buffer is still in use afterwards (the send is pending),
 * so the cache must not patch it again.
 */
export type SendReply = (reply: Buffer) => boolean;

export class AnswerCache {
  readonly #limit: number;
  readonly #byteLimit: number;
  readonly #map = new Map<number, Entry>();
  #size = 0;
  /** bytes of the encoded answers, their names and their reply copies */
  #bytes = 0;
  /** the hash's start (random per process; fixed only by tests that need colliding names) */
  readonly #start: number;

  /**
   * `limit`: entries kept before the cache is emptied (a flood of random names cannot grow it);
   * `byteLimit`: the same for the bytes they hold (reply copies included).
   */
  constructor(limit: number, byteLimit = 32 << 20, hashStart = FNV_START) {
    this.#limit = limit;
    this.#byteLimit = byteLimit;
    this.#start = hashStart >>> 0;
  }

  get size(): number {
    return this.#size;
  }

  clear(): void {
    this.#map.clear();
    this.#size = 0;
    this.#bytes = 0;
  }

  /** The encoded answer for a question (`qname` in wire form, any case). */
  get(qname: Buffer, qtype: number, qclass: number): Buffer | undefined {
    return this.#find(qname, 0, qname.length, hashQuestion(this.#start, qname, 0, qname.length, qtype, qclass), qtype, qclass)?.encoded;
  }

  set(qname: Buffer, qtype: number, qclass: number, encoded: Buffer): void {
    const h = hashQuestion(this.#start, qname, 0, qname.length, qtype, qclass);
    if (this.#find(qname, 0, qname.length, h, qtype, qclass)) return;
    const bytes = encoded.length + qname.length;
    if (this.#size >= this.#limit || this.#bytes + bytes > this.#byteLimit) this.clear();
    let chain = 0;
    for (let e = this.#map.get(h); e; e = e.next) chain++;
    if (chain >= MAX_CHAIN) return;
    this.#map.set(h, { name: lowerWire(qname), qtype, qclass, encoded, plain: undefined, withOpt: undefined, next: this.#map.get(h) });
    this.#size++;
    this.#bytes += bytes;
  }

  /**
   * Answer a plain query (`q`, one datagram) from the cache: true when it was answered (`send`
   * got the reply), false when the caller must take the general path.
   */
  reply(q: Buffer, send: SendReply): boolean {
    // wire.ts's checks of a plain query; EDNS version > 0 (BADVERS) is the general path's
    if (scanQuery(q) !== SCAN_QUERY || (scanned.edns && scanned.ednsVersion !== 0)) return false;
    const { qnameEnd, qtype, qclass } = scanned;
    const opt = scanned.edns;
    const limit = udpLimit(opt ? scanned.ednsSize : undefined);
    const e = this.#find(q, HEADER, qnameEnd, hashQuestion(this.#start, q, HEADER, qnameEnd, qtype, qclass), qtype, qclass);
    if (!e) return false;
    const len = e.encoded.length + (opt ? OPT_LEN : 0);
    if (len > limit) return false;
    let out = opt ? e.withOpt : e.plain;
    if (out === undefined) {
      // a reply copy of its own, once (and again after a pending send), within the byte budget
      if (this.#bytes + len > this.#byteLimit) return false;
      this.#bytes += len;
      out = replyCopy(e, opt);
      if (opt) e.withOpt = out;
      else e.plain = out;
    }
    out[0] = q[0];
    out[1] = q[1];
    out[2] = e.encoded[2] | (q[2] & 0x01);
    out[3] = e.encoded[3] | (q[3] & 0x10);
    for (let i = HEADER; i < qnameEnd; i++) out[i] = q[i];
    if (opt) out[out.length - 4] = scanned.dnssecOk ? 0x80 : 0;
    if (send(out)) {
      // the kernel still has it: patch a new copy next time (this one is no longer the cache's)
      if (opt) e.withOpt = undefined;
      else e.plain = undefined;
      this.#bytes -= out.length;
    }
    return true;
  }

  #find(b: Buffer, start: number, end: number, h: number, qtype: number, qclass: number): Entry | undefined {
    const len = end - start;
    for (let e = this.#map.get(h); e; e = e.next) {
      if (e.qtype !== qtype || e.qclass !== qclass || e.name.length !== len) continue;
      const name = e.name;
      let i = 0;
      while (i < len && lowerByte(b[start + i]) === name[i]) i++;
      if (i === len) return e;
    }
    return undefined;
  }
}

/** kept within V8's small integers (a larger Map key would be a heap number per lookup) */
function hashQuestion(h: number, b: Buffer, start: number, end: number, qtype: number, qclass: number): number {
  for (let i = start; i < end; i++) h = Math.imul(h ^ lowerByte(b[i]), FNV_PRIME);
  return Math.imul(Math.imul(h ^ qtype, FNV_PRIME) ^ qclass, FNV_PRIME) & 0x3fffffff;
}

/**
 * An entry's reply buffer: its encoded answer as `patch()` makes it for a query without EDNS or
 * with one (our OPT appended, ARCOUNT + 1); the per-query bytes are patched over it in `reply`.
 */
function replyCopy(e: Entry, opt: boolean): Buffer {
  const q: Query = { id: 0, opcode: 0, rd: false, cd: false, qname: e.name, qtype: e.qtype, qclass: e.qclass };
  if (opt) q.edns = { size: MAX_UDP_SIZE, version: 0, do: false };
  return patch(e.encoded, q, 0xffff);
}
