/**
 * Reading a container's log file without blocking the event loop: every read is an async
 * positioned read of at most CHUNK bytes (the file may be gigabytes; the daemon's event loop
 * also carries DNS and the proxy), and nothing holds more than one chunk in memory.
 */
import type { FileHandle } from 'node:fs/promises';

/** bytes per read: large enough for few syscalls, small enough to bound memory per request */
export const CHUNK = 64 * 1024;

const NL = 0x0a;

/**
 * The byte offset where the last `lines` lines of `fh`'s first `size` bytes begin, found by
 * reading backwards from the end in chunks. A final newline ends the last line (it does not
 * start an empty one), and a last line without one counts as a line — as `tail -n` does.
 * `lines` ≤ 0 gives `size` (nothing).
 */
export async function tailOffset(fh: FileHandle, size: number, lines: number, chunk = CHUNK): Promise<number> {
  if (lines <= 0 || size === 0) return size;
  const buf = Buffer.allocUnsafe(Math.min(chunk, size));
  let end = size;
  let seen = 0;
  let skipFinal = true;
  while (end > 0) {
    const start = Math.max(0, end - buf.length);
    const len = end - start;
    const { bytesRead } = await fh.read(buf, 0, len, start);
    if (bytesRead < len) throw new Error(`log file shrank while reading (wanted ${len} bytes at ${start}, got ${bytesRead})`);
    let i = len - 1;
    if (skipFinal) {
      skipFinal = false;
      if (buf[i] === NL) i--;
    }
    for (; i >= 0; i--) {
      i = buf.lastIndexOf(NL, i);
      if (i < 0) break;
      if (++seen === lines) return start + i + 1;
    }
    end = start;
  }
  return 0;
}

/**
 * Where copyRange puts what it reads. Buffers come from the sink and go back to it once their
 * bytes are written (a write may complete after `put` resolves), so a long stream reuses a few
 * buffers instead of leaving a trail of garbage as large as the file for the GC to find.
 */
export interface ChunkSink {
  /** a buffer to read the next chunk into */
  take(): Promise<Buffer>;
  /** returns a taken buffer */
  give(b: Buffer): void;
  /** `chunk` is a view of a taken buffer; `release()` gives that buffer back (once); false stops the copy */
  put(chunk: Buffer, release: () => void): Promise<boolean>;
}

/**
 * Reads bytes [from, to) of `fh` in chunks into `sink`, stopping early when the sink returns
 * false. Resolves to the offset reached (where the next read would begin).
 */
export async function copyRange(fh: FileHandle, from: number, to: number, sink: ChunkSink): Promise<number> {
  let pos = from;
  while (pos < to) {
    const buf = await sink.take();
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      sink.give(buf);
    };
    const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, to - pos), pos).catch((err: unknown) => {
      release();
      throw err;
    });
    if (bytesRead === 0) {
      release();
      break; // truncated meanwhile: what is gone is gone
    }
    pos += bytesRead;
    if (!(await sink.put(buf.subarray(0, bytesRead), release))) break;
  }
  return pos;
}

/**
 * A few CHUNK-sized buffers handed out and given back; `take()` waits while all are out.
 * The bound is per stream: memory per log request is at most `max` chunks.
 */
export class BufferPool {
  readonly #free: Buffer[] = [];
  readonly #waiting: Array<(b: Buffer) => void> = [];
  readonly #max: number;
  #made = 0;

  constructor(max = 4) {
    this.#max = max;
  }

  take(): Promise<Buffer> {
    const b = this.#free.pop();
    if (b) return Promise.resolve(b);
    if (this.#made < this.#max) {
      this.#made++;
      return Promise.resolve(Buffer.allocUnsafe(CHUNK));
    }
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  give(b: Buffer): void {
    const w = this.#waiting.shift();
    if (w) w(b);
    else this.#free.push(b);
  }
}

/**
 * Prefixes each line of a byte stream with a time stamp, across chunk boundaries: a line's
 * stamp is written when its first byte passes, with the time `now()` gives then.
 */
export class LineStamper {
  #atLineStart = true;
  #now: (offset: number) => string;
  #offset: number;

  /** `now(offset)`: the stamp of the line starting at byte `offset` of the file; `offset`: where the first chunk starts */
  constructor(now: (offset: number) => string, offset = 0) {
    this.#now = now;
    this.#offset = offset;
  }

  /** stamps of lines that start from now on come from `now` (a line already begun keeps its stamp) */
  setClock(now: (offset: number) => string): void {
    this.#now = now;
  }

  transform(b: Buffer): Buffer {
    if (b.length === 0) return b;
    const parts: Buffer[] = [];
    let from = 0;
    while (from < b.length) {
      if (this.#atLineStart) parts.push(Buffer.from(`${this.#now(this.#offset + from)} `));
      const nl = b.indexOf(NL, from);
      const end = nl < 0 ? b.length : nl + 1;
      parts.push(b.subarray(from, end));
      this.#atLineStart = nl >= 0;
      from = end;
    }
    this.#offset += b.length;
    return Buffer.concat(parts);
  }
}

/** RFC 3339 with nanoseconds, as the kubelet stamps log lines */
export const stamp = (ms: number): string => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z');
