import http from 'node:http';

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
