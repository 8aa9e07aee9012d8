// @ts-check
/**
 * Built-in image `static` (stands in for nginx, httpd, caddy): an HTTP server on every declared
 * TCP containerPort (80 when none). It serves a small index page naming the pod, or the files
 * under `$KUBELOOP_STATIC_ROOT` when that is set, else under nginx's `/usr/share/nginx/html` (or
 * httpd's, caddy's root) when a volume is mounted there (`/dir/` serves `dir/index.html`).
 */
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { pod, podLine, tcpPorts, listen, exitOnSignal } from './lib.mjs';

const IMAGE = 'static';
/** the web roots of the images this stands in for: served when a volume is mounted there (the pod's mount namespace) */
const WEB_ROOTS = ['/usr/share/nginx/html', '/usr/local/apache2/htdocs', '/usr/share/caddy'];
const root = process.env.KUBELOOP_STATIC_ROOT ? path.resolve(process.env.KUBELOOP_STATIC_ROOT) : mountedWebRoot();

/** @returns {string | undefined} */
function mountedWebRoot() {
  let info = '';
  try {
    info = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return undefined;
  }
  const points = new Set(info.split('\n').map((l) => l.split(' ')[4]));
  return WEB_ROOTS.find((r) => points.has(r));
}
const ports = tcpPorts.length ? tcpPorts : [80];

/** @type {Record<string, string>} */
const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.htm': 'text/html; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.ico': 'image/x-icon',
  '.wasm': 'application/wasm',
};

/** @param {string} s */
const esc = (s) => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);

const INDEX = `<!DOCTYPE html>
<html>
<head><title>Welcome to nginx!</title></head>
<body>
<h1>Welcome to nginx!</h1>
<p>Served by kubeloop's built-in static image.</p>
<p id="pod">${esc(podLine)}</p>
</body>
</html>
`;

/**
 * @param {http.ServerResponse} res
 * @param {number} code
 * @param {string} type
 * @param {string | Buffer} body
 * @param {boolean} head
 */
function send(res, code, type, body, head) {
  res.writeHead(code, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    server: 'kubeloop-static',
    'x-kubeloop-pod': pod.name,
  });
  res.end(head ? undefined : body);
}

/**
 * @param {http.IncomingMessage} req
 * @param {http.ServerResponse} res
 */
function handle(req, res) {
  const head = req.method === 'HEAD';
  if (req.method !== 'GET' && !head) return send(res, 405, 'text/plain', '405 Method Not Allowed\n', head);
  let pathname;
  try {
    pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
  } catch {
    return send(res, 400, 'text/plain', '400 Bad Request\n', head);
  }
  if (!root) {
    if (pathname === '/' || pathname === '/index.html') return send(res, 200, TYPES['.html'], INDEX, head);
    return send(res, 404, 'text/plain', '404 Not Found\n', head);
  }
  let file = path.join(root, pathname);
  if (file !== root && !file.startsWith(root + path.sep)) return send(res, 403, 'text/plain', '403 Forbidden\n', head);
  fs.stat(file, (err, st) => {
    if (!err && st.isDirectory()) file = path.join(file, 'index.html');
    fs.readFile(file, (err2, data) => {
      if (err2) {
        if (pathname === '/') return send(res, 200, TYPES['.html'], INDEX, head);
        return send(res, 404, 'text/plain', '404 Not Found\n', head);
      }
      send(res, 200, TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream', data, head);
    });
  });
}

/** @type {import('./lib.mjs').Closable[]} */
const closables = [];
exitOnSignal(IMAGE, closables);
for (const port of ports) {
  const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    req.resume();
    req.on('end', () => handle(req, res));
  });
  closables.push(server);
  await listen(IMAGE, server, port);
}
