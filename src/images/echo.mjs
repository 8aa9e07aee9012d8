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
 */
import http from 'node:http';
import dgram from 'node:dgram';
import { pod, podLine, tcpPorts, udpPorts, flag, listen, exitOnSignal, failListen } from './lib.mjs';

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

/** @type {import('./lib.mjs').Closable[]} */
const closables = [];
exitOnSignal(IMAGE, closables);

for (const port of ports) {
  const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    // drain any body, then answer
    req.resume();
    req.on('end', () => handle(req, res));
  });
  closables.push(server);
  await listen(IMAGE, server, port);
}

for (const port of udp) {
  const sock = dgram.createSocket('udp4');
  closables.push(sock);
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
