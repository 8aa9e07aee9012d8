/**
 * A host dies (issue 19 item 5): two network namespaces as hosts, a real redis-server in host 1,
 * a daemon in each with short lease flags. A client in host 1 keeps sending through a ClusterIP
 * while host 2's daemon is SIGKILLed: host 2 turns NotReady with the unreachable taints, its
 * pods leave the endpoints and are replaced on host 1, and the client's failures stop; host 2's
 * daemon started again rejoins Ready. The timeline and the failed-request count are printed.
 * A LoadBalancer Service's ingress (the Ready nodes' addresses) drops host 2 while it is
 * NotReady and lists it again once it is back.
 */
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type RunningDaemon, startDaemon } from './helpers/daemon.js';
import { type NetnsHost, startNetnsHosts } from './helpers/netns-hosts.js';
import { waitFor } from './helpers/wait.js';

const GRACE_MS = 3000;
const EVICT_MS = 2000;
const MANIFEST = `
apiVersion: apps/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 4
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec: { containers: [{ name: echo, image: echo, ports: [{ containerPort: 8080 }] }] }
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec: { selector: { app: web }, ports: [{ port: 80, targetPort: 8080 }] }
---
apiVersion: v1
kind: Service
metadata: { name: web-lb }
spec: { type: LoadBalancer, selector: { app: web }, ports: [{ port: 8212, targetPort: 8080 }] }
`;

type Pod = { metadata: { name: string; deletionTimestamp?: string }; spec: { nodeName?: string }; status: { podIP?: string; conditions?: Array<{ type: string; status: string }> } };
type NodeObj = { spec?: { taints?: unknown[] }; status?: { conditions?: Array<{ type: string; status: string }> } };

t.test('a host killed while a client sends through a ClusterIP: NotReady, pods replaced, failures stop, rejoin', async (t) => {
  const lan = await startNetnsHosts(t, { hosts: 2, redis: true });
  const [h1, h2] = lan.hosts;
  const daemons: RunningDaemon[] = [];
  t.teardown(async () => {
    for (const d of daemons.reverse()) await d.stop();
  });
  const common = [
    '--store', lan.redisUrl!, '--service-cidr', '127.212.0.0/16', '--pod-cidr', '127.213.0.0/16', '--lb-pool', '127.214.0.0/16',
    '--api-addr', '127.0.0.1:6443', '--dns-addr', '127.0.0.1:1053', '--log-level', 'warn', '--ready-timeout', '1s',
    '--node-lease-interval', '500ms', '--node-monitor-grace-period', `${GRACE_MS}ms`, '--pod-eviction-timeout', `${EVICT_MS}ms`,
  ];
  const up = (h: NetnsHost, i: number, extra: string[] = [], stateDir?: string) =>
    startDaemon([...common, '--node-name', `host-${i + 1}`, '--node-ip', h.ip, ...extra], { prefix: h.wrap([]), timeoutMs: 60_000, stateDir });
  const d1 = await up(h1, 0);
  daemons.push(d1);
  const token = (await readFile(join(d1.stateDir, 'join-token'), 'utf8')).trim();
  let d2 = await up(h2, 1, ['--join', token]);
  daemons.push(d2);
  const kubectl = (...args: string[]) => h1.run(['kubectl', '--kubeconfig', join(d1.stateDir, 'kubeconfig'), ...args]);
  const json = async <T>(...args: string[]): Promise<T> => JSON.parse((await kubectl(...args, '-o', 'json')).stdout || '{}') as T;

  t.equal((await h1.run(['kubectl', '--kubeconfig', join(d1.stateDir, 'kubeconfig'), 'apply', '-f', '-'], { input: MANIFEST })).code, 0);
  const ready = (p: Pod) => !p.metadata.deletionTimestamp && (p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false);
  const pods = async () => (await json<{ items?: Pod[] }>('get', 'pods', '-l', 'app=web')).items ?? [];
  const before = await waitFor(async () => {
    const p = await pods();
    return p.length === 4 && p.every(ready) ? p : undefined;
  }, { what: '4 ready pods', timeoutMs: 60_000, intervalMs: 300 });
  t.equal(before.filter((p) => p.spec.nodeName === 'host-2').length, 2, 'two pods on host 2');
  const clusterIP = (await json<{ spec: { clusterIP: string } }>('get', 'service', 'web')).spec.clusterIP;
  const ingress = async () => (await kubectl('get', 'service', 'web-lb', '-o', 'jsonpath={.status.loadBalancer.ingress[*].ip}')).stdout.trim();
  await waitFor(async () => (await ingress()) === `${h1.ip} ${h2.ip}`, { what: 'web-lb ingress: both hosts', timeoutMs: 15_000, intervalMs: 200 });

  // the client: one short request after another from host 1, each logged with its time and outcome
  const client = h1.spawn(['sh', '-c', `while :; do if curl -s -o /dev/null --max-time 1 http://${clusterIP}/; then echo "ok $(date +%s%3N)"; else echo "fail $(date +%s%3N)"; fi; sleep 0.05; done`], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => void client.kill('SIGKILL'));
  let log = '';
  client.stdout!.setEncoding('utf8').on('data', (c: string) => (log += c));
  const results = () => log.trim().split('\n').filter(Boolean).map((l) => ({ ok: l.startsWith('ok'), at: Number(l.split(' ')[1]) }));
  await waitFor(() => results().filter((r) => r.ok).length >= 10, { what: 'the client to get answers', timeoutMs: 15_000, intervalMs: 100 });
  t.equal(results().filter((r) => !r.ok).length, 0, 'no failure before the kill');

  const host2PodIP = before.find((p) => p.spec.nodeName === 'host-2')!.status.podIP!;
  const killedAt = Date.now();
  d2.proc.kill('SIGKILL');
  // host 1 learns at once that host 2's tunnel is gone: host 2's pod IPs are refused there (curl
  // exit 7), not accepted and reset, so the proxy's dial retry moves on to host 1's pods
  await waitFor(async () => (await h1.run(['curl', '-s', '--max-time', '2', `http://${host2PodIP}:8080/`])).code === 7, { what: `${host2PodIP}:8080 refused on host 1`, timeoutMs: 10_000, intervalMs: 50 });
  const refusedMs = Date.now() - killedAt;
  await waitFor(async () => {
    const n = await json<NodeObj>('get', 'node', 'host-2');
    return n.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'Unknown' && (n.spec?.taints ?? []).length === 2;
  }, { what: 'host-2 NotReady with taints', timeoutMs: GRACE_MS + 15_000, intervalMs: 100 });
  const notReadyMs = Date.now() - killedAt;
  await waitFor(async () => (await ingress()) === h1.ip, { what: 'web-lb ingress without the NotReady host 2', timeoutMs: 10_000, intervalMs: 100 });
  t.pass(`host 2 left web-lb's ingress once NotReady (${h1.ip} only)`);
  await waitFor(async () => {
    const p = await pods();
    return p.length === 4 && p.every(ready) && p.every((x) => x.spec.nodeName === 'host-1');
  }, { what: '4 ready pods on host 1', timeoutMs: EVICT_MS + 40_000, intervalMs: 100 });
  const replacedMs = Date.now() - killedAt;
  // let the client run a little longer on the new endpoints
  const settleFrom = Date.now();
  await waitFor(() => results().filter((r) => r.at > settleFrom && r.ok).length >= 20, { what: '20 answers after the replacement', timeoutMs: 20_000, intervalMs: 100 });
  const all = results();
  const failures = all.filter((r) => !r.ok && r.at >= killedAt);
  const lastFailMs = failures.length ? failures[failures.length - 1].at - killedAt : 0;
  t.equal(all.filter((r) => r.at > settleFrom && !r.ok).length, 0, 'no failure once the pods were replaced');
  t.ok(lastFailMs <= replacedMs + 1000, `the failures stopped by the replacement (last at ${lastFailMs} ms)`);

  const restartAt = Date.now();
  d2 = await up(h2, 1, ['--join', token], d2.stateDir);
  daemons[1] = d2;
  await waitFor(async () => {
    const n = await json<NodeObj>('get', 'node', 'host-2');
    return n.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True' && !(n.spec?.taints ?? []).length;
  }, { what: 'host-2 Ready again without taints', timeoutMs: 30_000, intervalMs: 200 });
  const rejoinMs = Date.now() - restartAt;
  await waitFor(async () => (await ingress()) === `${h1.ip} ${h2.ip}`, { what: 'web-lb ingress with host 2 again', timeoutMs: 15_000, intervalMs: 200 });
  t.pass('host 2 back in the ingress once Ready');
  const back = await waitFor(async () => {
    const r = await h1.run(['curl', '-s', '--max-time', '3', `http://${h2.ip}:8212/`]);
    return /pod=web-/.test(r.stdout) ? r.stdout : undefined;
  }, { what: `${h2.ip}:8212 from host 1`, timeoutMs: 15_000, intervalMs: 200 });
  t.match(back, /pod=web-/, "the restarted host's address serves the load balancer again");
  t.comment(
    `timeline: kill → host 2's pod IPs refused on host 1 ${refusedMs} ms; → NotReady ${notReadyMs} ms (grace ${GRACE_MS}); → 4 pods Ready on host 1 ${replacedMs} ms (eviction ${EVICT_MS}); last failed request ${lastFailMs} ms; ` +
      `${failures.length} failed of ${all.filter((r) => r.at >= killedAt).length} requests after the kill; restart → Ready ${rejoinMs} ms`,
  );
});
