/**
 * A node agent's GET reply (`pods/log`), relayed to the user's response through a few
 * reusable buffers.
 *
 * Why not `https.request(…).pipe(res)`: every decrypted TLS read of the agent's reply becomes a
 * fresh Buffer, garbage that V8 only collects once tens of MiB of external memory have piled up
 * (streaming a 48 MiB log twice grew the daemon's RSS by ~40 MiB; test/log-tail allows 24). Here
 * the TLS socket decrypts into buffers of a small pool (`onread`), each goes back to the pool once
 * the user's socket has taken its bytes, and reading pauses while the pool is out or the user's
 * response wants a drain.
 *
 * The request is HTTP/1.0, so Node's server does not chunk the reply: with chunked encoding every
 * write of the agent became a fresh copy in TLS (a writev of size line, data and CRLF), the same
 * garbage again (+39 MiB in test/log-tail). A reply with a Content-Length (a Status) or chunked
 * anyway is framed by it, and cut for the user if the agent does not finish it; a log body ends
 * with the connection, so an agent that dies mid-log is not told apart from the end of the log.
 */
import type { ServerResponse } from 'node:http';
import type { OnReadOpts } from 'node:net';
import tls from 'node:tls';

export interface RelayTarget {
  host: string;
  port: number;
  path: string;
  tls: { ca: string; cert: string; key: string };
}

/** bytes per read buffer, and how many may be out (one in the socket, the rest in writes) */
const CHUNK = 64 * 1024;
const POOL = 4;
/** an agent reply head longer than this is refused */
const MAX_HEAD = 16 * 1024;

/** the agent's status, the headers the user gets, and the body's framing */
interface ReplyHead {
  status: number;
  headers: Record<string, string>;
  chunked: boolean;
  length: number | undefined;
}

/**
 * Decodes a chunked body as it arrives: the body bytes of each read, as views of it (no copy).
 * Chunk extensions and trailers are skipped. Throws on malformed framing.
 */
export class ChunkedDecoder {
  #state: 'size' | 'data' | 'data-end' | 'trailer' | 'done' = 'size';
  #line = '';
  #left = 0;

  get done(): boolean {
    return this.#state === 'done';
  }

  push(b: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let at = 0;
    while (at < b.length && this.#state !== 'done') {
      if (this.#state === 'data') {
        const n = Math.min(this.#left, b.length - at);
        out.push(b.subarray(at, at + n));
        at += n;
        this.#left -= n;
        if (this.#left === 0) this.#state = 'data-end';
        continue;
      }
      const nl = b.indexOf(0x0a, at);
      const end = nl < 0 ? b.length : nl;
      this.#line += b.toString('latin1', at, end);
      at = nl < 0 ? b.length : nl + 1;
      if (this.#line.length > 1024) throw new Error('a chunk size or trailer line over 1024 bytes');
      if (nl < 0) break;
      const line = this.#line.replace(/\r$/, '');
      this.#line = '';
      if (this.#state === 'data-end') {
        if (line !== '') throw new Error('a chunk does not end with CRLF');
        this.#state = 'size';
      } else if (this.#state === 'size') {
        const hex = line.split(';')[0].trim();
        if (!/^[0-9a-fA-F]{1,8}$/.test(hex)) throw new Error(`bad chunk size "${hex.slice(0, 20)}"`);
        this.#left = parseInt(hex, 16);
        this.#state = this.#left === 0 ? 'trailer' : 'data';
      } else if (line === '') {
        this.#state = 'done';
      }
    }
    return out;
  }
}

/** the reply head in `b`, or undefined when it is malformed */
export function parseReplyHead(b: Buffer): ReplyHead | undefined {
  const lines = b.toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0] ?? '');
  if (!m) return undefined;
  const headers: Record<string, string> = {};
  let chunked = false;
  let length: number | undefined;
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i <= 0) return undefined;
    const k = line.slice(0, i).trim().toLowerCase();
    const v = line.slice(i + 1).trim();
    if (k === 'content-type') headers['Content-Type'] = v;
    else if (k === 'transfer-encoding') chunked = /(^|,)\s*chunked\s*$/i.test(v);
    else if (k === 'content-length') {
      if (!/^\d{1,15}$/.test(v)) return undefined;
      length = Number(v);
    }
  }
  if (length !== undefined && !chunked) headers['Content-Length'] = String(length);
  return { status: Number(m[1]), headers, chunked, length: chunked ? undefined : length };
}

/**
 * Relays the agent's reply. Rejects (before anything is written to `res`) when the agent cannot
 * be reached or its reply head is unusable; once the head is written, it resolves when the body
 * ended, the agent failed (the user's response is then cut, not ended) or the user left.
 */
export function relayAgentGet(t: RelayTarget, res: ServerResponse): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const free: Buffer[] = [];
    let out = 0;
    let paused = false;
    let head: Buffer | undefined = Buffer.alloc(0);
    let done = false;
    const finish = (err?: Error): void => {
      if (done) return;
      done = true;
      res.off('close', onUserGone);
      res.off('drain', resumeIfReady);
      if (!err) resolve();
      else if (head) reject(err);
      else {
        res.destroy();
        resolve();
      }
    };
    const take = (): Buffer => {
      out++;
      return free.pop() ?? Buffer.allocUnsafe(CHUNK);
    };
    const give = (b: Buffer): void => {
      out--;
      if (free.length < POOL) free.push(b);
      resumeIfReady();
    };
    const resumeIfReady = (): void => {
      if (!paused || out >= POOL || res.writableNeedDrain || sock.destroyed) return;
      paused = false;
      sock.resume();
    };
    /** the body's pieces in a read (views of it) and whether the body is complete */
    let frame: (b: Buffer) => { pieces: Buffer[]; complete: boolean } = (b) => ({ pieces: [b], complete: false });
    let closeDelimited = true;
    const body = (chunk: Buffer, release: () => void): boolean => {
      if (res.destroyed || res.writableEnded) {
        release();
        return false;
      }
      let f: { pieces: Buffer[]; complete: boolean };
      try {
        f = frame(chunk);
      } catch (err) {
        release();
        sock.destroy();
        finish(new Error(`the agent's reply body is malformed: ${(err as Error).message}`));
        return false;
      }
      const pieces = f.pieces.filter((p) => p.length);
      let more = true;
      // writes complete in order: the last one's callback frees the buffer
      pieces.forEach((p, i) => (more = res.write(p, i === pieces.length - 1 ? () => release() : undefined)));
      if (!pieces.length) release();
      if (f.complete) {
        res.end();
        sock.destroy();
        finish();
        return false;
      }
      if (!more || out >= POOL) paused = true;
      return !paused;
    };
    const onRead = (n: number, b: Buffer): boolean => {
      const chunk = b.subarray(0, n);
      if (!head) return body(chunk, () => give(b));
      head = Buffer.concat([head, chunk]);
      give(b);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length <= MAX_HEAD) return true;
        sock.destroy();
        finish(new Error(`the agent's reply head is over ${MAX_HEAD} bytes`));
        return false;
      }
      const h = parseReplyHead(head.subarray(0, end));
      if (!h) {
        sock.destroy();
        finish(new Error('the agent sent no HTTP reply'));
        return false;
      }
      const rest = Buffer.from(head.subarray(end + 4)); // the first body bytes: at most one read
      head = undefined;
      if (h.chunked) {
        const decoder = new ChunkedDecoder();
        frame = (b) => ({ pieces: decoder.push(b), complete: decoder.done });
        closeDelimited = false;
      } else if (h.length !== undefined) {
        let left = h.length;
        frame = (b) => {
          const piece = b.subarray(0, left);
          left -= piece.length;
          return { pieces: [piece], complete: left === 0 };
        };
        closeDelimited = false;
      }
      res.writeHead(h.status, { 'Content-Type': 'text/plain', ...h.headers, 'Cache-Control': 'no-cache, private' });
      res.flushHeaders();
      if (h.length === 0) {
        res.end();
        sock.destroy();
        finish();
        return false;
      }
      return rest.length ? body(rest, () => {}) : true;
    };
    // tls.connect passes `onread` to its net.Socket (Node's types do not list it)
    const opts: tls.ConnectionOptions & { onread: OnReadOpts } = { host: t.host, port: t.port, ...t.tls, servername: undefined, ALPNProtocols: ['http/1.1'], onread: { buffer: take, callback: onRead } };
    const sock = tls.connect(opts);
    const onUserGone = (): void => {
      sock.destroy();
      finish();
    };
    res.once('close', onUserGone);
    res.on('drain', resumeIfReady);
    sock.once('secureConnect', () => sock.write(`GET ${t.path} HTTP/1.0\r\nHost: ${t.host}:${t.port}\r\n\r\n`));
    sock.once('end', () => {
      if (head) return finish(new Error('the agent closed the connection before its reply'));
      if (!closeDelimited) return finish(new Error('the agent closed the connection before the end of its reply'));
      res.end();
      finish();
    });
    sock.once('error', (e) => finish(e));
    // closed without an end: the reply is cut short, and so is the user's
    sock.once('close', () => finish(new Error('the agent connection closed in the middle of its reply')));
  });
}
