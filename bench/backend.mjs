// @ts-check
/**
 * The benchmark's backend: one of the 3 pods of the `bench` Deployment (kubeloop runs it as
 * `command: [node, bench/backend.mjs]`; HAProxy, nginx and "direct" are pointed at the same 3
 * processes, so every contender talks to the very same backends).
 *
 *   node bench/backend.mjs [--host IP] [--http PORT] [--tcp PORT]      (host default $POD_IP)
 *
 * - HTTP (default 8080): a plain Node HTTP server answering every request with a fixed 13-byte
 *   body, keep-alive on.
 * - TCP (default 9000), a raw source for bulk and idle tests. The client's first byte picks:
 *   `S` + 8-byte big-endian length: send that many bytes (from one shared buffer, with
 *   backpressure), then end; `P`: answer `p` and hold the connection, idle, until the client
 *   closes it. Anything else: close.
 * Exits on SIGTERM/SIGINT.
 */
import http from 'node:http';
import net from 'node:net';

/** @param {string} name */
function flag(name) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}

const host = flag('host') ?? process.env.POD_IP ?? '127.0.0.1';
const httpPort = Number(flag('http') ?? 8080);
const tcpPort = Number(flag('tcp') ?? 9000);

const BODY = Buffer.from('hello, bench\n');
const HEADERS = { 'content-type': 'text/plain', 'content-length': String(BODY.length) };
const web = http.createServer({ keepAliveTimeout: 120_000 }, (req, res) => {
  req.resume();
  res.writeHead(200, HEADERS);
  res.end(BODY);
});
web.headersTimeout = 0;
web.requestTimeout = 0;

const CHUNK = Buffer.alloc(1 << 20, 0x61);
const raw = net.createServer({ noDelay: true }, (s) => {
  s.on('error', () => s.destroy());
  s.once('readable', function first() {
    const head = s.read(1);
    if (head === null) return s.once('readable', first);
    if (head[0] === 0x50 /* P */) {
      s.write('p');
      s.on('data', () => undefined);
      s.on('end', () => s.end());
      return;
    }
    if (head[0] !== 0x53 /* S */) return s.destroy();
    const readLen = () => {
      const b = s.read(8);
      if (b === null) return void s.once('readable', readLen);
      s.on('data', () => undefined); // ignore the rest, keep the socket flowing
      source(s, Number(b.readBigUInt64BE(0)));
    };
    readLen();
  });
});

/**
 * @param {net.Socket} s
 * @param {number} left
 */
function source(s, left) {
  const pump = () => {
    while (left > 0 && !s.destroyed) {
      const n = Math.min(left, CHUNK.length);
      left -= n;
      const more = s.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n));
      if (!more) return void s.once('drain', pump);
    }
    if (!s.destroyed) s.end();
  };
  pump();
}

await Promise.all([
  new Promise((r) => web.listen({ host, port: httpPort, backlog: 4096 }, () => r(undefined))),
  new Promise((r) => raw.listen({ host, port: tcpPort, backlog: 4096 }, () => r(undefined))),
]);
process.stdout.write(`bench backend: http ${host}:${httpPort}, tcp ${host}:${tcpPort}\n`);

const stop = () => {
  web.close();
  web.closeAllConnections();
  raw.close();
  setTimeout(() => process.exit(0), 200).unref();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
