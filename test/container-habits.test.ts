/**
 * Container habits: code written for a container binds all interfaces. Two replicas of a Python
 * http.server bound to ('', 8080): the second dies of EADDRINUSE and gets a Warning event
 * (AddressInUse) and a status message saying to bind $POD_IP; bound to $POD_IP, both run.
 *
 * The daemon runs in a network namespace of this test's own (`unshare --net`, loopback only):
 * binding 0.0.0.0 there reaches no real interface and takes no port from other tests.
 */
import t from 'tap';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addressInUseMessage, findAddressInUse } from '../src/agent/runtime/address-in-use.js';
import { ROOT } from './helpers/daemon.js';
import { waitFor } from './helpers/wait.js';

t.test('EADDRINUSE reports of Python, Node, Go and C programs', async (t) => {
  const cases: Array<[string, string, { address?: string; port?: number } | undefined]> = [
    ['python', 'Traceback (most recent call last):\n  File "app.py", line 9\nOSError: [Errno 98] Address already in use\n', {}],
    ['node', "node:net:1904\nError: listen EADDRINUSE: address already in use 0.0.0.0:8080\n    at Server.setupListenHandle\n{ code: 'EADDRINUSE' }", { address: '0.0.0.0', port: 8080 }],
    ['node ::', 'Error: listen EADDRINUSE: address already in use :::3000', { address: '::', port: 3000 }],
    ['go', '2024/01/01 12:00:00 listen tcp 0.0.0.0:9000: bind: address already in use', { address: '0.0.0.0', port: 9000 }],
    ['go :port', 'listen tcp :9000: bind: address already in use', { address: '', port: 9000 }],
    ['go [::]', 'listen tcp [::]:9000: bind: address already in use', { address: '::', port: 9000 }],
    ['go pod IP', 'listen tcp 127.244.0.5:9000: bind: address already in use', { address: '127.244.0.5', port: 9000 }],
    ['perror', 'bind: Address already in use', {}],
    ['other errors', 'Error: connect ECONNREFUSED 127.0.0.1:6379\nOSError: [Errno 13] Permission denied', undefined],
    ['empty', '', undefined],
  ];
  for (const [name, tail, want] of cases) {
    const got = findAddressInUse(tail);
    if (!want) {
      t.equal(got, undefined, `${name}: nothing found`);
      continue;
    }
    t.same(got && { address: got.address, port: got.port }, { address: want.address, port: want.port }, `${name}: address and port`);
  }
  const wildcard = addressInUseMessage(findAddressInUse('listen tcp :9000: bind: address already in use')!, '127.244.0.5');
  t.match(wildcard, 'bound to all interfaces', 'names the habit');
  t.match(wildcard, '$POD_IP (127.244.0.5):9000', 'and the address to bind');
  const own = addressInUseMessage(findAddressInUse('listen tcp 127.244.0.5:9000: bind: address already in use')!, '127.244.0.5');
  t.match(own, 'another process of this pod already listens on 127.244.0.5:9000', 'the pod IP itself taken: not the wildcard advice');
  t.notMatch(own, 'Bind the pod', 'no advice to bind what it bound');
});

// the container habit, and the fix the message gives
const server = (bind: string): string =>
  `import http.server, os\nclass H(http.server.BaseHTTPRequestHandler):\n  def do_GET(self):\n    self.send_response(200); self.end_headers(); self.wfile.write(os.environ["POD_NAME"].encode())\nhttp.server.HTTPServer((${bind}, 8080), H).serve_forever()\n`;
const deployment = (name: string, bind: string): string => JSON.stringify({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name },
  spec: {
    replicas: 2,
    selector: { matchLabels: { app: name } },
    template: {
      metadata: { labels: { app: name } },
      spec: {
        terminationGracePeriodSeconds: 1,
        containers: [{ name: 'web', image: 'python:3.12-slim', command: ['python3', '-u', '-c', server(bind)], ports: [{ containerPort: 8080 }] }],
      },
    },
  },
});

interface PodJson {
  metadata: { name: string; labels?: Record<string, string> };
  status?: {
    podIP?: string;
    containerStatuses?: Array<{ ready?: boolean; state?: { running?: object; terminated?: { message?: string }; waiting?: { reason?: string } }; lastState?: { terminated?: { message?: string } } }>;
  };
}
interface EventJson {
  type?: string;
  reason?: string;
  message?: string;
  involvedObject?: { name?: string; fieldPath?: string };
}

t.test('two replicas binding 0.0.0.0:8080: the second gets AddressInUse; bound to $POD_IP both run', async (t) => {
  const stateDir = await mkdtemp(join(tmpdir(), 'kubeloop-habits-'));
  const up = [process.execPath, join(ROOT, 'bin', 'kubeloop.mjs'), 'up', '--state-dir', stateDir,
    '--pod-cidr', '127.81.0.0/16', '--service-cidr', '127.82.0.0/16', '--lb-pool', '127.83.0.0/16', '--node-ip', '127.0.81.1', '--nodeport-addresses', '127.0.81.1',
    '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--metrics-addr=', '--crashloop-backoff', '200ms', '--log-level', 'warn'];
  const quoted = up.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  // unshare execs sh, sh execs node: one pid, which gets our signals
  const proc: ChildProcess = spawn('unshare', ['--net', 'sh', '-c', `ip link set lo up && exec ${quoted}`], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise((r) => proc.once('exit', r));
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGINT');
    const kill = setTimeout(() => proc.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(kill);
    await rm(stateDir, { recursive: true, force: true });
  });
  await waitFor(() => out.includes('kubeloop is running') || proc.exitCode !== null, { timeoutMs: 30_000, what: 'up' });
  t.match(out, 'kubeloop is running', `up runs in the namespace:\n${err}`);
  const kubectl = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((res) => execFile('nsenter', [`--net=/proc/${proc.pid}/ns/net`, 'kubectl', '--kubeconfig', join(stateDir, 'kubeconfig'), '--cache-dir', join(stateDir, 'kubectl-cache'), ...args], (e, so, se) => res({ code: e ? ((e as { code?: number }).code ?? 1) : 0, stdout: String(so), stderr: String(se) })));
  const apply = (doc: string) => new Promise<string>((res) => {
    const c = spawn('nsenter', [`--net=/proc/${proc.pid}/ns/net`, 'kubectl', '--kubeconfig', join(stateDir, 'kubeconfig'), '--cache-dir', join(stateDir, 'kubectl-cache'), 'apply', '-f', '-']);
    let o = '';
    c.stdout.on('data', (b: Buffer) => (o += b.toString()));
    c.stderr.on('data', (b: Buffer) => (o += b.toString()));
    c.on('close', () => res(o));
    c.stdin.end(doc);
  });
  const pods = async (app: string): Promise<PodJson[]> => {
    const r = await kubectl('get', 'pods', '-l', `app=${app}`, '-o', 'json');
    return r.code === 0 ? (JSON.parse(r.stdout) as { items: PodJson[] }).items : [];
  };

  t.match(await apply(deployment('habit', "''")), 'deployment.apps/habit created', 'applied the container-style server');
  const events = await waitFor(async () => {
    const r = await kubectl('get', 'events', '--field-selector', 'reason=AddressInUse', '-o', 'json');
    const items = r.code === 0 ? (JSON.parse(r.stdout) as { items: EventJson[] }).items : [];
    return items.length ? items : undefined;
  }, { timeoutMs: 20_000, what: 'an AddressInUse event' });
  const ev = events[0];
  t.equal(ev.type, 'Warning', 'a Warning');
  t.equal(ev.involvedObject?.fieldPath, 'spec.containers{web}', 'about the container');
  const all = await pods('habit');
  const loser = all.find((p) => p.metadata.name === ev.involvedObject?.name);
  const winner = all.find((p) => p !== loser);
  t.ok(loser?.status?.podIP, 'the event names a pod of the Deployment');
  t.match(ev.message, `$POD_IP (${loser?.status?.podIP})`, 'the event says to bind $POD_IP, with the pod IP');
  t.match(ev.message, 'Address already in use', 'and quotes the log line');
  t.match(ev.message, "HTTPServer((os.environ['POD_IP'], <port>)", 'and shows the Python fix');
  const st = await waitFor(async () => {
    const p = (await pods('habit')).find((x) => x.metadata.name === loser?.metadata.name);
    const cs = p?.status?.containerStatuses?.[0];
    return cs?.lastState?.terminated?.message ?? cs?.state?.terminated?.message;
  }, { what: 'the terminated message' });
  t.match(st, `Bind the pod's own address instead: $POD_IP (${loser?.status?.podIP})`, 'the status message says so too');
  t.ok(winner?.status?.containerStatuses?.[0]?.state?.running, 'the other replica runs (it took the port for everyone)');

  // the fix from the message: both replicas run, each on its own address
  await kubectl('delete', 'deployment', 'habit', '--wait=false');
  await waitFor(async () => (await pods('habit')).length === 0, { timeoutMs: 20_000, what: 'habit pods gone' });
  await apply(deployment('fixed', "os.environ['POD_IP']"));
  const fixed = await waitFor(async () => {
    const ps = await pods('fixed');
    return ps.length === 2 && ps.every((p) => p.status?.containerStatuses?.[0]?.ready) ? ps : undefined;
  }, { timeoutMs: 20_000, what: 'both fixed replicas ready' });
  t.equal(new Set(fixed.map((p) => p.status?.podIP)).size, 2, 'two replicas, two addresses, both ready');
  const r = await kubectl('get', 'events', '--field-selector', 'reason=AddressInUse', '-o', 'json');
  const stale = (JSON.parse(r.stdout) as { items: EventJson[] }).items.filter((e) => e.involvedObject?.name?.startsWith('fixed-'));
  t.equal(stale.length, 0, 'no AddressInUse for them');
});
