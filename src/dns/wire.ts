/**
 * The DNS wire format, just as much as kubeloop needs, written for speed: a strict parser for
 * plain queries (one question, optional OPT), an encoder with name compression for answers,
 * and a decoder for the answer records of an upstream reply. dns2's general (and much slower,
 * bit-level) codec remains the fallback for every packet the strict parser declines.
 *
 * Message layout reminders (RFC 1035 §4.1): 12-byte header — ID, flags (QR opcode AA TC RD |
 * RA Z AD CD rcode), QD/AN/NS/AR counts — then question (name, type, class), then records.
 */
import { TYPE } from './records.js';
import type { Answer, RR } from './records.js';
import { ipBytes } from './ip.js';

export const HEADER = 12;
/** The UDP payload size we advertise in our OPT (the DNS-flag-day value). */
export const OUR_UDP_SIZE = 1232;
/** Upper bound for UDP answers whatever the client advertises. */
export const MAX_UDP_SIZE = 4096;
export const OPT_LEN = 11;

export interface Edns {
  /** requestor's UDP payload size */
  size: number;
  version: number;
  do: boolean;
}

/** A query, however it was decoded. */
export interface Query {
  id: number;
  opcode: number;
  rd: boolean;
  cd: boolean;
  /** the question name exactly as on the wire, case included, terminating zero included */
  qname: Buffer;
  qtype: number;
  qclass: number;
  edns?: Edns;
}

/** parseQuery's verdict for a packet that must get no answer at all (a response, or no header). */
export const DROP = 'drop';

/** scanQuery's verdicts */
export const SCAN_QUERY = 0;
export const SCAN_DROP = 1;
export const SCAN_OTHER = 2;

/**
 * What scanQuery found in the last packet it accepted (overwritten by the next call: nothing is
 * allocated per packet, so the UDP hot path can use it too).
 */
export const scanned = { qnameEnd: 0, qtype: 0, qclass: 0, edns: false, ednsSize: 0, ednsVersion: 0, dnssecOk: false };

/**
 * The strict checks of a query packet. SCAN_QUERY: a plain query (one question, uncompressed,
 * at most one OPT, nothing after it), its fields in `scanned`; SCAN_DROP: a packet never to be
 * answered (a response, or no header); SCAN_OTHER: anything else (several questions,
 * compression in the question, other records, opcode ≠ 0, trailing bytes), for the general
 * decoder to handle and, if need be, refuse.
 */
export function scanQuery(b: Buffer): number {
  const n = b.length;
  if (n < HEADER) return SCAN_DROP;
  if (b[2] & 0x80) return SCAN_DROP; // QR: a response; RFC 1035 says to ignore it
  if (b[2] & 0x78) return SCAN_OTHER; // opcode ≠ QUERY
  if (b[4] !== 0 || b[5] !== 1 || b[6] || b[7] || b[8] || b[9] || b[10]) return SCAN_OTHER;
  const ar = b[11];
  if (ar > 1) return SCAN_OTHER;
  let p = HEADER;
  for (;;) {
    if (p >= n) return SCAN_OTHER;
    const l = b[p];
    if (l === 0) break;
    if (l > 63) return SCAN_OTHER;
    p += l + 1;
    if (p - HEADER > 254) return SCAN_OTHER;
  }
  p++;
  const qnameEnd = p;
  if (p + 4 > n) return SCAN_OTHER;
  const s = scanned;
  s.qnameEnd = qnameEnd;
  s.qtype = (b[p] << 8) | b[p + 1];
  s.qclass = (b[p + 2] << 8) | b[p + 3];
  p += 4;
  s.edns = ar === 1;
  if (s.edns) {
    if (p + OPT_LEN > n || b[p] !== 0 || b[p + 1] !== 0 || b[p + 2] !== TYPE.OPT) return SCAN_OTHER;
    s.ednsSize = (b[p + 3] << 8) | b[p + 4];
    s.ednsVersion = b[p + 6];
    s.dnssecOk = (b[p + 7] & 0x80) !== 0;
    const rdlen = (b[p + 9] << 8) | b[p + 10];
    p += OPT_LEN;
    const end = p + rdlen;
    if (end !== n) return SCAN_OTHER;
    while (p < end) {
      if (p + 4 > end) return SCAN_OTHER;
      p += 4 + ((b[p + 2] << 8) | b[p + 3]);
    }
    if (p !== end) return SCAN_OTHER;
  }
  return p === n ? SCAN_QUERY : SCAN_OTHER;
}

/**
 * The strict fast parser (scanQuery's checks). A plain query → Query; a packet never to be
 * answered → DROP; anything else → undefined, for the general decoder.
 */
export function parseQuery(b: Buffer): Query | typeof DROP | undefined {
  const verdict = scanQuery(b);
  if (verdict === SCAN_DROP) return DROP;
  if (verdict !== SCAN_QUERY) return undefined;
  const { qnameEnd, qtype, qclass } = scanned;
  const edns: Edns | undefined = scanned.edns ? { size: scanned.ednsSize, version: scanned.ednsVersion, do: scanned.dnssecOk } : undefined;
  return {
    id: (b[0] << 8) | b[1],
    opcode: 0,
    rd: (b[2] & 1) === 1,
    cd: (b[3] & 0x10) !== 0,
    qname: b.subarray(HEADER, qnameEnd),
    qtype,
    qclass,
    edns,
  };
}

/**
 * A wire name (uncompressed labels) as a lower-case dotted string without trailing dot.
 * ASCII letters are lowered; bytes other than `[a-z0-9_*-]` are written `\DDD`, so odd names
 * can never match a Kubernetes name and never split into extra labels.
 */
export function wireNameToString(w: Buffer): string {
  let out = '';
  let p = 0;
  while (p < w.length && w[p] !== 0) {
    const l = w[p++];
    if (out) out += '.';
    for (const end = p + l; p < end; p++) {
      const c = lowerByte(w[p]);
      if ((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f || c === 0x2a) {
        out += String.fromCharCode(c);
      } else {
        out += `\\${String(c).padStart(3, '0')}`;
      }
    }
  }
  return out;
}

/** A dotted name (no escapes) as wire labels; throws on an over-long label or name. */
export function nameToWire(name: string): Buffer {
  const w = new Writer(name.length + 2);
  w.rawName(name);
  return w.done();
}

/** ASCII-lower-case copy of a wire name. */
export function lowerWire(w: Buffer): Buffer {
  const out = Buffer.from(w);
  for (let i = 0; i < out.length; i++) out[i] = lowerByte(out[i]);
  return out;
}

/** a byte with ASCII A–Z lowered (DNS names compare case-insensitively in ASCII only) */
export function lowerByte(c: number): number {
  return c >= 0x41 && c <= 0x5a ? c + 0x20 : c;
}

class Writer {
  buf: Buffer;
  pos = 0;
  /** lower-case dotted suffix → offset, for compression */
  readonly names = new Map<string, number>();

  constructor(size = 512) {
    this.buf = Buffer.alloc(size);
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }
  u16(v: number): void {
    this.ensure(2);
    this.buf.writeUInt16BE(v & 0xffff, this.pos);
    this.pos += 2;
  }
  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32BE(v >>> 0, this.pos);
    this.pos += 4;
  }
  bytes(b: Buffer | number[]): void {
    this.ensure(b.length);
    if (Buffer.isBuffer(b)) b.copy(this.buf, this.pos);
    else for (let i = 0; i < b.length; i++) this.buf[this.pos + i] = b[i];
    this.pos += b.length;
  }

  /** labels without compression */
  rawName(name: string): void {
    let total = 1;
    if (name) {
      for (const label of name.split('.')) {
        const len = Buffer.byteLength(label, 'latin1');
        if (len === 0 || len > 63) throw new Error(`invalid DNS name "${name}": label of ${len} octets`);
        total += len + 1;
        this.u8(len);
        this.ensure(len);
        this.pos += this.buf.write(label, this.pos, 'latin1');
      }
    }
    if (total > 255) throw new Error(`invalid DNS name "${name}": ${total} octets (max 255)`);
    this.u8(0);
  }

  /**
   * A name, compressed against names written before (case-insensitive, as DNS is) unless
   * `compress` is false; either way its suffixes become targets for later names.
   */
  name(name: string, compress = true): void {
    if (name.length > 253) throw new Error(`invalid DNS name "${name}": longer than 253 characters`);
    let rest = name;
    while (rest) {
      const at = compress ? this.names.get(rest) : undefined;
      if (at !== undefined) {
        this.u16(0xc000 | at);
        return;
      }
      if (this.pos < 0x4000 && !this.names.has(rest)) this.names.set(rest, this.pos);
      const dot = rest.indexOf('.');
      const label = dot < 0 ? rest : rest.slice(0, dot);
      const len = Buffer.byteLength(label, 'latin1');
      if (len === 0 || len > 63) throw new Error(`invalid DNS name "${name}": label of ${len} octets`);
      this.u8(len);
      this.ensure(len);
      this.pos += this.buf.write(label, this.pos, 'latin1');
      rest = dot < 0 ? '' : rest.slice(dot + 1);
    }
    this.u8(0);
  }

  /** register the suffixes of a wire name already written at `offset` (the question) */
  remember(wire: Buffer, offset: number): void {
    const labels: string[] = [];
    const starts: number[] = [];
    for (let p = 0; p < wire.length && wire[p] !== 0; p += wire[p] + 1) {
      const label = wire.toString('latin1', p + 1, p + 1 + wire[p]).toLowerCase();
      if (label.includes('.')) return;
      labels.push(label);
      starts.push(p);
    }
    for (let i = 0; i < labels.length; i++) {
      const at = offset + starts[i];
      if (at < 0x4000) this.names.set(labels.slice(i).join('.'), at);
    }
  }

  rr(r: RR): void {
    this.name(r.name);
    this.u16(r.type);
    this.u16(1); // IN
    this.u32(r.ttl);
    const lenAt = this.pos;
    this.u16(0);
    const start = this.pos;
    switch (r.type) {
      case TYPE.A:
      case TYPE.AAAA: {
        const b = ipBytes(r.address);
        if (!b || b.length !== (r.type === TYPE.A ? 4 : 16)) throw new Error(`invalid address "${r.address}" for ${r.type === TYPE.A ? 'A' : 'AAAA'}`);
        this.bytes(b);
        break;
      }
      case TYPE.NS:
      case TYPE.CNAME:
      case TYPE.PTR:
        this.name(r.target);
        break;
      case TYPE.SRV:
        this.u16(r.priority);
        this.u16(r.weight);
        this.u16(r.port);
        this.name(r.target, false); // RFC 2782: no compression in the SRV target
        break;
      case TYPE.TXT:
        for (const t of r.texts) for (const chunk of txtChunks(t)) {
          this.u8(chunk.length);
          this.bytes(chunk);
        }
        break;
      case TYPE.SOA:
        this.name(r.mname);
        this.name(r.rname);
        this.u32(r.serial);
        this.u32(r.refresh);
        this.u32(r.retry);
        this.u32(r.expire);
        this.u32(r.minimum);
        break;
    }
    const len = this.pos - start;
    if (len > 0xffff) throw new Error('record data over 65535 octets');
    this.buf.writeUInt16BE(len, lenAt);
  }

  done(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

/**
 * A TXT string as ≤255-byte character-strings (RFC 1035 §3.3.14). dns2 writes the length
 * octet modulo 256 and corrupts longer strings; we split instead.
 */
export function txtChunks(text: string): Buffer[] {
  const b = Buffer.from(text, 'utf8');
  if (b.length === 0) return [b];
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i += 255) out.push(b.subarray(i, i + 255));
  return out;
}

export interface EncodeOptions {
  /** the question name as on the wire (echoed as is; answers point into it) */
  qname: Buffer;
  qtype: number;
  qclass: number;
  /** RA bit: recursion (forwarding) is available */
  ra?: boolean;
}

/**
 * Encode an answer with ID 0, RD/CD clear and no OPT: the form kept in the answer cache.
 * `patch` makes it the reply to one query. Throws when a record cannot be encoded.
 */
export function encodeAnswer(a: Answer, o: EncodeOptions): Buffer {
  const w = new Writer(512);
  w.u16(0);
  w.u8(0x80 | (a.authoritative ? 0x04 : 0));
  w.u8((o.ra ? 0x80 : 0) | (a.rcode & 0xf));
  w.u16(1);
  w.u16(a.answer.length);
  w.u16(a.authority.length);
  w.u16(a.additional.length);
  w.bytes(o.qname);
  w.remember(o.qname, HEADER);
  w.u16(o.qtype);
  w.u16(o.qclass);
  for (const r of a.answer) w.rr(r);
  for (const r of a.authority) w.rr(r);
  for (const r of a.additional) w.rr(r);
  return Buffer.from(w.done());
}

/** The largest reply a client can take: its EDNS size (512…4096), 512 without EDNS, 65535 over TCP. */
export function replyLimit(q: Pick<Query, 'edns'>, tcp: boolean): number {
  return tcp ? 0xffff : udpLimit(q.edns?.size);
}

/** The largest UDP reply for a client advertising `ednsSize` (undefined: no EDNS). */
export function udpLimit(ednsSize: number | undefined): number {
  return ednsSize === undefined ? 512 : Math.min(Math.max(ednsSize, 512), MAX_UDP_SIZE);
}

/**
 * Turn an encoded answer (ID 0, no OPT) into the reply to `q`: its ID, RD/CD bits, the
 * question in the query's own case (compressed owners point at it, so they echo that case
 * too), an OPT when the query had one, and TC with only the question when it does not fit.
 */
export function patch(encoded: Buffer, q: Query, limit: number, extendedRcode = 0): Buffer {
  const opt = q.edns ? OPT_LEN : 0;
  const qlen = q.qname.length;
  let out: Buffer;
  if (encoded.length + opt <= limit) {
    out = Buffer.allocUnsafe(encoded.length + opt);
    encoded.copy(out, 0);
  } else {
    // does not fit: header + question only, TC set (RFC 2181 §9), the client retries over TCP
    const keep = HEADER + qlen + 4;
    out = Buffer.allocUnsafe(keep + opt);
    encoded.copy(out, 0, 0, keep);
    out[2] |= 0x02;
    out.fill(0, 6, 12);
  }
  out[0] = q.id >> 8;
  out[1] = q.id & 0xff;
  if (q.rd) out[2] |= 0x01;
  if (q.cd) out[3] |= 0x10;
  q.qname.copy(out, HEADER);
  if (opt) {
    const p = out.length - OPT_LEN;
    out[p] = 0;
    out[p + 1] = 0;
    out[p + 2] = TYPE.OPT;
    out[p + 3] = OUR_UDP_SIZE >> 8;
    out[p + 4] = OUR_UDP_SIZE & 0xff;
    out[p + 5] = extendedRcode;
    out[p + 6] = 0; // version
    out[p + 7] = q.edns?.do ? 0x80 : 0; // DO is copied (RFC 3225 §3)
    out[p + 8] = 0;
    out[p + 9] = 0;
    out[p + 10] = 0;
    const ar = out.readUInt16BE(10) + 1;
    out.writeUInt16BE(ar, 10);
  }
  return out;
}

/**
 * A reply carrying only an rcode (FORMERR, NOTIMP, BADVERS …) for a query whose question may
 * be unknown. rcode > 15 goes into the OPT (it needs one).
 */
export function errorReply(q: { id: number; opcode: number; rd: boolean; cd?: boolean; qname?: Buffer; qtype?: number; qclass?: number; edns?: Edns }, rcode: number): Buffer {
  const hasQ = q.qname !== undefined;
  const w = new Writer(64);
  w.u16(0);
  w.u8(0x80 | ((q.opcode & 0xf) << 3));
  w.u8(rcode & 0xf);
  w.u16(hasQ ? 1 : 0);
  w.u16(0);
  w.u16(0);
  w.u16(0);
  if (hasQ) {
    w.bytes(q.qname!);
    w.u16(q.qtype ?? 0);
    w.u16(q.qclass ?? 1);
  }
  const base = Buffer.from(w.done());
  const query: Query = {
    id: q.id,
    opcode: q.opcode,
    rd: q.rd,
    cd: q.cd ?? false,
    qname: q.qname ?? Buffer.alloc(0),
    qtype: 0,
    qclass: 0,
    edns: q.edns,
  };
  return patch(base, query, 0xffff, rcode >> 4);
}

/** A query for an upstream resolver (RD set, our EDNS size). */
export function buildQuery(o: { id: number; qname: Buffer; qtype: number; qclass: number; rd?: boolean; cd?: boolean; edns?: Edns }): Buffer {
  const w = new Writer(o.qname.length + 32);
  w.u16(o.id);
  w.u8(o.rd === false ? 0 : 0x01);
  w.u8(o.cd ? 0x10 : 0);
  w.u16(1);
  w.u16(0);
  w.u16(0);
  w.u16(o.edns ? 1 : 0);
  w.bytes(o.qname);
  w.u16(o.qtype);
  w.u16(o.qclass);
  if (o.edns) {
    w.u8(0);
    w.u16(TYPE.OPT);
    w.u16(o.edns.size);
    w.u8(0);
    w.u8(0);
    w.u8(o.edns.do ? 0x80 : 0);
    w.u8(0);
    w.u16(0);
  }
  return Buffer.from(w.done());
}

/** A possibly compressed name at `off`; the name and where the record continues. Throws on malformed input. */
export function readName(b: Buffer, off: number): { name: string; next: number } {
  const labels: string[] = [];
  let p = off;
  let next = -1;
  let jumps = 0;
  let total = 1;
  for (;;) {
    if (p >= b.length) throw new Error('name runs past the end of the message');
    const l = b[p];
    if (l === 0) {
      p++;
      break;
    }
    if ((l & 0xc0) === 0xc0) {
      if (p + 1 >= b.length) throw new Error('truncated compression pointer');
      if (++jumps > 64) throw new Error('compression pointer loop');
      if (next < 0) next = p + 2;
      p = ((l & 0x3f) << 8) | b[p + 1];
      continue;
    }
    if (l > 63) throw new Error('reserved label type');
    if (p + 1 + l > b.length) throw new Error('label runs past the end of the message');
    total += l + 1;
    if (total > 255) throw new Error('name longer than 255 octets');
    labels.push(wireNameToString(b.subarray(p, p + 1 + l)));
    p += l + 1;
  }
  return { name: labels.join('.'), next: next < 0 ? p : next };
}

export interface ParsedReply {
  id: number;
  rcode: number;
  tc: boolean;
  /** answer records of the types we re-encode (A, AAAA, CNAME, PTR, NS); others are skipped */
  answers: RR[];
}

/** Decode an upstream reply's header and answer section. Throws on malformed input. */
export function parseReply(b: Buffer): ParsedReply {
  if (b.length < HEADER) throw new Error('reply shorter than a header');
  const qd = b.readUInt16BE(4);
  const an = b.readUInt16BE(6);
  let p = HEADER;
  for (let i = 0; i < qd; i++) p = readName(b, p).next + 4;
  const answers: RR[] = [];
  for (let i = 0; i < an; i++) {
    const { name, next } = readName(b, p);
    p = next;
    if (p + 10 > b.length) throw new Error('record header runs past the end');
    const type = b.readUInt16BE(p);
    const ttl = Math.min(b.readUInt32BE(p + 4), 0x7fffffff);
    const len = b.readUInt16BE(p + 8);
    const rd = p + 10;
    if (rd + len > b.length) throw new Error('record data runs past the end');
    if (type === TYPE.A && len === 4) {
      answers.push({ name, type, ttl, address: [...b.subarray(rd, rd + 4)].join('.') });
    } else if (type === TYPE.AAAA && len === 16) {
      const groups: string[] = [];
      for (let j = 0; j < 16; j += 2) groups.push(b.readUInt16BE(rd + j).toString(16));
      answers.push({ name, type, ttl, address: groups.join(':') });
    } else if (type === TYPE.CNAME || type === TYPE.PTR || type === TYPE.NS) {
      answers.push({ name, type, ttl, target: readName(b, rd).name });
    }
    p = rd + len;
  }
  return { id: b.readUInt16BE(0), rcode: b[3] & 0xf, tc: (b[2] & 0x02) !== 0, answers };
}
