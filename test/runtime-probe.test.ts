import t from 'tap';
import http from 'node:http';
import { getEventListeners } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Container } from '../src/api/types.js';
import { ContainerProber, runProbe, type ProbeTarget } from '../src/agent/runtime/probe.js';
import { type TapT, alive, waitFor } from './runtime-helpers.js';

const IP = `127.252.${Math.floor(Math.random() * 250) + 1}.${Math.floor(Math.random() * 250) + 1}`;

const target = (c: Partial<Container> = {}): ProbeTarget => ({
  podIP: IP,
  container: { name: 'c', ports: [{ name: 'web', containerPort: 18090 }], ...c },
  env: { PATH: process.env.PATH ?? '' },
  cwd: process.cwd(),
});

const listen = async (t: TapT, server: net.Server, port: number): Promise<void> => {
  await new Promise<void>((resolve) => server.listen(port, IP, resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
};

t.test('httpGet: 2xx/3xx pass, others fail; named ports; headers; timeout; loopback only', async (t) => {
  let seen: http.IncomingHttpHeaders = {};
  const server = http.createServer((req, res) => {
    seen = req.headers;
    if (req.url === '/hang') return; // never answers
    const code = Number(req.url!.slice(1)) || 200;
    res.writeHead(code, code === 301 ? { location: '/x' } : {}).end('x');
  });
  await listen(t, server, 18090);
  t.teardown(() => server.closeAllConnections());
  const sig = new AbortController().signal;
  t.match(await runProbe({ httpGet: { port: 'web', path: '/200', httpHeaders: [{ name: 'X-Probe', value: '1' }] } }, target(), sig), { ok: true });
  t.equal(seen['x-probe'], '1');
  t.match(seen['user-agent'], /^kube-probe\//);
  t.match(await runProbe({ httpGet: { port: 18090, path: '/301' } }, target(), sig), { ok: true }, 'redirect counts as success');
  t.match(await runProbe({ httpGet: { port: 18090, path: '/503' } }, target(), sig), { ok: false, message: /statuscode: 503/ });
  t.match(await runProbe({ httpGet: { port: 18090, path: '/hang' }, timeoutSeconds: 1 }, target(), sig), { ok: false, message: /deadline exceeded/ });
  t.match(await runProbe({ httpGet: { port: 'nope' } }, target(), sig), { ok: false, message: /unable to find port "nope"/ });
  t.match(await runProbe({ httpGet: { port: 18090, host: '10.1.2.3' } }, target(), sig), { ok: false, message: /not a loopback address/ });
});

t.test('tcpSocket and grpc', async (t) => {
  const sig = new AbortController().signal;
  const server = net.createServer((s) => s.end());
  await listen(t, server, 18091);
  t.match(await runProbe({ tcpSocket: { port: 18091 } }, target(), sig), { ok: true });
  t.match(await runProbe({ tcpSocket: { port: 18099 } }, target(), sig), { ok: false, message: /ECONNREFUSED/ });
  // a probe leaves nothing on its prober's signal (net.connect's own signal option did: one
  // listener per probe, and MaxListenersExceededWarning on the daemon's terminal after 11)
  const ac = new AbortController();
  for (let i = 0; i < 12; i++) await runProbe({ tcpSocket: { port: i % 2 ? 18091 : 18099 } }, target(), ac.signal);
  t.equal(getEventListeners(ac.signal, 'abort').length, 0, 'no abort listener left after 12 TCP probes');
  ac.abort();
  t.match(await runProbe({ tcpSocket: { port: 18091 } }, target(), ac.signal), { ok: false, message: 'probe cancelled' }, 'an aborted prober does not dial');

  let serving = 1;
  const h2 = http2.createServer();
  h2.on('stream', (stream, headers) => {
    t.equal(headers[':path'], '/grpc.health.v1.Health/Check');
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(Buffer.from([0, 0, 0, 0, 2, 0x08, serving]));
  });
  await listen(t, h2 as unknown as net.Server, 18092);
  t.match(await runProbe({ grpc: { port: 18092 } }, target(), sig), { ok: true });
  serving = 2;
  t.match(await runProbe({ grpc: { port: 18092, service: 'x' } }, target(), sig), { ok: false, message: /NOT_SERVING/ });
});

t.test('exec: exit 0 passes; a probe that overruns is killed with its group', async (t) => {
  const sig = new AbortController().signal;
  t.match(await runProbe({ exec: { command: ['true'] } }, target(), sig), { ok: true });
  t.match(await runProbe({ exec: { command: ['sh', '-c', 'echo nope; exit 4'] } }, target(), sig), { ok: false, message: /exited with 4: nope/ });
  t.match(await runProbe({ exec: { command: ['/no/such'] } }, target(), sig), { ok: false, message: /executable file not found/ });
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-probe-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const pidFile = join(dir, 'pid');
  const r = await runProbe({ exec: { command: ['sh', '-c', `sleep 30 & echo $! > ${pidFile}; wait`] }, timeoutSeconds: 1 }, target(), sig);
  t.match(r, { ok: false, message: /timed out/ });
  const pid = Number(await readFile(pidFile, 'utf8'));
  await waitFor(() => !alive(pid), 2000, 'the probe group is gone');
  t.pass('timed-out exec probe killed its whole group');
});

t.test('prober: startup gates readiness; liveness reports after failureThreshold', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-prober-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const started = join(dir, 'started');
  const events: string[] = [];
  const prober = new ContainerProber(
    target({
      startupProbe: { exec: { command: ['test', '-f', started] }, periodSeconds: 1, failureThreshold: 30 },
      readinessProbe: { exec: { command: ['true'] }, periodSeconds: 1 },
      livenessProbe: { exec: { command: ['test', '!', '-f', join(dir, 'sick')] }, periodSeconds: 1, failureThreshold: 2 },
    }),
    {
      onStarted: () => events.push('started'),
      onReady: (r) => events.push(`ready=${r}`),
      onFailed: (kind) => events.push(`failed:${kind}`),
    },
  );
  t.teardown(() => prober.stop());
  prober.start();
  await new Promise((r) => setTimeout(r, 300));
  t.same(events, [], 'nothing before the startup probe passes');
  await writeFile(started, '');
  await waitFor(() => events.includes('ready=true'), 3000, 'ready after start');
  t.same(events, ['started', 'ready=true']);
  await writeFile(join(dir, 'sick'), '');
  await waitFor(() => events.includes('failed:liveness'), 4000, 'liveness failure');
  t.same(events, ['started', 'ready=true', 'failed:liveness']);
});

t.test('readiness is peeked until its first success: a late server is Ready long before periodSeconds', async (t) => {
  let ready: boolean | undefined;
  let failures = 0;
  const prober = new ContainerProber(target({ readinessProbe: { tcpSocket: { port: 18093 }, periodSeconds: 60 } }), {
    onStarted: () => undefined,
    onReady: (r) => (ready = r),
    onProbeFailure: () => failures++,
    onFailed: () => undefined,
  });
  t.teardown(() => prober.stop());
  prober.start();
  // the server comes up after the first (regular, failing) probe; the next regular one is 60 s away
  await new Promise((r) => setTimeout(r, 150));
  await listen(t, net.createServer((s) => s.end()), 18093);
  await waitFor(() => ready === true, 10_000, 'ready through a peek, not the 60 s period');
  t.equal(ready, true);
  t.equal(failures, 1, 'only the regular probe reported its failure; peeks are silent');
});
