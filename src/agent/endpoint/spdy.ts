/**
 * SPDY/3.1 framing, the part kubectl's port-forward speaks (draft-mbelshe-httpbis-spdy-00 and
 * the SPDY/3.1 flow-control addendum): frames in and out, and name/value header blocks.
 *
 *   control frame:  |1| version (15) | type (16) | flags (8) | length (24) | data …
 *   data frame:     |0| stream id (31)           | flags (8) | length (24) | data …
 *
 * Header blocks are zlib streams primed with the SPDY/3 dictionary, one per direction per
 * session: each block is the continuation of the previous ones, flushed with Z_SYNC_FLUSH.
 * zlib's stream API is asynchronous, so a session decodes and encodes blocks strictly in order.
 */
import zlib from 'node:zlib';
import { SPDY3_DICTIONARY } from './spdy-dictionary.js';

export const SPDY_VERSION = 3;

export const FrameType = {
  SYN_STREAM: 1,
  SYN_REPLY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PING: 6,
  GOAWAY: 7,
  HEADERS: 8,
  WINDOW_UPDATE: 9,
} as const;

export const FLAG_FIN = 0x01;

/** RST_STREAM status codes */
export const RstStatus = { PROTOCOL_ERROR: 1, INVALID_STREAM: 2, REFUSED_STREAM: 3, CANCEL: 5, INTERNAL_ERROR: 6, STREAM_IN_USE: 8, STREAM_ALREADY_CLOSED: 9 } as const;
/** GOAWAY status codes */
export const GoawayStatus = { OK: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2 } as const;

export type Frame =
  | { control: true; type: number; flags: number; data: Buffer }
  | { control: false; streamId: number; flags: number; data: Buffer };

/** a malformed frame or header block: the session answers with GOAWAY PROTOCOL_ERROR */
export class SpdyProtocolError extends Error {
  override name = 'SpdyProtocolError';
}

/** the largest frame accepted (the format allows 16 MiB; kubectl's are far smaller) */
export const MAX_FRAME = 1 << 20;
/** the largest decompressed header block accepted */
export const MAX_HEADER_BLOCK = 64 * 1024;

/** Splits a byte stream into frames; bytes of an incomplete frame wait for the next push. */
export class FrameReader {
  #pending: Buffer = Buffer.alloc(0);

  /** the frames completed by `b`; throws SpdyProtocolError on a frame it cannot take */
  push(b: Buffer): Frame[] {
    let buf = this.#pending.length ? Buffer.concat([this.#pending, b]) : b;
    const frames: Frame[] = [];
    while (buf.length >= 8) {
      const length = buf.readUIntBE(5, 3);
      if (length > MAX_FRAME) throw new SpdyProtocolError(`frame of ${length} bytes is over the ${MAX_FRAME}-byte limit`);
      if (buf.length < 8 + length) break;
      const flags = buf[4];
      const data = Buffer.from(buf.subarray(8, 8 + length)); // a copy: the input buffer is not kept
      if (buf[0] & 0x80) {
        const version = buf.readUInt16BE(0) & 0x7fff;
        if (version !== SPDY_VERSION) throw new SpdyProtocolError(`SPDY version ${version} is not served (3 only)`);
        frames.push({ control: true, type: buf.readUInt16BE(2), flags, data });
      } else {
        frames.push({ control: false, streamId: buf.readUInt32BE(0) & 0x7fffffff, flags, data });
      }
      buf = buf.subarray(8 + length);
    }
    this.#pending = Buffer.from(buf);
    return frames;
  }
}

export function controlFrame(type: number, flags: number, payload: Buffer): Buffer {
  const b = Buffer.allocUnsafe(8 + payload.length);
  b.writeUInt16BE(0x8000 | SPDY_VERSION, 0);
  b.writeUInt16BE(type, 2);
  b[4] = flags;
  b.writeUIntBE(payload.length, 5, 3);
  payload.copy(b, 8);
  return b;
}

export function dataFrame(streamId: number, flags: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.allocUnsafe(8 + data.length);
  b.writeUInt32BE(streamId & 0x7fffffff, 0);
  b[4] = flags;
  b.writeUIntBE(data.length, 5, 3);
  data.copy(b, 8);
  return b;
}

const u32s = (...v: number[]): Buffer => {
  const b = Buffer.allocUnsafe(4 * v.length);
  v.forEach((x, i) => b.writeUInt32BE(x >>> 0, 4 * i));
  return b;
};

/** SYN_REPLY for `streamId` with an already compressed header block */
export const synReplyFrame = (streamId: number, flags: number, block: Buffer): Buffer =>
  controlFrame(FrameType.SYN_REPLY, flags, Buffer.concat([u32s(streamId & 0x7fffffff), block]));
export const rstStreamFrame = (streamId: number, status: number): Buffer => controlFrame(FrameType.RST_STREAM, 0, u32s(streamId & 0x7fffffff, status));
export const pingFrame = (id: number): Buffer => controlFrame(FrameType.PING, 0, u32s(id));
export const goawayFrame = (lastGoodStreamId: number, status: number): Buffer => controlFrame(FrameType.GOAWAY, 0, u32s(lastGoodStreamId & 0x7fffffff, status));
/** stream 0 is the session's window (SPDY/3.1) */
export const windowUpdateFrame = (streamId: number, delta: number): Buffer => controlFrame(FrameType.WINDOW_UPDATE, 0, u32s(streamId & 0x7fffffff, delta & 0x7fffffff));

/** SYN_STREAM's fixed fields; `block` is the compressed header block */
export interface SynStream {
  streamId: number;
  associatedId: number;
  priority: number;
  block: Buffer;
}

export function parseSynStream(data: Buffer): SynStream {
  if (data.length < 10) throw new SpdyProtocolError(`SYN_STREAM of ${data.length} bytes (at least 10)`);
  const streamId = data.readUInt32BE(0) & 0x7fffffff;
  if (streamId === 0) throw new SpdyProtocolError('SYN_STREAM for stream 0');
  return { streamId, associatedId: data.readUInt32BE(4) & 0x7fffffff, priority: data[8] >> 5, block: data.subarray(10) };
}

/** two 31-bit/32-bit words, as RST_STREAM, GOAWAY and WINDOW_UPDATE carry them */
export function parseIdAndValue(data: Buffer, what: string): { id: number; value: number } {
  if (data.length < 8) throw new SpdyProtocolError(`${what} of ${data.length} bytes (8)`);
  return { id: data.readUInt32BE(0) & 0x7fffffff, value: data.readUInt32BE(4) };
}

/** name → values (a value holding NULs is several values) */
export type HeaderMap = Map<string, string[]>;

/** the uncompressed name/value block: count, then (length, name, length, value) pairs */
export function encodeHeaderBlock(h: HeaderMap): Buffer {
  const parts: Buffer[] = [u32s(h.size)];
  for (const [name, values] of h) {
    const n = Buffer.from(name.toLowerCase(), 'utf8');
    const v = Buffer.from(values.join('\0'), 'utf8');
    parts.push(u32s(n.length), n, u32s(v.length), v);
  }
  return Buffer.concat(parts);
}

export function decodeHeaderBlock(b: Buffer): HeaderMap {
  const h: HeaderMap = new Map();
  let at = 0;
  const word = (): number => {
    if (at + 4 > b.length) throw new SpdyProtocolError('header block ends inside a length');
    const v = b.readUInt32BE(at);
    at += 4;
    return v;
  };
  const bytes = (n: number): string => {
    if (at + n > b.length) throw new SpdyProtocolError('header block ends inside a name or value');
    const s = b.toString('utf8', at, at + n);
    at += n;
    return s;
  };
  const count = word();
  for (let i = 0; i < count; i++) {
    const name = bytes(word());
    if (!name) throw new SpdyProtocolError('empty header name');
    if (h.has(name)) throw new SpdyProtocolError(`header ${name} appears twice`);
    h.set(name, bytes(word()).split('\0'));
  }
  if (at !== b.length) throw new SpdyProtocolError(`${b.length - at} bytes after the header block's last pair`);
  return h;
}

/**
 * One direction's header compression context: blocks go through one zlib stream, in order.
 * `run` serializes the calls (each waits for the one before).
 */
class ZlibContext {
  readonly #z: zlib.Inflate | zlib.Deflate;
  #out: Buffer[] = [];
  #outBytes = 0;
  #error: Error | undefined;
  /** the block in progress: zlib reports a bad stream by 'error' and never calls its flush back */
  #fail: ((e: Error) => void) | undefined;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(z: zlib.Inflate | zlib.Deflate) {
    this.#z = z;
    z.on('data', (c: Buffer) => {
      this.#outBytes += c.length;
      if (this.#outBytes <= MAX_HEADER_BLOCK) this.#out.push(c);
    });
    z.on('error', (e) => {
      this.#error = e;
      this.#fail?.(e);
    });
  }

  run(input: Buffer): Promise<Buffer> {
    const job = this.#queue.then(
      () =>
        new Promise<Buffer>((resolve, reject) => {
          const fail = (e: Error): void => reject(new SpdyProtocolError(`header block cannot be (de)compressed: ${e.message}`));
          if (this.#error) return fail(this.#error);
          this.#fail = fail;
          this.#out = [];
          this.#outBytes = 0;
          this.#z.write(input);
          this.#z.flush(zlib.constants.Z_SYNC_FLUSH, () => {
            this.#fail = undefined;
            if (this.#error) return fail(this.#error);
            if (this.#outBytes > MAX_HEADER_BLOCK) return reject(new SpdyProtocolError(`header block over ${MAX_HEADER_BLOCK} bytes`));
            resolve(Buffer.concat(this.#out));
          });
        }),
    );
    this.#queue = job.catch(() => {});
    return job;
  }

  close(): void {
    this.#z.close();
  }
}

/** a session's header compression: one inflater for the peer's blocks, one deflater for ours */
export class HeaderCodec {
  readonly #in = new ZlibContext(zlib.createInflate({ dictionary: SPDY3_DICTIONARY }));
  readonly #out = new ZlibContext(zlib.createDeflate({ dictionary: SPDY3_DICTIONARY }));

  async decode(block: Buffer): Promise<HeaderMap> {
    return decodeHeaderBlock(await this.#in.run(block));
  }

  encode(h: HeaderMap): Promise<Buffer> {
    return this.#out.run(encodeHeaderBlock(h));
  }

  close(): void {
    this.#in.close();
    this.#out.close();
  }
}
