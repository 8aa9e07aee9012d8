/**
 * Nodes that join one cluster over a real redis-server (issue 19): two daemons on loopback with
 * their own --node-ip. A daemon without the join token (or with a wrong one) is refused in one
 * line; with it, it joins and takes its own pod CIDR slice; pods spread over both nodes,
 * nodeSelector and DaemonSets place pods per node; kubectl cordon / drain (the eviction API,
 * a PodDisruptionBudget's 429) / uncordon work; a node stopped with Ctrl-C drains and leaves.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ApiClient, daemonApi } from './helpers/api.js';
import { ROOT, type RunningDaemon, startDaemon } from './helpers/daemon.js';
import { startRedisServer } from './helpers/redis-server.js';
import { waitFor } from './helpers/wait.js';

const common = (redisUrl: string): string[] => [
  '--store', redisUrl,
  '--service-cidr', '127.204.0.0/16',
  '--pod-cidr', '127.205.0.0/16',
  '--lb-pool', '127.206.0.0/16',
  '--api-addr', '127.0.0.1:0',
  '--dns-addr', '127.0.0.1:0',
  '--tunnel-port', '0',
  '--log-level', 'warn',
  '--ready-timeout', '1s',
];
const node = (name: string, ip: string): string[] => ['--node-name', name, '--node-ip', ip, '--nodeport-addresses', ip];

type PodList = { items: Array<{ metadata: { name: string; labels?: Record<string, string>; deletionTimestamp?: string }; spec: { nodeName?: string }; status?: { conditions?: Array<{ type: string; status: string }> } }> };
const ready = (p: PodList['items'][number]) => !p.metadata.deletionTimestamp && (p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false);

async function podsOf(api: ApiClient, selector: string): Promise<PodList['items']> {
  return (await api.request('GET', `/api/v1/namespaces/default/pods?labelSelector=${encodeURIComponent(selector)}`)).json<PodList>().items;
}

const perNode = (pods: PodList['items']): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const p of pods) out[p.spec.nodeName ?? '-'] = (out[p.spec.nodeName ?? '-'] ?? 0) + 1;
  return out;
};

/** `kubeloop up` that is expected to exit at once: its exit code and stderr */
function upRefused(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [join(ROOT, 'bin', 'kubeloop.mjs'), 'up', ...args], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
    let err = '';
    p.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
    const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr: err });
    });
  });
}

t.test('nodes join, spread, cordon, drain and leave', async (t) => {
  const redis = await startRedisServer();
  t.teardown(() => redis.close());
  const daemons: RunningDaemon[] = [];
  t.teardown(async () => {
    for (const d of daemons.reverse()) await d.stop();
  });
  const a = await startDaemon([...common(redis.url), ...node('jn-a', '127.207.0.1')]);
  daemons.push(a);

  await t.test('the first daemon prints the join token once, with the command for the next machine', async (t) => {
    const token = (await readFile(join(a.stateDir, 'join-token'), 'utf8')).trim();
    t.match(token, /^[\w-]{32}$/);
    // the token goes in the environment (ps shows argv to every local user, not the environment)
    t.match(a.stdout(), new RegExp(`KUBELOOP_JOIN_TOKEN=${token} npx kubeloop up --store ${redis.url.replace(/[/.]/g, '\\$&')} --node-ip <an address of that machine>$`, 'm'));
    t.equal(a.stdout().split(token).length - 1, 1, 'shown once');
    const api = await daemonApi(a);
    const secret = (await api.request('GET', '/api/v1/namespaces/kube-system/secrets/kubeloop-join')).json<{ data: Record<string, string> }>();
    t.notOk(JSON.stringify(secret).includes(token), 'the store holds only the hash');
  });

  await t.test('a daemon without the token, or with a wrong one, is refused in one line', async (t) => {
    for (const extra of [[], ['--join', 'not-the-token-at-all']]) {
      const r = await upRefused(['--state-dir', join(a.stateDir, `refused-${extra.length}`), '--metrics-addr', '127.0.0.1:0', ...common(redis.url), ...node('jn-x', '127.207.0.9'), ...extra]);
      t.equal(r.code, 1);
      const lines = r.stderr.trim().split('\n').filter((l) => l.startsWith('kubeloop:'));
      t.equal(lines.length, 1, r.stderr);
      t.match(lines[0], extra.length ? /is not this cluster's: pass --join/ : /holds a cluster already: add --join TOKEN/);
    }
    const api = await daemonApi(a);
    t.equal((await api.request('GET', '/api/v1/nodes/jn-x')).status, 404, 'the refused daemon registered nothing');
  });

  const token = (await readFile(join(a.stateDir, 'join-token'), 'utf8')).trim();
  const b = await startDaemon([...common(redis.url), ...node('jn-b', '127.207.0.2'), '--join', token]);
  daemons.push(b);
  const api = await daemonApi(a);

  await t.test('joined: distinct pod CIDR slices, real INTERNAL-IPs, node leases', async (t) => {
    const nodes = await waitFor(async () => {
      const r = await api.request('GET', '/api/v1/nodes');
      const items = r.json<{ items: Array<{ metadata: { name: string }; spec: { podCIDR?: string }; status: { addresses: Array<{ type: string; address: string }>; conditions: Array<{ type: string; status: string }> } }> }>().items;
      return items.length === 2 && items.every((n) => n.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) ? items : undefined;
    }, { what: 'two Ready nodes', timeoutMs: 15_000 });
    const cidrs = nodes.map((n) => n.spec.podCIDR);
    t.equal(new Set(cidrs).size, 2, `distinct slices: ${cidrs.join(' ')}`);
    for (const c of cidrs) t.match(c, /^127\.205\.\d+\.0\/24$/);
    const wide = await api.kubectl('get', 'nodes', '-o', 'wide', '--no-headers');
    t.match(wide.stdout, /jn-a\s+Ready\s+\S+\s+\S+\s+\S+\s+127\.207\.0\.1\s/);
    t.match(wide.stdout, /jn-b\s+Ready\s+\S+\s+\S+\s+\S+\s+127\.207\.0\.2\s/);
    const leases = await api.kubectl('get', 'leases', '-n', 'kube-node-lease', '-o', 'name');
    t.match(leases.stdout, /lease.coordination.k8s.io\/jn-a[\s\S]*jn-b/);
    const dns = (await api.request('GET', '/api/v1/namespaces/kube-system/endpoints/kube-dns')).json<{ subsets: Array<{ addresses?: Array<{ nodeName?: string }> }> }>();
    t.same(dns.subsets.flatMap((s) => s.addresses ?? []).map((x) => x.nodeName).sort(), ['jn-a', 'jn-b'], "kube-dns lists each node's DNS server");
  });

  await t.test('pods spread by count; nodeSelector and DaemonSets place pods per node', async (t) => {
    const manifest = `
apiVersion: apps/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 4
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec: { containers: [{ name: echo, image: kubeloop/echo, ports: [{ containerPort: 8080 }] }] }
---
apiVersion: apps/v1
kind: DaemonSet
metadata: { name: agent }
spec:
  selector: { matchLabels: { app: agent } }
  template:
    metadata: { labels: { app: agent } }
    spec: { containers: [{ name: echo, image: kubeloop/echo, ports: [{ containerPort: 8081 }] }] }
---
apiVersion: v1
kind: Pod
metadata: { name: pinned, labels: { app: pinned } }
spec:
  nodeSelector: { kubernetes.io/hostname: jn-b }
  containers: [{ name: echo, image: kubeloop/echo, ports: [{ containerPort: 8082 }] }]
`;
    const applied = await applyStdin(api, manifest);
    t.equal(applied.code, 0, applied.stderr);
    const web = await waitFor(async () => {
      const p = await podsOf(api, 'app=web');
      return p.length === 4 && p.every(ready) ? p : undefined;
    }, { what: '4 ready web pods', timeoutMs: 30_000 });
    t.same(perNode(web), { 'jn-a': 2, 'jn-b': 2 }, 'two per node');
    const agents = await waitFor(async () => {
      const p = await podsOf(api, 'app=agent');
      return p.length === 2 && p.every(ready) ? p : undefined;
    }, { what: 'a ready DaemonSet pod per node', timeoutMs: 30_000 });
    t.same(perNode(agents), { 'jn-a': 1, 'jn-b': 1 });
    const pinned = await waitFor(async () => (await podsOf(api, 'app=pinned')).find(ready), { what: 'the pinned pod', timeoutMs: 20_000 });
    t.equal(pinned.spec.nodeName, 'jn-b');
    // pods of each node got addresses of that node's slice
    const nodes = (await api.request('GET', '/api/v1/nodes')).json<{ items: Array<{ metadata: { name: string }; spec: { podCIDR: string } }> }>().items;
    const ips = (await api.request('GET', '/api/v1/namespaces/default/pods')).json<{ items: Array<{ spec: { nodeName: string }; status: { podIP?: string } }> }>().items;
    for (const p of ips) {
      const slice = nodes.find((n) => n.metadata.name === p.spec.nodeName)!.spec.podCIDR.split('.').slice(0, 3).join('.') + '.';
      t.ok(p.status.podIP?.startsWith(slice), `${p.status.podIP} in ${slice}0/24 of ${p.spec.nodeName}`);
    }
  });

  await t.test('kubectl cordon, drain (eviction API; a PodDisruptionBudget holds it), uncordon', async (t) => {
    const cordon = await api.kubectl('cordon', 'jn-b');
    t.equal(cordon.code, 0, cordon.stderr);
    t.match(cordon.stdout, /node\/jn-b cordoned/);
    t.match((await api.kubectl('get', 'node', 'jn-b', '--no-headers')).stdout, /Ready,SchedulingDisabled/);

    // a budget that allows no disruption of the pinned pod: drain is refused with 429 and gives up
    const pdb = await applyStdin(api, 'apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: { name: pinned }\nspec: { minAvailable: 1, selector: { matchLabels: { app: pinned } } }\n');
    t.equal(pdb.code, 0, pdb.stderr);
    const blocked = await api.kubectl('drain', 'jn-b', '--ignore-daemonsets', '--force', '--timeout', '4s');
    t.not(blocked.code, 0);
    t.match(blocked.stdout + blocked.stderr, /Cannot evict pod as it would violate the pod's disruption budget/);
    t.match(blocked.stdout, /evicting pod default\/web-/, 'the pods without a budget were evicted meanwhile');
    t.ok((await podsOf(api, 'app=pinned')).some(ready), 'the budgeted pod is still there');
    t.equal((await api.kubectl('delete', 'pdb', 'pinned')).code, 0);

    const started = Date.now();
    const drain = await api.kubectl('drain', 'jn-b', '--ignore-daemonsets', '--force', '--timeout', '60s');
    t.equal(drain.code, 0, drain.stderr);
    t.match(drain.stdout, /pod\/pinned evicted/);
    t.match(drain.stdout, /node\/jn-b drained/);
    t.comment(`kubectl drain took ${Date.now() - started} ms`);
    const web = await waitFor(async () => {
      const p = await podsOf(api, 'app=web');
      return p.length === 4 && p.every(ready) && p.every((x) => x.spec.nodeName === 'jn-a') ? p : undefined;
    }, { what: 'all web pods ready on jn-a', timeoutMs: 30_000 });
    t.same(perNode(web), { 'jn-a': 4 });
    t.same(perNode(await podsOf(api, 'app=agent')), { 'jn-a': 1, 'jn-b': 1 }, 'the DaemonSet pod stays (--ignore-daemonsets)');

    const un = await api.kubectl('uncordon', 'jn-b');
    t.equal(un.code, 0, un.stderr);
    t.match(un.stdout, /node\/jn-b uncordoned/);
    t.equal((await api.kubectl('scale', 'deploy/web', '--replicas', '6')).code, 0);
    const more = await waitFor(async () => {
      const p = await podsOf(api, 'app=web');
      return p.length === 6 && p.every(ready) ? p : undefined;
    }, { what: '6 ready web pods', timeoutMs: 30_000 });
    t.same(perNode(more), { 'jn-a': 4, 'jn-b': 2 }, 'new pods go to the uncordoned, emptier node');
  });

  await t.test('Ctrl-C on a joined node: it drains, deletes its Node and releases its slice', async (t) => {
    const before = (await api.request('GET', '/api/v1/nodes/jn-b')).json<{ spec: { podCIDR: string } }>().spec.podCIDR;
    // SIGINT without the helper's sweep: that one ends every pod of the shared pod range, the other node's too
    b.proc.kill('SIGINT');
    const code = await new Promise<number | null>((r) => (b.proc.exitCode !== null ? r(b.proc.exitCode) : b.proc.once('exit', (c) => r(c))));
    t.equal(code, 0);
    t.equal((await api.request('GET', '/api/v1/nodes/jn-b')).status, 404, 'Node deleted');
    t.equal((await api.request('GET', '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/jn-b')).status, 404, 'Lease deleted');
    const web = await waitFor(async () => {
      const p = await podsOf(api, 'app=web');
      return p.length === 6 && p.every(ready) ? p : undefined;
    }, { what: 'all 6 web pods ready', timeoutMs: 30_000 });
    t.same(perNode(web), { 'jn-a': 6 });
    t.same(perNode(await podsOf(api, 'app=agent')), { 'jn-a': 1 }, "the leaving node's DaemonSet pod is gone");
    const dns = (await api.request('GET', '/api/v1/namespaces/kube-system/endpoints/kube-dns')).json<{ subsets: Array<{ addresses?: Array<{ nodeName?: string }> }> }>();
    t.same(dns.subsets.flatMap((s) => s.addresses ?? []).map((x) => x.nodeName), ['jn-a'], 'kube-dns no longer lists the node');
    // its slice is free again: a node joining now gets it
    const c = await startDaemon([...common(redis.url), ...node('jn-c', '127.207.0.3'), '--join', token]);
    daemons.push(c);
    const got = await waitFor(async () => (await api.request('GET', '/api/v1/nodes/jn-c')).json<{ spec?: { podCIDR?: string } }>().spec?.podCIDR, { what: 'jn-c slice', timeoutMs: 10_000 });
    t.equal(got, before, 'the released slice is handed out again');
  });
});

function applyStdin(api: ApiClient, yaml: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn('kubectl', ['--kubeconfig', api.kubeconfig, 'apply', '-f', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    p.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
    p.on('exit', (code) => resolve({ code: code ?? -1, stdout: out, stderr: err }));
    p.stdin.end(yaml);
  });
}
