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
 * The request is HTTP/1.0, so the agent's reply is never chunked: the body is every byte after
 * the head until the agent closes (what Node's server does for an HTTP/1.0 client).
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

/** the agent's status and the headers the user gets */
interface ReplyHead {
  status: number;
  headers: Record<string, string>;
}

/** the reply head in `b`, or undefined when it is malformed */
export function parseReplyHead(b: Buffer): ReplyHead | undefined {
  const lines = b.toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0] ?? '');
  if (!m) return undefined;
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i <= 0) return undefined;
    const k = line.slice(0, i).trim().toLowerCase();
    if (k === 'content-type' || k === 'content-length') headers[k === 'content-type' ? 'Content-Type' : 'Content-Length'] = line.slice(i + 1).trim();
  }
  return { status: Number(m[1]), headers };
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
    const body = (chunk: Buffer, release: () => void): boolean => {
      if (res.destroyed || res.writableEnded) {
        release();
        return false;
      }
      const more = res.write(chunk, () => release());
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
      res.writeHead(h.status, { 'Content-Type': 'text/plain', ...h.headers, 'Cache-Control': 'no-cache, private' });
      res.flushHeaders();
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
      res.end();
      finish();
    });
    sock.once('error', (e) => finish(e));
    // closed without an end: the reply is cut short, and so is the user's
    sock.once('close', () => finish(new Error('the agent connection closed in the middle of its reply')));
  });
}
