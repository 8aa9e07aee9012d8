/**
 * Several daemons on one Redis are one cluster, like several kube-apiservers on one etcd:
 * each serves the API; a write through one is seen (and watched) through the other in
 * resourceVersion order; racing updates of one object give exactly one winner and a 409; two
 * daemons creating Services at once never share a ClusterIP or nodePort.
 */
import t from 'tap';
import https from 'node:https';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ApiClient, daemonApi } from './helpers/api.js';
import { type RunningDaemon, startDaemon } from './helpers/daemon.js';
import { startRedisServer } from './helpers/redis-server.js';
import { waitFor } from './helpers/wait.js';

const common = (redisUrl: string): string[] => [
  '--store', redisUrl,
  '--service-cidr', '127.153.0.0/16',
  '--lb-pool', '127.154.0.0/16',
  '--api-addr', '127.0.0.1:0',
  '--dns-addr', '127.0.0.1:0',
  '--log-level', 'warn',
];

t.test('two daemons, one Redis, one cluster', async (t) => {
  const redis = await startRedisServer();
  t.teardown(() => redis.close());
  const daemons: RunningDaemon[] = [];
  t.teardown(async () => {
    for (const d of daemons.reverse()) await d.stop();
  });
  daemons.push(await startDaemon([...common(redis.url), '--node-name', 'node-a', '--node-ip', '127.0.53.1', '--nodeport-addresses', '127.0.53.1', '--pod-cidr', '127.155.0.0/17']));
  // the second daemon joins with the token the first one made (kept in its state dir)
  const token = (await readFile(join(daemons[0].stateDir, 'join-token'), 'utf8')).trim();
  daemons.push(await startDaemon([...common(redis.url), '--node-name', 'node-b', '--node-ip', '127.0.53.2', '--nodeport-addresses', '127.0.53.2', '--pod-cidr', '127.155.0.0/17', '--join', token]));
  const [a, b] = await Promise.all(daemons.map((d) => daemonApi(d)));

  await t.test('both see both nodes', async (t) => {
    for (const api of [a, b]) {
      const names = await waitFor(async () => {
        const r = await api.kubectl('get', 'nodes', '-o', 'name');
        return r.stdout.includes('node-a') && r.stdout.includes('node-b') ? r.stdout : undefined;
      }, { what: 'both nodes', timeoutMs: 15_000 });
      t.match(names, /node\/node-a[\s\S]*node\/node-b/);
    }
  });

  await t.test('a watch through B delivers writes made through A, in order, none missing', async (t) => {
    const list = (await b.request('GET', '/api/v1/namespaces/default/configmaps')).json<{ metadata: { resourceVersion: string } }>();
    const events = watchNames(b, `/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=${list.metadata.resourceVersion}`);
    t.teardown(() => events.stop());
    const N = 50;
    for (let i = 0; i < N; i++) {
      const r = await a.request('POST', '/api/v1/namespaces/default/configmaps', { body: { metadata: { name: `w-${i}` }, data: { i: String(i) } } });
      if (r.status !== 201) t.fail(`create w-${i}: ${r.status} ${r.body}`);
    }
    const seen = await waitFor(() => (events.got.length >= N ? events.got : undefined), { what: `${N} events through B`, timeoutMs: 15_000 });
    t.same(seen.map((e) => e.name), Array.from({ length: N }, (_, i) => `w-${i}`), 'every write, in the order made');
    const rvs = seen.map((e) => Number(e.rv));
    t.ok(rvs.every((v, i) => i === 0 || v > rvs[i - 1]), 'resourceVersions increase');
    const got = await b.kubectl('get', 'configmap', 'w-49', '-o', 'jsonpath={.data.i}');
    t.equal(got.stdout, '49', 'B reads what A wrote');
  });

  await t.test('racing updates of one object through A and B: every update lands once or gets a 409', async (t) => {
    const r = await a.request('POST', '/api/v1/namespaces/default/configmaps', { body: { metadata: { name: 'counter' }, data: { n: '0' } } });
    t.equal(r.status, 201);
    let ok = 0;
    let conflicts = 0;
    const bump = async (api: ApiClient): Promise<void> => {
      for (let i = 0; i < 25; i++) {
        const cur = (await api.request('GET', '/api/v1/namespaces/default/configmaps/counter')).json<{ metadata: { resourceVersion: string }; data: { n: string } }>();
        const next = { metadata: { name: 'counter', resourceVersion: cur.metadata.resourceVersion }, data: { n: String(Number(cur.data.n) + 1) } };
        const u = await api.request('PUT', '/api/v1/namespaces/default/configmaps/counter', { body: next });
        if (u.status === 200) ok++;
        else if (u.status === 409) conflicts++;
        else t.fail(`unexpected ${u.status}: ${u.body}`);
      }
    };
    await Promise.all([bump(a), bump(b), bump(a), bump(b)]);
    const final = (await b.request('GET', '/api/v1/namespaces/default/configmaps/counter')).json<{ data: { n: string } }>();
    t.equal(Number(final.data.n), ok, `no lost update: ${ok} succeeded, ${conflicts} got 409`);
    t.ok(conflicts > 0, 'the race happened');
  });

  await t.test('Services created through both at once never share a ClusterIP or nodePort', async (t) => {
    const N = 30;
    const create = (api: ApiClient, name: string) =>
      api.request('POST', '/api/v1/namespaces/default/services', {
        body: { metadata: { name }, spec: { type: 'NodePort', selector: { app: name }, ports: [{ port: 80, targetPort: 8080 }] } },
      });
    const replies = await Promise.all(Array.from({ length: N }, (_, i) => create(i % 2 ? a : b, `svc-${i}`)));
    t.same(replies.map((r) => r.status).filter((s) => s !== 201), [], 'every create succeeded');
    const svcs = (await a.request('GET', '/api/v1/namespaces/default/services')).json<{ items: Array<{ metadata: { name: string }; spec: { clusterIP: string; ports: Array<{ nodePort: number }> } }> }>().items.filter((s) => s.metadata.name.startsWith('svc-'));
    t.equal(svcs.length, N);
    t.equal(new Set(svcs.map((s) => s.spec.clusterIP)).size, N, 'distinct ClusterIPs');
    t.equal(new Set(svcs.map((s) => s.spec.ports[0].nodePort)).size, N, 'distinct nodePorts');
  });
  await t.test('controllers run on the Lease holder only; stopping it hands them to the other daemon', async (t) => {
    const apis = [a, b];
    // a daemon's identity: the instance id kept in its state dir (cli/instance-id.ts)
    const ids = await Promise.all(daemons.map(async (d) => (await readFile(join(d.stateDir, 'instance-id'), 'utf8')).trim()));
    const leasePath = '/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kubeloop-controller-manager';
    type Lease = { spec?: { holderIdentity?: string; leaseTransitions?: number } };
    const holder = async (api: ApiClient): Promise<string | undefined> => (await api.request('GET', leasePath)).json<Lease>().spec?.holderIdentity;
    const first = await waitFor(async () => {
      const h = await holder(b);
      return h && ids.includes(h) ? h : undefined;
    }, { what: 'a lease holder', timeoutMs: 15_000 });
    const leader = ids.indexOf(first);
    const standby = 1 - leader;
    const deployment = (name: string) => ({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name },
      spec: { replicas: 0, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'c', image: 'kubeloop/echo' }] } } },
    });
    /** the ReplicaSets a deployment controller made for `name` */
    const replicaSets = async (api: ApiClient, name: string): Promise<number> =>
      (await api.request('GET', `/apis/apps/v1/namespaces/default/replicasets?labelSelector=app%3D${name}`)).json<{ items: unknown[] }>().items.length;
    t.equal((await apis[standby].request('POST', '/apis/apps/v1/namespaces/default/deployments', { body: deployment('before') })).status, 201);
    await waitFor(async () => (await replicaSets(apis[standby], 'before')) === 1, { what: "the leader's deployment controller", timeoutMs: 15_000 });

    await daemons[leader].stop();
    // released on a graceful stop: the standby takes over without waiting out the 15 s lease
    await waitFor(async () => (await holder(apis[standby])) === ids[standby], { what: 'the standby to take the lease', timeoutMs: 10_000 });
    t.equal((await apis[standby].request('POST', '/apis/apps/v1/namespaces/default/deployments', { body: deployment('after') })).status, 201);
    await waitFor(async () => (await replicaSets(apis[standby], 'after')) === 1, { what: "the new leader's deployment controller", timeoutMs: 15_000 });
    t.equal((await apis[standby].request('GET', leasePath)).json<Lease>().spec?.leaseTransitions, 1);
  });
});

/** A raw watch (names and resourceVersions of ADDED events) over the API's TLS credential. */
function watchNames(api: ApiClient, path: string): { got: Array<{ name: string; rv: string }>; stop(): void } {
  const u = new URL(api.server);
  const got: Array<{ name: string; rv: string }> = [];
  let buf = '';
  const req = https.request({ host: u.hostname, port: u.port, path, method: 'GET', ...api.tls }, (res) => {
    res.setEncoding('utf8');
    res.on('data', (c: string) => {
      buf += c;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!line.trim()) continue;
        const ev = JSON.parse(line) as { type: string; object: { metadata: { name: string; resourceVersion: string } } };
        if (ev.type === 'ADDED') got.push({ name: ev.object.metadata.name, rv: ev.object.metadata.resourceVersion });
      }
    });
  });
  req.on('error', () => undefined);
  req.end();
  return { got, stop: () => req.destroy() };
}
