// @ts-check
/**
 * Built-in image `echo`: an HTTP server that says which pod answered.
 *
 * Body (text/plain): `pod=<name> namespace=<ns> ip=<ip> node=<node>`, then the request line and
 * the headers as received. `Accept: application/json` gets the same as JSON. Listens on every
 * declared TCP containerPort (8080 when none); declared UDP ports echo datagrams prefixed with the
 * pod line. Understands the arguments of the images it stands in for:
 * hashicorp/http-echo `-text=... -listen=:5678`, agnhost `serve-hostname` (port 9376) and
 * `netexec --http-port=N --udp-port=N` (`/hostname`, `/echo?msg=`).
 *
 * SIGTERM drains instead of dropping: the listeners close (no new connections), requests in
 * flight are answered, every later response on a kept-alive connection carries
 * `Connection: close` (the client opens its next connection elsewhere), connections idle for
 * IDLE_CLOSE_MS since the signal (or since their last request, if later) are closed, and the
 * process exits 0 once none is left (at the latest after
 * DRAIN_MAX_MS; the node agent's SIGKILL at the end of the grace period bounds it anyway).
 */
import http from 'node:http';
import dgram from 'node:dgram';
import net from 'node:net';
import { pod, podLine, tcpPorts, udpPorts, flag, listen, failListen, watchLifeline } from './lib.mjs';

const IMAGE = 'echo';
const argv = process.argv.slice(2);
const mode = argv[0] === 'serve-hostname' || argv[0] === 'netexec' ? argv[0] : 'echo';
const text = flag(argv, 'text');

/** @type {number[]} */
const ports = [...tcpPorts];
/** @param {string | undefined} v */
const addPort = (v) => {
  const n = Number(v?.slice(v.lastIndexOf(':') + 1));
  if (Number.isInteger(n) && n > 0 && n < 65536 && !ports.includes(n)) ports.push(n);
};
addPort(flag(argv, 'listen'));
addPort(flag(argv, 'http-port'));
addPort(flag(argv, 'port'));
if (ports.length === 0) ports.push(mode === 'serve-hostname' ? 9376 : text !== undefined ? 5678 : 8080);
const udp = [...udpPorts];
const udpFlag = Number(flag(argv, 'udp-port'));
if (Number.isInteger(udpFlag) && udpFlag > 0 && !udp.includes(udpFlag)) udp.push(udpFlag);

/**
 * agnhost netexec's `/dial?host=H&port=P&request=R&tries=N`: GET `http://H:P/R` from inside the
 * pod (names resolve through the cluster DNS) and answer `{"responses": [...], "errors": [...]}`
 * with the first line of each reply.
 * @param {URL} url
 * @param {http.ServerResponse} res
 */
function dial(url, res) {
  const host = url.searchParams.get('host') ?? '';
  const port = Number(url.searchParams.get('port') ?? 80);
  const path = `/${(url.searchParams.get('request') ?? '').replace(/^\//, '')}`;
  const tries = Math.min(Math.max(Number(url.searchParams.get('tries') ?? 1) || 1, 1), 100);
  /** @type {string[]} */
  const responses = [];
  /** @type {string[]} */
  const errors = [];
  let left = tries;
  const once = () => {
    const r = http.get({ host, port, path, agent: false, timeout: 2000 }, (reply) => {
      let body = '';
      reply.setEncoding('utf8');
      reply.on('data', (c) => (body += c));
      reply.on('end', () => next(() => responses.push(body.split('\n')[0])));
    });
    r.on('timeout', () => r.destroy(new Error('timeout')));
    r.on('error', (err) => next(() => errors.push(err.message)));
  };
  /** @param {() => void} record */
  const next = (record) => {
    record();
    if (--left > 0) return once();
    send(res, 200, 'application/json', `${JSON.stringify({ responses, errors })}\n`);
  };
  once();
}

/**
 * @param {http.IncomingMessage} req
 * @param {http.ServerResponse} res
 */
function handle(req, res) {
  const url = new URL(req.url ?? '/', 'http://x');
  if (mode === 'serve-hostname' || (mode === 'netexec' && url.pathname === '/hostname')) {
    return send(res, 200, 'text/plain; charset=utf-8', pod.name);
  }
  if (mode === 'netexec' && url.pathname === '/echo') {
    return send(res, 200, 'text/plain; charset=utf-8', url.searchParams.get('msg') ?? '');
  }
  if (url.pathname === '/dial' && url.searchParams.has('host')) return dial(url, res);
  if (text !== undefined) return send(res, 200, 'text/plain; charset=utf-8', `${text}\n`);
  const requestLine = `${req.method} ${req.url} HTTP/${req.httpVersion}`;
  if (/\bapplication\/json\b/.test(req.headers.accept ?? '')) {
    /** @type {Record<string, string>} */
    const headers = {};
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) headers[req.rawHeaders[i].toLowerCase()] = req.rawHeaders[i + 1];
    const body = {
      pod: pod.name,
      namespace: pod.namespace,
      ip: pod.ip,
      node: pod.node,
      method: req.method,
      url: req.url,
      httpVersion: req.httpVersion,
      headers,
      client: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
    };
    return send(res, 200, 'application/json', `${JSON.stringify(body)}\n`);
  }
  const lines = [podLine, requestLine];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
  send(res, 200, 'text/plain; charset=utf-8', `${lines.join('\n')}\n`);
}

/**
 * @param {http.ServerResponse} res
 * @param {number} code
 * @param {string} type
 * @param {string} body
 */
function send(res, code, type, body) {
  res.writeHead(code, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/**
 * Closing an idle kept-alive connection races a client that picks it for its next request at
 * that instant (HTTP/1.1 has no clean way out; RFC 9112 §9.3.1 lets clients retry). Right after
 * SIGTERM clients move their load off the connections answered with `Connection: close` onto
 * their idle ones, so those are left alone for a while: any that is used gets
 * `Connection: close` instead; the rest are truly idle, and they are closed one at a time so
 * that a burst of client requests meets at most one closing connection.
 */
const IDLE_CLOSE_MS = 1000;
const DRAIN_MAX_MS = 10_000;

/** @type {http.Server[]} */
const servers = [];
/** @type {dgram.Socket[]} */
const udpSockets = [];
/** per open connection: requests in progress and since when it is idle */
/** @type {Map<import('node:net').Socket, { busy: number, idleSince: number, closing?: boolean }>} */
const conns = new Map();
let draining = false;

/** @param {NodeJS.Signals} sig */
function drain(sig) {
  if (draining) return;
  draining = true;
  process.stdout.write(`${IMAGE}: received ${sig}, draining ${conns.size} connection(s)\n`);
  for (const s of udpSockets) {
    try {
      s.close();
    } catch {
      // already closed
    }
  }
  let open = servers.length;
  const exit = () => process.exit(0);
  if (open === 0) return exit();
  for (const server of servers) {
    // net's close, not http's: http.Server#close also drops idle kept-alive connections at
    // once, which races a client that is just sending its next request on one of them
    net.Server.prototype.close.call(server, () => {
      if (--open === 0) exit();
    });
  }
  const started = Date.now();
  const sweep = setInterval(() => {
    const now = Date.now();
    const late = now - started >= DRAIN_MAX_MS;
    for (const [sock, c] of conns) {
      if (c.busy > 0 || c.closing) continue;
      if (late || now - Math.max(c.idleSince, started) >= IDLE_CLOSE_MS) {
        c.closing = true;
        sock.end();
        if (!late) break;
      }
    }
    if (now - started >= DRAIN_MAX_MS + 1000) exit();
  }, 50);
  sweep.unref();
}
process.on('SIGTERM', drain);
process.on('SIGINT', drain);
// the daemon is gone (even SIGKILLed): nobody routes here any more, stop now
watchLifeline(() => process.exit(0));

for (const port of ports) {
  const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    const c = conns.get(req.socket);
    if (c) c.busy++;
    res.once('close', () => {
      if (c) {
        c.busy--;
        c.idleSince = Date.now();
      }
    });
    // after SIGTERM: answer, then close this connection so the client reconnects elsewhere
    if (draining) res.setHeader('connection', 'close');
    // drain any body, then answer
    req.resume();
    req.on('end', () => handle(req, res));
  });
  server.on('connection', (sock) => {
    conns.set(sock, { busy: 0, idleSince: Date.now() });
    sock.once('close', () => conns.delete(sock));
  });
  servers.push(server);
  if (draining) break;
  await listen(IMAGE, server, port);
}

for (const port of udp) {
  const sock = dgram.createSocket('udp4');
  udpSockets.push(sock);
  sock.on('message', (msg, rinfo) => {
    const reply = Buffer.concat([Buffer.from(`${podLine}\n`), msg]);
    sock.send(reply, rinfo.port, rinfo.address);
  });
  await new Promise((resolve) => {
    sock.once('error', (/** @type {NodeJS.ErrnoException} */ err) => failListen(IMAGE, `${pod.ip}:${port}/udp`, err));
    sock.bind({ address: pod.ip, port }, () => {
      process.stdout.write(`${IMAGE}: listening on ${pod.ip}:${port}/udp\n`);
      resolve(undefined);
    });
  });
}
