/**
 * A node that dies (issue 19): two daemons on one real redis-server, short lease flags. SIGKILL
 * the daemon of node B → within the grace period B is NotReady (Ready=Unknown, "Kubelet stopped
 * posting node status.") with the unreachable NoSchedule/NoExecute taints, its pods leave the
 * Service's endpoints, and after the eviction timeout they are deleted and their Deployment's
 * replacements run Ready on A; B started again (same state dir) rejoins Ready and loses its
 * taints. The timeline is printed.
 */
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ApiClient, daemonApi } from './helpers/api.js';
import { type RunningDaemon, startDaemon } from './helpers/daemon.js';
import { startRedisServer } from './helpers/redis-server.js';
import { waitFor } from './helpers/wait.js';

const GRACE_MS = 3000;
const EVICT_MS = 2000;
const common = (redisUrl: string): string[] => [
  '--store', redisUrl,
  '--service-cidr', '127.208.0.0/16',
  '--pod-cidr', '127.209.0.0/16',
  '--lb-pool', '127.210.0.0/16',
  '--api-addr', '127.0.0.1:0',
  '--dns-addr', '127.0.0.1:0',
  '--tunnel-port', '0',
  '--log-level', 'warn',
  '--ready-timeout', '1s',
  '--node-lease-interval', '500ms',
  '--node-monitor-grace-period', `${GRACE_MS}ms`,
  '--pod-eviction-timeout', `${EVICT_MS}ms`,
];
const nodeB = ['--node-name', 'fo-b', '--node-ip', '127.211.0.2', '--nodeport-addresses', '127.211.0.2'];

type Pod = { metadata: { name: string; deletionTimestamp?: string }; spec: { nodeName?: string }; status?: { podIP?: string; conditions?: Array<{ type: string; status: string }> } };
type NodeObj = { spec?: { taints?: Array<{ key: string; effect: string }> }; status?: { conditions?: Array<{ type: string; status: string; reason?: string; message?: string }> } };
const ready = (p: Pod) => !p.metadata.deletionTimestamp && (p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false);
const webPods = async (api: ApiClient): Promise<Pod[]> => (await api.request('GET', '/api/v1/namespaces/default/pods?labelSelector=app%3Dweb')).json<{ items: Pod[] }>().items;
const getNode = async (api: ApiClient, name: string): Promise<NodeObj> => (await api.request('GET', `/api/v1/nodes/${name}`)).json<NodeObj>();
const nodeReady = (n: NodeObj) => n.status?.conditions?.find((c) => c.type === 'Ready');

t.test('a node killed: NotReady and tainted within the grace period, its pods recreated on the other node, rejoins', async (t) => {
  const redis = await startRedisServer();
  t.teardown(() => redis.close());
  const daemons: RunningDaemon[] = [];
  t.teardown(async () => {
    for (const d of daemons.reverse()) await d.stop();
  });
  // A first: it creates the cluster and holds the controllers' lease, so killing B leaves them running
  const a = await startDaemon([...common(redis.url), '--node-name', 'fo-a', '--node-ip', '127.211.0.1', '--nodeport-addresses', '127.211.0.1']);
  daemons.push(a);
  const token = (await readFile(join(a.stateDir, 'join-token'), 'utf8')).trim();
  let b = await startDaemon([...common(redis.url), ...nodeB, '--join', token]);
  daemons.push(b);
  const api = await daemonApi(a);

  const r = await api.request('POST', '/apis/apps/v1/namespaces/default/deployments', {
    body: {
      metadata: { name: 'web' },
      spec: { replicas: 4, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'echo', image: 'kubeloop/echo', ports: [{ containerPort: 8080 }] }] } } },
    },
  });
  t.equal(r.status, 201, r.body);
  t.equal((await api.request('POST', '/api/v1/namespaces/default/services', { body: { metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] } } })).status, 201);
  const before = await waitFor(async () => {
    const p = await webPods(api);
    return p.length === 4 && p.every(ready) ? p : undefined;
  }, { what: '4 ready pods', timeoutMs: 30_000 });
  const onB = before.filter((p) => p.spec.nodeName === 'fo-b');
  t.equal(onB.length, 2, 'two pods on fo-b');

  const killedAt = Date.now();
  b.proc.kill('SIGKILL');
  const notReady = await waitFor(async () => {
    const n = await getNode(api, 'fo-b');
    const c = nodeReady(n);
    const keys = (n.spec?.taints ?? []).map((x) => `${x.key}:${x.effect}`).sort();
    return c?.status === 'Unknown' && keys.length === 2 ? { c, keys } : undefined;
  }, { what: 'fo-b NotReady with taints', timeoutMs: GRACE_MS + 10_000, intervalMs: 50 });
  const notReadyMs = Date.now() - killedAt;
  t.equal(notReady.c.reason, 'NodeStatusUnknown');
  t.equal(notReady.c.message, 'Kubelet stopped posting node status.');
  t.same(notReady.keys, ['node.kubernetes.io/unreachable:NoExecute', 'node.kubernetes.io/unreachable:NoSchedule']);
  t.ok(notReadyMs >= GRACE_MS - 600, `not before the grace period (${notReadyMs} ms)`);
  t.ok(notReadyMs < GRACE_MS + 4000, `within the grace period and a lease interval or so (${notReadyMs} ms)`);
  t.match((await api.kubectl('get', 'node', 'fo-b', '--no-headers')).stdout, /fo-b\s+NotReady/);

  // its pods leave the Service at once (Ready=False), before they are evicted
  const eps = await waitFor(async () => {
    const e = (await api.request('GET', '/api/v1/namespaces/default/endpoints/web')).json<{ subsets?: Array<{ addresses?: Array<{ ip: string }> }> }>();
    const ips = (e.subsets ?? []).flatMap((s) => s.addresses ?? []).map((x) => x.ip);
    return onB.every((p) => !ips.includes(p.status!.podIP!)) ? ips : undefined;
  }, { what: "fo-b's pods out of the endpoints", timeoutMs: 5000, intervalMs: 50 });
  t.ok(eps.length >= 2, "fo-a's pods still serve");

  const after = await waitFor(async () => {
    const p = await webPods(api);
    return p.length === 4 && p.every(ready) && p.every((x) => x.spec.nodeName === 'fo-a') ? p : undefined;
  }, { what: '4 ready pods on fo-a', timeoutMs: EVICT_MS + 30_000, intervalMs: 50 });
  const replacedMs = Date.now() - killedAt;
  t.equal(after.filter((p) => onB.some((o) => o.metadata.name === p.metadata.name)).length, 0, "fo-b's pods were replaced");
  const events = await api.kubectl('get', 'events', '--field-selector', 'reason=TaintManagerEviction', '-o', 'name');
  t.ok(events.stdout.trim().split('\n').length >= 2, 'TaintManagerEviction events');

  // B comes back on the same state dir: Ready again, taints gone
  const restartAt = Date.now();
  b = await startDaemon([...common(redis.url), ...nodeB, '--join', token], { stateDir: b.stateDir });
  daemons[1] = b;
  await waitFor(async () => {
    const n = await getNode(api, 'fo-b');
    return nodeReady(n)?.status === 'True' && !(n.spec?.taints ?? []).length;
  }, { what: 'fo-b Ready without taints', timeoutMs: 20_000, intervalMs: 50 });
  const rejoinMs = Date.now() - restartAt;
  t.match((await api.kubectl('get', 'node', 'fo-b', '--no-headers')).stdout, /fo-b\s+Ready\s/);
  t.comment(`timeline: kill → NotReady+taints ${notReadyMs} ms (grace ${GRACE_MS} ms); kill → all 4 pods Ready on fo-a ${replacedMs} ms (eviction timeout ${EVICT_MS} ms); restart → Ready ${rejoinMs} ms`);
  // new pods may use it again
  t.equal((await api.kubectl('scale', 'deploy/web', '--replicas', '6')).code, 0);
  const six = await waitFor(async () => {
    const p = await webPods(api);
    return p.length === 6 && p.every(ready) ? p : undefined;
  }, { what: '6 ready pods', timeoutMs: 30_000 });
  t.equal(six.filter((p) => p.spec.nodeName === 'fo-b').length, 2, 'the new pods go to the rejoined node');
});
