import http from 'node:http';
import net from 'node:net';

export interface Reply {
  status: number;
  body: string;
}

/** One GET on a fresh connection (no keep-alive), bounded in time. */
export function get(url: string, opts: { timeoutMs?: number; localAddress?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: opts.timeoutMs ?? 5000, localAddress: opts.localAddress }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

/** The pod name the echo image puts on its first line (`pod=<name> namespace=...`). */
export function podOf(body: string): string {
  const m = /pod=(\S+)/.exec(body);
  if (!m) throw new Error(`not an echo reply: ${body.slice(0, 120)}`);
  return m[1];
}

export interface RawReply {
  status: number;
  /** the body as JSON, `{}` when it is not JSON (or a stream cut short) */
  json: Record<string, unknown>;
  /** the body as text */
  text: string;
}

export interface RawOptions {
  /** the Content-Type header (default application/json); null sends none */
  contentType?: string | null;
  /** more headers, after (and over) the default ones */
  headers?: Record<string, string>;
  /** resolve once the status line and headers are in (a watch), then close */
  headOnly?: boolean;
}

/**
 * One plain-HTTP request to 127.0.0.1:`port` written byte for byte on a fresh connection
 * (`Connection: close`), so nothing normalises its path or headers; 20 s without an answer rejects.
 */
export function rawOnce(port: number, method: string, path: string, body: string | Buffer = '', o: RawOptions = {}): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const done = (): void => {
      const text = Buffer.concat(chunks).toString('utf8');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      const bodyText = text.slice(text.indexOf('\r\n\r\n') + 4);
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(bodyText) as Record<string, unknown>;
      } catch {
        // not JSON (or a stream cut short)
      }
      resolve({ status, json, text: bodyText });
    };
    s.setTimeout(20_000, () => s.destroy(new Error(`${method} ${path}: no answer`)));
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      if (o.headOnly && Buffer.concat(chunks).includes('\r\n\r\n')) s.destroy();
    });
    s.on('error', reject);
    s.on('close', done);
    const ct = o.contentType === undefined ? 'application/json' : o.contentType;
    const h: Record<string, string> = {
      Host: '127.0.0.1',
      ...(ct === null ? {} : { 'Content-Type': ct }),
      'Content-Length': String(Buffer.byteLength(body)),
      Connection: 'close',
      ...o.headers,
    };
    s.write(`${method} ${path} HTTP/1.1\r\n${Object.entries(h).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
    s.end(body);
  });
}
