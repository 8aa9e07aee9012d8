/**
 * UDP datagrams on a tunnel stream, framed as in HTTP Datagrams over a byte stream (RFC 9297
 * capsules, as CONNECT-UDP over HTTP/2 uses them, RFC 9298): each datagram is a DATAGRAM capsule
 * — type 0x00 (varint), length (varint), then the HTTP Datagram payload, which for CONNECT-UDP is
 * a context ID (varint, 0 for plain UDP payload) followed by the UDP payload. Varints are QUIC's
 * (RFC 9000 §16): the two top bits of the first byte give the length (1, 2, 4 or 8 bytes).
 * Capsules of other types are skipped, as the RFC asks; a capsule longer than `MAX_CAPSULE` is a
 * protocol error (the stream is dropped, nothing is buffered without bound).
 */

/** the largest UDP payload over IPv4 (65,535 − 8 − 20), plus a varint context ID */
export const MAX_UDP_PAYLOAD = 65_507;
export const MAX_CAPSULE = MAX_UDP_PAYLOAD + 8;
const DATAGRAM = 0;

function varintSize(n: number): number {
  return n < 64 ? 1 : n < 16_384 ? 2 : n < 1_073_741_824 ? 4 : 8;
}

function writeVarint(buf: Buffer, at: number, n: number): number {
  const size = varintSize(n);
  if (size === 1) buf[at] = n;
  else if (size === 2) buf.writeUInt16BE(0x4000 | n, at);
  else if (size === 4) buf.writeUInt32BE((0x80000000 | n) >>> 0, at);
  else throw new RangeError('varint too large for a datagram');
  return at + size;
}

/** the varint at `at`: [value, next offset], or undefined when `buf` ends before it does */
function readVarint(buf: Buffer, at: number): [number, number] | undefined {
  if (at >= buf.length) return undefined;
  const size = 1 << (buf[at] >> 6);
  if (at + size > buf.length) return undefined;
  if (size === 1) return [buf[at] & 0x3f, at + 1];
  if (size === 2) return [buf.readUInt16BE(at) & 0x3fff, at + 2];
  if (size === 4) return [buf.readUInt32BE(at) & 0x3fffffff, at + 4];
  const hi = buf.readUInt32BE(at) & 0x3fffffff;
  const v = hi * 2 ** 32 + buf.readUInt32BE(at + 4);
  return [v, at + 8];
}

/** one UDP payload as a DATAGRAM capsule with context ID 0 */
export function encodeDatagram(payload: Buffer): Buffer {
  if (payload.length > MAX_UDP_PAYLOAD) throw new RangeError(`a UDP payload of ${payload.length} bytes is over ${MAX_UDP_PAYLOAD}`);
  const len = payload.length + 1;
  const out = Buffer.allocUnsafe(1 + varintSize(len) + len);
  let at = writeVarint(out, 0, DATAGRAM);
  at = writeVarint(out, at, len);
  out[at++] = 0; // context ID 0
  payload.copy(out, at);
  return out;
}

/**
 * Reassembles capsules from stream chunks and hands each UDP payload (context 0) to
 * `onDatagram`. `push` returns false on a protocol error (oversized capsule): drop the stream.
 */
export class CapsuleParser {
  #buf: Buffer = Buffer.alloc(0);
  readonly #onDatagram: (payload: Buffer) => void;

  constructor(onDatagram: (payload: Buffer) => void) {
    this.#onDatagram = onDatagram;
  }

  push(chunk: Buffer): boolean {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
    let at = 0;
    for (;;) {
      const type = readVarint(this.#buf, at);
      if (!type) break;
      const len = readVarint(this.#buf, type[1]);
      if (!len) break;
      if (len[0] > MAX_CAPSULE) return false;
      const end = len[1] + len[0];
      if (end > this.#buf.length) break;
      if (type[0] === DATAGRAM) {
        const ctx = readVarint(this.#buf, len[1]);
        // a context other than 0 is an extension we do not speak: skipped, as RFC 9298 says
        if (ctx && ctx[1] <= end && ctx[0] === 0) this.#onDatagram(this.#buf.subarray(ctx[1], end));
      }
      at = end;
    }
    this.#buf = at === this.#buf.length ? Buffer.alloc(0) : Buffer.from(this.#buf.subarray(at));
    return true;
  }
}
