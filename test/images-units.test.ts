/**
 * The built-in images' less travelled paths: lib.mjs in this process (the cluster resolver as
 * `dns.lookup`, against a small DNS server on loopback), the lifeline pipe, failListen's messages,
 * echo's netexec `/dial`, static's error answers and redis's error replies in spawned images.
 * Every image is stopped by SIGTERM or its lifeline so that it writes its V8 coverage.
 */
import t from 'tap';
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import dgram from 'node:dgram';
import dns from 'node:dns';
import http from 'node:http';
import net from 'node:net';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Packet } from 'dns2';
import { BUILTIN_DIR } from '../src/agent/runtime/images.js';
import { type TapT, waitFor } from './runtime-helpers.js';

const LIB = pathToFileURL(join(BUILTIN_DIR, 'lib.mjs')).href;

let next = Math.floor(Math.random() * 200) * 256;
/** A loopback address of its own for each program (127.250/16: runtime-images uses 127.251/16). */
const freshIP = (): string => {
  next++;
  return `127.250.${(next >> 8) & 255}.${(next & 255) || 1}`;
};

/** A DNS server on loopback answering A queries from `records`, NXDOMAIN otherwise; logs every question. */
async function dnsServer(t: TapT, records: Record<string, string[]>): Promise<{ addr: string; asked: string[] }> {
  const asked: string[] = [];
  const sock = dgram.createSocket('udp4');
  sock.on('message', (msg, rinfo) => {
    let req;
    try {
      req = Packet.parse(msg);
    } catch {
      return;
    }
    const res = Packet.createResponseFromRequest(req);
    const q = req.questions[0];
    const name = q.name.toLowerCase();
    asked.push(`${name}/${q.type === Packet.TYPE.A ? 'A' : q.type}`);
    const ips = q.type === Packet.TYPE.A ? records[name] : undefined;
    if (ips) for (const address of ips) res.answers.push(Packet.createResourceFromQuestion(q, { ttl: 5, address }));
    else if (!Object.keys(records).includes(name)) res.header.rcode = 3; // NXDOMAIN
    sock.send(res.toBuffer(), rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  t.teardown(() => sock.close());
  return { addr: `127.0.0.1:${sock.address().port}`, asked };
}

interface Running {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function start(t: TapT, args: string[], env: Record<string, string>, stdio: StdioOptions = ['ignore', 'pipe', 'pipe']): Running {
  const child = spawn(process.execPath, args, {
    env: { PATH: process.env.PATH ?? '', POD_NAME: 'p1', POD_NAMESPACE: 'ns1', NODE_NAME: 'node-1', ...env },
    stdio,
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => (out += b));
  child.stderr!.on('data', (b: Buffer) => (err += b));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
    await exit;
    clearTimeout(timer);
  });
  return { child, out: () => out, err: () => err, exit };
}

const image = (t: TapT, name: string, env: Record<string, string>, args: string[] = [], stdio?: StdioOptions) =>
  start(t, [join(BUILTIN_DIR, `${name}.mjs`), ...args], env, stdio);

/** A node program importing lib.mjs first, then running `body` (an ES module). */
const script = (t: TapT, body: string, env: Record<string, string> = {}) =>
  start(t, ['--input-type=module', '-e', `import * as lib from ${JSON.stringify(LIB)};\n${body}`], env);

const listening = (r: Running, n = 1) =>
  waitFor(() => (r.out().match(/listening on/g)?.length ?? 0) >= n || r.child.exitCode !== null, 20_000, 'listening');

type Reply = { status: number; body: string; headers: http.IncomingHttpHeaders };
const request = (host: string, port: number, path = '/', method = 'GET'): Promise<Reply> =>
  new Promise((resolve, reject) => {
    http
      .request({ host, port, path, method, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      })
      .on('error', reject)
      .end();
  });

/** Raw exchange on one TCP connection: writes `data`, resolves with what came back once `done` holds. */
async function exchange(t: TapT, host: string, port: number, data: string, done: (s: string) => boolean): Promise<{ raw: string; closed: Promise<void> }> {
  const sock = net.connect({ host, port });
  t.teardown(() => sock.destroy());
  let raw = '';
  sock.setEncoding('latin1');
  sock.on('data', (c: string) => (raw += c));
  const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
  sock.write(data, 'latin1');
  await waitFor(() => done(raw), 3000, `reply to ${JSON.stringify(data)}`);
  return { raw, closed };
}

t.test('the cluster resolver: search list of the namespace, ndots 5, host resolver for the rest', async (t) => {
  const web = freshIP();
  const other = freshIP();
  const { addr, asked } = await dnsServer(t, {
    'web.ns1.svc.cluster.local': [web],
    'db.other.svc.cluster.local': [other, '127.0.0.9'],
    'a.b.c.d.svc.cluster.local': ['127.0.0.7'],
    'empty.ns1.svc.cluster.local': [], // NODATA: the next candidate
    'empty.svc.cluster.local': ['127.0.0.8'],
  });
  const hostLookup = dns.lookup;
  const saved = { dns: process.env.KUBELOOP_DNS, ns: process.env.POD_NAMESPACE };
  process.env.KUBELOOP_DNS = addr;
  process.env.POD_NAMESPACE = 'ns1';
  // the module is evaluated once per process, here first: the resolver is installed on import
  await import(LIB);
  t.teardown(() => {
    dns.lookup = hostLookup;
    if (saved.dns === undefined) delete process.env.KUBELOOP_DNS;
    else process.env.KUBELOOP_DNS = saved.dns;
    if (saved.ns === undefined) delete process.env.POD_NAMESPACE;
    else process.env.POD_NAMESPACE = saved.ns;
  });
  t.not(dns.lookup, hostLookup, 'installed as dns.lookup');

  const lookup = (name: string, options?: dns.LookupOptions | number) =>
    new Promise<{ address: unknown; family?: number }>((resolve, reject) => {
      const cb = (err: Error | null, address: unknown, family?: number) => (err ? reject(err) : resolve({ address, family }));
      if (options === undefined) (dns.lookup as Function)(name, cb);
      else (dns.lookup as Function)(name, options, cb);
    });

  asked.length = 0;
  t.same(await lookup('web'), { address: web, family: 4 }, 'a Service of the own namespace by its short name');
  t.same(asked, ['web.ns1.svc.cluster.local/A'], 'first candidate answered: no more queries');

  asked.length = 0;
  t.same(await lookup('db.other', { all: true }), {
    address: [
      { address: other, family: 4 },
      { address: '127.0.0.9', family: 4 },
    ],
    family: undefined,
  }, 'all: every address');
  t.same(asked, ['db.other.ns1.svc.cluster.local/A', 'db.other.svc.cluster.local/A'], 'search list in order');

  asked.length = 0;
  t.same(await lookup('empty', 4), { address: '127.0.0.8', family: 4 }, 'an empty answer moves on; family as a number');
  t.same(asked, ['empty.ns1.svc.cluster.local/A', 'empty.svc.cluster.local/A']);

  asked.length = 0;
  t.same(await lookup('a.b.c.d.svc.cluster.local'), { address: '127.0.0.7', family: 4 });
  t.same(asked, ['a.b.c.d.svc.cluster.local/A'], '5 dots: the name as given comes first');

  asked.length = 0;
  t.same(await lookup('web.ns1.svc.cluster.local.'), { address: web, family: 4 }, 'fully qualified');
  t.same(asked, ['web.ns1.svc.cluster.local/A'], 'a trailing dot: no search list');

  asked.length = 0;
  t.same(await lookup('127.0.0.5'), { address: '127.0.0.5', family: 4 }, 'an IP literal');
  t.same(await lookup('localhost', { family: 4 }), { address: '127.0.0.1', family: 4 }, 'localhost');
  t.same(asked, [], 'IP literals and localhost never reach the cluster DNS');

  // a name of this machine's /etc/hosts (no network): the cluster knows nowhere it, the host does
  const hostsName = readFileSync('/etc/hosts', 'utf8')
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim().split(/\s+/))
    .find((f) => f.length > 1 && /^127\./.test(f[0]) && f.slice(1).some((n) => n !== 'localhost' && !n.includes('.')));
  if (hostsName) {
    const name = hostsName.slice(1).find((n) => n !== 'localhost' && !n.includes('.'))!;
    asked.length = 0;
    const got = await lookup(name, { family: 4 });
    t.equal(got.address, hostsName[0], `${name}: the host resolver's answer`);
    t.same(asked, [`${name}.ns1.svc.cluster.local/A`, `${name}.svc.cluster.local/A`, `${name}.cluster.local/A`], 'after the whole search list');
    asked.length = 0;
    await lookup(name, { family: 6 }).catch(() => undefined);
    t.same(asked, [], 'IPv6 lookups go to the host resolver alone');
  }

  // what clients see: http.get by a Service name reaches the address the cluster DNS gave
  const server = http.createServer((_req, res) => res.end('via cluster dns'));
  await new Promise<void>((resolve) => server.listen(18090, web, resolve));
  t.teardown(() => server.close());
  t.equal((await request('web', 18090)).body, 'via cluster dns');
});

t.test('lib.mjs in process: parsePorts, flag, podLine', async (t) => {
  const lib = await import(LIB);
  t.same(lib.parsePorts(' 80, 8080,x,0,65536,80,1.5,,443 '), [80, 8080, 443], 'ports only, each once, in order');
  t.same(lib.parsePorts(undefined), []);
  t.equal(lib.flag(['-text=a b', '--listen', ':5678'], 'text'), 'a b');
  t.equal(lib.flag(['-text=a b', '--listen', ':5678'], 'listen'), ':5678');
  t.equal(lib.flag(['--port', '-1'], 'port'), undefined, 'a following flag is not a value');
  t.equal(lib.flag(['--port'], 'port'), undefined, 'no value at the end');
  t.equal(lib.flag(['--portal=1'], 'port'), undefined, 'prefix of another flag');
});

t.test('a KUBELOOP_DNS that is no server address leaves the host resolver in place', async (t) => {
  const r = script(
    t,
    `import dns from 'node:dns';\nconst installed = dns.lookup.toString().includes('candidates');\nprocess.stdout.write(installed ? 'cluster' : 'host');`,
    { KUBELOOP_DNS: 'not a server' },
  );
  t.equal((await r.exit).code, 0, r.err());
  t.equal(r.out(), 'host');
});

t.test('failListen names the fix: privileged port, address in use, anything else', async (t) => {
  const cases: [string, string, string][] = [
    ['EACCES', '127.0.0.1:80', 'img: cannot listen on 127.0.0.1:80: permission denied — ports below 1024 need privilege: run kubeloop with CAP_NET_BIND_SERVICE (or sysctl net.ipv4.ip_unprivileged_port_start=80), or declare a containerPort >= 1024\n'],
    ['EACCES', '127.0.0.1:53/udp', 'img: cannot listen on 127.0.0.1:53/udp: permission denied — ports below 1024 need privilege: run kubeloop with CAP_NET_BIND_SERVICE (or sysctl net.ipv4.ip_unprivileged_port_start=53), or declare a containerPort >= 1024\n'],
    ['EACCES', '127.0.0.1:8080', 'img: cannot listen on 127.0.0.1:8080: boom\n'],
    ['EADDRINUSE', '127.0.0.1:8080', 'img: cannot listen on 127.0.0.1:8080: address already in use\n'],
    ['EADDRNOTAVAIL', '127.0.0.1:8080', 'img: cannot listen on 127.0.0.1:8080: boom\n'],
  ];
  for (const [code, addr, want] of cases) {
    const r = script(t, `lib.failListen('img', ${JSON.stringify(addr)}, Object.assign(new Error('boom'), { code: ${JSON.stringify(code)} }));`);
    t.equal((await r.exit).code, 1, `${code} ${addr}: exit 1`);
    t.equal(r.err(), want);
  }
});

t.test('exitOnSignal: a closable that throws on close does not stop the shutdown', async (t) => {
  const r = script(
    t,
    `lib.exitOnSignal('img', [{ close() { throw new Error('already closed'); } }, { close() { process.stdout.write('second closed\\n'); } }]);\n` +
      `process.stdout.write('ready\\n');\nsetInterval(() => undefined, 1000);`,
  );
  await waitFor(() => r.out().includes('ready'), 20_000, 'ready');
  r.child.kill('SIGINT');
  t.equal((await r.exit).code, 0);
  t.equal(r.out(), 'ready\nimg: received SIGINT, shutting down\nsecond closed\n');
});

t.test('the lifeline: each image exits 0 once the pipe on KUBELOOP_LIFELINE_FD reaches end-of-file', async (t) => {
  for (const [name, port] of [['echo', 18091], ['static', 18092], ['redis', 18093]] as const) {
    const ip = freshIP();
    const r = image(t, name, { POD_IP: ip, KUBELOOP_CONTAINER_PORTS: String(port), KUBELOOP_LIFELINE_FD: '3' }, [], ['ignore', 'pipe', 'pipe', 'pipe']);
    await listening(r);
    await new Promise((res) => setTimeout(res, 50));
    t.equal(r.child.exitCode, null, `${name} runs while the pipe is open`);
    (r.child.stdio[3] as net.Socket).destroy(); // the daemon is gone
    const { code, signal } = await r.exit;
    t.same({ code, signal }, { code: 0, signal: null }, `${name}: exit 0 without any signal`);
    if (name !== 'echo') t.match(r.out(), /received SIGTERM, shutting down/, `${name} shuts down as on SIGTERM`);
  }

  // fd 3 is a regular file, not a pipe (started by hand): nothing to watch, the image serves on
  const file = openSync('/dev/null', 'r');
  t.teardown(() => closeSync(file));
  const ip = freshIP();
  const r = image(t, 'static', { POD_IP: ip, KUBELOOP_CONTAINER_PORTS: '18094', KUBELOOP_LIFELINE_FD: '3' }, [], ['ignore', 'pipe', 'pipe', file]);
  await listening(r);
  t.equal((await request(ip, 18094)).status, 200, 'serves');
  t.equal(r.err(), '');
  r.child.kill('SIGTERM');
  t.equal((await r.exit).code, 0);
});

t.test('echo netexec /dial: GETs another pod by cluster name, every try, errors reported; HEAD', async (t) => {
  const target = freshIP();
  const { addr } = await dnsServer(t, { 'backend.ns1.svc.cluster.local': [target] });
  const b = image(t, 'echo', { POD_IP: target, POD_NAME: 'backend-0' }, ['netexec', '--http-port=18095']);
  const ip = freshIP();
  const n = image(t, 'echo', { POD_IP: ip, KUBELOOP_DNS: addr }, ['netexec', '--http-port=18096', '--udp-port=18097']);
  await listening(b);
  await listening(n, 2);

  const ok = await request(ip, 18096, '/dial?host=backend&port=18095&request=hostname&tries=3&protocol=http');
  t.equal(ok.status, 200);
  t.equal(ok.headers['content-type'], 'application/json');
  t.same(JSON.parse(ok.body), { responses: ['backend-0', 'backend-0', 'backend-0'], errors: [] }, 'three tries, through the cluster DNS');

  const refused = await request(ip, 18096, `/dial?host=${target}&port=18098&request=/x`);
  const body = JSON.parse(refused.body);
  t.same(body.responses, []);
  t.match(body.errors, [/ECONNREFUSED/], 'one try by default; the error as it happened');

  const head = await request(ip, 18096, '/hostname', 'HEAD');
  t.equal(head.status, 200);
  t.equal(head.headers['content-length'], '2');
  t.equal(head.body, '', 'HEAD: headers, no body');

  n.child.kill('SIGTERM');
  t.equal((await n.exit).code, 0, 'UDP and TCP listeners closed, exit 0');
  t.match(n.out(), /received SIGTERM, draining/);
});

t.test('static: 405 for other methods, 400 for a broken path, HEAD without body', async (t) => {
  const ip = freshIP();
  const r = image(t, 'static', { POD_IP: ip, KUBELOOP_CONTAINER_PORTS: '18099' });
  await listening(r);
  const post = await request(ip, 18099, '/', 'POST');
  t.same([post.status, post.body], [405, '405 Method Not Allowed\n']);
  const bad = await request(ip, 18099, '/%E0%A4%A');
  t.same([bad.status, bad.body], [400, '400 Bad Request\n']);
  const head = await request(ip, 18099, '/index.html', 'HEAD');
  t.equal(head.status, 200);
  t.equal(head.body, '');
  t.ok(Number(head.headers['content-length']) > 0, 'the length of the page it would send');
  t.equal(head.headers['x-kubeloop-pod'], 'p1');
  r.child.kill('SIGTERM');
  t.equal((await r.exit).code, 0);
});

t.test('redis: error replies, protocol errors, COMMAND/HELLO/CLIENT, QUIT closes', async (t) => {
  const ip = freshIP();
  const r = image(t, 'redis', { POD_IP: ip }, ['--port', '18100']);
  await listening(r);
  const port = 18100;

  const crlf = (s: string) => s.split('\n').join('\r\n');
  const inline = await exchange(
    t,
    ip,
    port,
    crlf('COMMAND\nHELLO 3\nCLIENT SETNAME x\nCLIENT GETNAME\nFLY me to the moon\nSET s v\nLPUSH s x\nPING hi\n'),
    (s) => s.endsWith('$2\r\nhi\r\n'),
  );
  t.equal(
    inline.raw,
    crlf(
      '*0\n' +
        '-NOPROTO this server speaks RESP2 only\n' +
        '+OK\n' +
        '$-1\n' +
        "-ERR unknown command 'FLY', with args beginning with: 'me' 'to' 'the'\n" +
        '+OK\n' +
        // ioredis-mock's words; a real redis says WRONGTYPE
        '-ERR Key s does not contain a list\n' +
        '$2\nhi\n',
    ),
    'one reply per command, in order',
  );

  const hidden = await exchange(t, ip, port, crlf('DISCONNECT\n_private\n'), (s) => (s.match(/\r\n/g)?.length ?? 0) >= 2);
  t.match(hidden.raw, /^-ERR unknown command 'DISCONNECT'.*\r\n-ERR unknown command '_private'/, "the mock's own methods are no commands");

  // a top-level error reply where a command belongs: answered in its place (after the reply to
  // the command before it), and the connection goes on
  const err = await exchange(t, ip, port, crlf('$4\nPING\n-oops\n*1\n$4\nPING\n'), (s) => (s.match(/\r\n/g)?.length ?? 0) >= 3);
  t.equal(err.raw, '+PONG\r\n-ERR Protocol error: oops\r\n+PONG\r\n', 'replies in request order');

  // an unknown type byte: the parser cannot go on; the replies before it, the error, then the end
  const fatal = await exchange(t, ip, port, crlf('*1\n$4\nPING\n*1\n!bad\nPING\n'), (s) => (s.match(/\r\n/g)?.length ?? 0) >= 2);
  await fatal.closed;
  t.match(fatal.raw, /^\+PONG\r\n-ERR Protocol error: [^\r\n]*"!"[^\r\n]*\r\n$/, 'in order; nothing read after it');

  const quit = await exchange(t, ip, port, crlf('QUIT\nPING\n'), (s) => s.includes('\r\n'));
  await quit.closed;
  t.equal(quit.raw, '+OK\r\n', 'QUIT: +OK, closed, nothing after it');

  r.child.kill('SIGTERM');
  t.equal((await r.exit).code, 0);
});
