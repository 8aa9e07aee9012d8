import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import http from 'node:http';
import net from 'node:net';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { BUILTIN_DIR } from '../src/agent/runtime/images.js';
import { type TapT, waitFor } from './runtime-helpers.js';

/** A loopback address of its own for each program, so fixed ports never collide. */
let next = Math.floor(Math.random() * 200) * 256;
const freshIP = (): string => {
  next++;
  return `127.251.${(next >> 8) & 255}.${(next & 255) || 1}`;
};

interface Running {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function run(t: TapT, image: string, env: Record<string, string>, args: string[] = []): Running {
  const child = spawn(process.execPath, [join(BUILTIN_DIR, `${image}.mjs`), ...args], {
    env: { PATH: process.env.PATH ?? '', POD_NAME: 'p1', POD_NAMESPACE: 'ns1', NODE_NAME: 'node-1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => (out += b));
  child.stderr!.on('data', (b: Buffer) => (err += b));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  // SIGTERM first: an image killed by SIGKILL writes no V8 coverage, and the images' coverage
  // counts against the thresholds; SIGKILL only if it has not exited within 2 s
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return exit;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
    await exit;
    clearTimeout(timer);
  });
  return { child, out: () => out, err: () => err, exit };
}

const listening = (r: Running, n = 1) =>
  waitFor(() => (r.out().match(/listening on/g)?.length ?? 0) >= n || r.child.exitCode !== null, 5000, 'listening');

const get = (host: string, port: number, path = '/', headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> =>
  new Promise((resolve, reject) => {
    http
      .get({ host, port, path, headers, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      })
      .on('error', reject);
  });

t.test('echo answers with the pod line, the request line and headers; JSON on request; keep-alive', async (t) => {
  const ip = freshIP();
  const r = run(t, 'echo', { POD_IP: ip, KUBELOOP_CONTAINER_PORTS: '18080,18081' });
  await listening(r, 2);
  const res = await get(ip, 18080, '/some/path?q=1', { 'X-Test': 'yes' });
  t.equal(res.status, 200);
  const lines = res.body.split('\n');
  t.equal(lines[0], `pod=p1 namespace=ns1 ip=${ip} node=node-1`);
  t.equal(lines[1], 'GET /some/path?q=1 HTTP/1.1');
  t.ok(lines.includes('X-Test: yes'), 'headers as received');
  t.match((await get(ip, 18081)).body, /^pod=p1 /, 'every declared port answers');
  const json = JSON.parse((await get(ip, 18080, '/j', { accept: 'application/json' })).body);
  t.match(json, { pod: 'p1', namespace: 'ns1', ip, node: 'node-1', method: 'GET', url: '/j', headers: { accept: 'application/json' } });

  // two requests on one connection
  const sock = net.connect({ host: ip, port: 18080 });
  t.teardown(() => sock.destroy());
  let raw = '';
  sock.setEncoding('utf8');
  sock.on('data', (c: string) => (raw += c));
  sock.write(`GET /one HTTP/1.1\r\nHost: x\r\n\r\n`);
  await waitFor(() => raw.includes('GET /one'), 2000, 'first answer');
  sock.write(`GET /two HTTP/1.1\r\nHost: x\r\n\r\n`);
  await waitFor(() => raw.includes('GET /two'), 2000, 'second answer on the same connection');
  t.equal(raw.match(/HTTP\/1\.1 200 OK/g)?.length, 2);

  const started = Date.now();
  r.child.kill('SIGTERM');
  const { code } = await r.exit;
  t.equal(code, 0, 'SIGTERM: exit 0');
  t.ok(Date.now() - started < 1500, 'within a second, open keep-alive connection or not');
  t.match(r.out(), /received SIGTERM/);
});

t.test('echo: default port, UDP, and the arguments of the images it stands in for', async (t) => {
  const ip = freshIP();
  const r = run(t, 'echo', { POD_IP: ip, KUBELOOP_CONTAINER_UDP_PORTS: '15353' });
  await listening(r, 2);
  t.match((await get(ip, 8080)).body, /^pod=p1 /, 'port 8080 when none is declared');
  const sock = dgram.createSocket('udp4');
  t.teardown(() => sock.close());
  const reply = new Promise<string>((resolve) => sock.once('message', (m) => resolve(m.toString())));
  sock.send('ping', 15353, ip);
  t.equal(await reply, `pod=p1 namespace=ns1 ip=${ip} node=node-1\nping`);

  const ip2 = freshIP();
  const he = run(t, 'echo', { POD_IP: ip2 }, ['-text=hello world', '-listen=:5678']);
  await listening(he);
  t.equal((await get(ip2, 5678)).body, 'hello world\n', 'hashicorp/http-echo -text');

  const ip3 = freshIP();
  const sh = run(t, 'echo', { POD_IP: ip3 }, ['serve-hostname']);
  await listening(sh);
  t.equal((await get(ip3, 9376)).body, 'p1', 'agnhost serve-hostname');

  const ip4 = freshIP();
  const nx = run(t, 'echo', { POD_IP: ip4 }, ['netexec', '--http-port=8081']);
  await listening(nx);
  t.equal((await get(ip4, 8081, '/hostname')).body, 'p1', 'agnhost netexec /hostname');
  t.equal((await get(ip4, 8081, '/echo?msg=hi')).body, 'hi');
});

t.test('static serves an index naming the pod, files from KUBELOOP_STATIC_ROOT, nothing outside it', async (t) => {
  const ip = freshIP();
  const r = run(t, 'static', { POD_IP: ip, KUBELOOP_CONTAINER_PORTS: '18082' });
  await listening(r);
  const idx = await get(ip, 18082);
  t.equal(idx.status, 200);
  t.match(idx.body, /Welcome to nginx!/);
  t.match(idx.body, new RegExp(`pod=p1 namespace=ns1 ip=${ip.replace(/\./g, '\\.')}`));
  t.equal((await get(ip, 18082, '/nope')).status, 404);

  const root = await mkdtemp(join(tmpdir(), 'kubeloop-static-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  await mkdir(join(root, 'docs'));
  await writeFile(join(root, 'docs', 'index.html'), '<p>docs</p>');
  await writeFile(join(root, 'a.json'), '{"a":1}');
  const ip2 = freshIP();
  const s = run(t, 'static', { POD_IP: ip2, KUBELOOP_CONTAINER_PORTS: '18083', KUBELOOP_STATIC_ROOT: root });
  await listening(s);
  const a = await get(ip2, 18083, '/a.json');
  t.equal(a.body, '{"a":1}');
  t.equal(a.headers['content-type'], 'application/json');
  t.equal((await get(ip2, 18083, '/docs/')).body, '<p>docs</p>');
  t.match((await get(ip2, 18083, '/')).body, /Welcome to nginx!/, 'no index.html: the pod page');
  t.not((await get(ip2, 18083, '/%2e%2e/%2e%2e/etc/passwd')).status, 200, 'no escape from the root');

  s.child.kill('SIGTERM');
  t.equal((await s.exit).code, 0);
});

t.test('a port that cannot be bound: one clear line on stderr, exit 1', async (t) => {
  const ip = freshIP();
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(18084, ip, resolve));
  t.teardown(() => blocker.close());
  const r = run(t, 'static', { POD_IP: ip, KUBELOOP_CONTAINER_PORTS: '18084' });
  t.equal((await r.exit).code, 1);
  t.equal(r.err(), `static: cannot listen on ${ip}:18084: address already in use\n`);
});

t.test('pause idles until SIGTERM, then exits 0', async (t) => {
  const r = run(t, 'pause', {});
  await waitFor(() => r.out().includes('idle until SIGTERM'), 5000, 'pause up');
  await new Promise((res) => setTimeout(res, 100));
  t.equal(r.child.exitCode, null, 'still running');
  r.child.kill('SIGTERM');
  t.equal((await r.exit).code, 0);
});

t.test('redis speaks RESP to a real client', async (t) => {
  const ip = freshIP();
  const r = run(t, 'redis', { POD_IP: ip, KUBELOOP_CONTAINER_PORTS: '16379' });
  await listening(r);
  t.equal(r.err(), '', 'nothing on stderr');
  const c = new Redis({ host: ip, port: 16379, lazyConnect: true, maxRetriesPerRequest: 0 });
  t.teardown(() => c.disconnect());
  await c.connect();
  t.equal(await c.ping(), 'PONG');
  t.equal(await c.set('k', 'v'), 'OK');
  t.equal(await c.get('k'), 'v');
  t.equal(await c.get('missing'), null);
  t.equal(await c.incr('n'), 1);
  t.equal(await c.incrby('n', 41), 42);
  t.equal(await c.rpush('l', 'a', 'b', 'c'), 3);
  t.same(await c.lrange('l', 0, -1), ['a', 'b', 'c']);
  t.equal(await c.hset('h', 'f', '1', 'g', '2'), 2);
  t.same(await c.hgetall('h'), { f: '1', g: '2' });
  t.equal(await c.sadd('s', 'x', 'y', 'x'), 2);
  t.same((await c.smembers('s')).sort(), ['x', 'y']);
  t.same((await c.keys('*')).sort(), ['h', 'k', 'l', 'n', 's']);
  t.equal(await c.set('tmp', '1', 'PX', 50), 'OK');
  t.ok((await c.pttl('tmp')) > 0);
  await new Promise((res) => setTimeout(res, 80));
  t.equal(await c.exists('tmp'), 0, 'expired');
  t.equal(await c.del('k', 'nope'), 1);

  // inline commands, as with telnet / nc
  const sock = net.connect({ host: ip, port: 16379 });
  t.teardown(() => sock.destroy());
  let raw = '';
  sock.on('data', (b) => (raw += b));
  sock.write('PING\r\nECHO hi\r\n');
  await waitFor(() => raw === '+PONG\r\n$2\r\nhi\r\n', 2000, 'inline replies');
  t.pass('inline commands answered');
  r.child.kill('SIGTERM');
  t.equal((await r.exit).code, 0);
});
