/**
 * Issue 17 close-out, hostile input on the new surfaces (ephemeral containers, exec/attach and
 * port-forward streams, HPA, the Metrics API) against one real daemon: each case must leave the
 * API answering, and bad input gets a Status naming the field.
 */
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import t from 'tap';
import { WebSocket } from 'ws';
import { daemonApi } from './helpers/api.js';
import { startDaemon } from './helpers/daemon.js';
import { waitFor } from './helpers/wait.js';

// a slow start rate (2 a second, bursts of 2) makes the pacing of ephemeral starts measurable
const d = await startDaemon([
  '--pod-cidr', '127.229.0.0/16', '--service-cidr', '127.230.0.0/16', '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0',
  '--metrics-addr=', '--pod-start-rate', '2', '--log-level', 'warn',
]);
t.teardown(() => d.stop());
const api = await daemonApi(d);

/** ms until /readyz answers 200 */
const readyz = async (): Promise<number> => {
  const t0 = Date.now();
  const r = await api.request('GET', '/readyz', { timeoutMs: 60_000 });
  if (r.status !== 200) throw new Error(`readyz ${r.status}`);
  return Date.now() - t0;
};

const runPod = async (name: string): Promise<void> => {
  await api.request('POST', '/api/v1/namespaces/default/pods', {
    body: { apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { containers: [{ name: 'main', image: 'busybox', command: ['sleep', '600'] }] } },
  });
  await waitFor(async () => (await api.request('GET', `/api/v1/namespaces/default/pods/${name}`)).json<{ status?: { phase?: string } }>().status?.phase === 'Running', { timeoutMs: 30_000 });
};

interface EphStatus { name: string; state: { terminated?: { startedAt?: string; reason?: string } } }

t.test('many ephemeral containers in one PATCH start at the node start rate, the API answering meanwhile', async (t) => {
  await runPod('many');
  const n = 12;
  const patch = { spec: { ephemeralContainers: Array.from({ length: n }, (_, i) => ({ name: `e${i}`, image: 'busybox', command: ['true'] })) } };
  const r = await api.request('PATCH', '/api/v1/namespaces/default/pods/many/ephemeralcontainers', {
    body: JSON.stringify(patch),
    headers: { 'Content-Type': 'application/strategic-merge-patch+json' },
  });
  t.equal(r.status, 200, r.status === 200 ? 'PATCH accepted' : r.body);
  const worst: number[] = [];
  const statuses = await waitFor(
    async () => {
      worst.push(await readyz());
      const s = (await api.request('GET', '/api/v1/namespaces/default/pods/many')).json<{ status: { ephemeralContainerStatuses?: EphStatus[] } }>().status.ephemeralContainerStatuses ?? [];
      return s.length === n && s.every((x) => x.state.terminated) ? s : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 250 },
  );
  t.ok(statuses.every((s) => s.state.terminated?.reason === 'Completed'), 'each ran and exited 0');
  const started = statuses.map((s) => Date.parse(s.state.terminated!.startedAt!)).sort((a, b) => a - b);
  // 2 at once, then 2 a second: the 12th starts ≥ 5 s after the first (1 s resolution of startedAt)
  t.ok(started[n - 1] - started[0] >= 4000, `starts spread over ${started[n - 1] - started[0]} ms at --pod-start-rate 2`);
  t.ok(Math.max(...worst) < 5000, `readyz answered within ${Math.max(...worst)} ms while they started`);
});

/** the daemon's resident set in MiB */
const rssMiB = async (): Promise<number> => Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${d.proc.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;

/** a stream subresource over a WebSocket whose socket stops reading at once */
const stalled = async (path: string, protocol: string): Promise<{ ws: WebSocket; got: () => number; resume: () => void }> => {
  const url = `${api.server.replace(/^http/, 'ws')}${path}`;
  const ws = new WebSocket(url, [protocol], { ca: api.tls.ca, cert: api.tls.cert, key: api.tls.key, perMessageDeflate: false });
  let n = 0;
  ws.on('message', (b: Buffer) => (n += b.length));
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const sock = (ws as unknown as { _socket: net.Socket })._socket;
  sock.pause();
  return { ws, got: () => n, resume: () => sock.resume() };
};

t.test('a client that never reads: exec and port-forward output waits, the daemon\'s memory stays bounded', async (t) => {
  await runPod('talker');
  const sender = `import os, socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((os.environ['POD_IP'], 9000)); s.listen(4)
chunk = b'x' * 65536
while True:
    c, _ = s.accept()
    try:
        while True: c.sendall(chunk)
    except OSError:
        c.close()`;
  await api.request('POST', '/api/v1/namespaces/default/pods', {
    body: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'flood' }, spec: { containers: [{ name: 'c', image: 'python', command: ['/usr/bin/python3', '-c', sender], ports: [{ containerPort: 9000 }] }] } },
  });
  const ip = await waitFor(async () => (await api.request('GET', '/api/v1/namespaces/default/pods/flood')).json<{ status?: { podIP?: string } }>().status?.podIP, { timeoutMs: 30_000 });
  // the sender listens
  await waitFor(() => new Promise<boolean>((r) => net.connect(9000, ip).once('connect', function (this: net.Socket) { this.destroy(); r(true); }).once('error', () => r(false))), { timeoutMs: 20_000, intervalMs: 100 });
  const before = await rssMiB();
  const exec = await stalled('/api/v1/namespaces/default/pods/talker/exec?command=yes&stdout=true', 'v5.channel.k8s.io');
  const pf = await stalled('/api/v1/namespaces/default/pods/flood/portforward?ports=9000', 'v4.channel.k8s.io');
  // `yes` and the pod's sender write as fast as they can for 4 s towards clients that read nothing
  await new Promise((r) => setTimeout(r, 4000));
  const grown = (await rssMiB()) - before;
  t.ok(grown < 64, `the daemon grew ${grown.toFixed(0)} MiB (the queues are bounded)`);
  t.ok((await readyz()) < 5000, 'the API answers');
  exec.resume();
  pf.resume();
  const e0 = exec.got();
  const p0 = pf.got();
  await waitFor(() => exec.got() > e0 + (4 << 20) && pf.got() > p0 + (4 << 20), { timeoutMs: 20_000 }).catch((e: Error) => t.fail(`${e.message}: exec ${e0} → ${exec.got()}, port-forward ${p0} → ${pf.got()}`));
  t.pass('both streams flow again once the client reads');
  exec.ws.terminate();
  pf.ws.terminate();
});
