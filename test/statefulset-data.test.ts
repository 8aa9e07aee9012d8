import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { promises as dnsp } from 'node:dns';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Pod, Service, StatefulSet, Stored } from '../src/api/types.js';
import { DnsServer } from '../src/dns/index.js';
import { waitFor } from './helpers/wait.js';
import { type NodeSpec, alivePids, isReady, livePods, log, startWorkloads } from './workloads-helpers.js';

const NS = 'default';
const NODE: NodeSpec = { name: 'sts-node', ip: '127.0.55.1', podCidr: '127.250.0.0/16' };
const pidOf = (p: Pod) => Number(p.status?.containerStatuses?.[0]?.containerID?.slice('kubeloop://'.length));

// the host-side layout (KUBELOOP_VOLUME_* naming the volume's directory) is the fallback without a
// mount namespace per pod; test/volumes covers the volumes at their mountPath
t.test('web-0 keeps its name, DNS record and data across deletion; claims outlive the set', async (t) => {
  const w = await startWorkloads(t, { podCidr: '127.250.0.0/16', nodes: [NODE], mountNamespaces: false });
  const { store, stateDir } = w;
  const dns = new DnsServer({ informers: w.informers, log, address: '127.0.0.1', port: 0, zone: 'cluster.local', ttl: 0 });
  await dns.start();
  t.teardown(() => dns.stop());
  const resolver = new dnsp.Resolver({ timeout: 1000, tries: 1 });
  resolver.setServers([`127.0.0.1:${dns.port}`]);

  await store.create<Service>({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'web', namespace: NS },
    spec: { clusterIP: 'None', selector: { app: 'web' }, ports: [{ port: 80 }] },
  });
  // each start appends a line to the volume; `pwd` shows the working directory is the volume
  const script = 'echo "$HOSTNAME" >> "$KUBELOOP_VOLUME_DATA/boots"; pwd > cwd.txt; exec sleep 3600';
  await store.create<StatefulSet>({
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name: 'web', namespace: NS },
    spec: {
      replicas: 2,
      serviceName: 'web',
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels: { app: 'web' } },
        spec: {
          terminationGracePeriodSeconds: 2,
          containers: [{ name: 'app', image: 'busybox', command: ['sh', '-c', script], volumeMounts: [{ name: 'data', mountPath: '/var/lib/data' }] }],
        },
      },
      volumeClaimTemplates: [{ metadata: { name: 'data' }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '10Mi' } } } }],
    },
  });
  const both = async () => {
    const ps = await livePods(store);
    return ps.size === 2 && [...ps.values()].every(isReady) ? ps : undefined;
  };
  let pods = await waitFor(both, { what: 'web-0 and web-1 ready', timeoutMs: 8000 });
  const dir0 = join(stateDir, 'volumes', NS, 'data-web-0');
  await waitFor(() => existsSync(join(dir0, 'cwd.txt')), { what: 'web-0 wrote to its volume' });
  t.equal(readFileSync(join(dir0, 'boots'), 'utf8'), 'web-0\n', 'the process found its volume through KUBELOOP_VOLUME_DATA');
  t.equal(readFileSync(join(dir0, 'cwd.txt'), 'utf8').trim(), dir0, 'and runs in it');
  // Ready comes from the process being up, not from its script having written yet
  await waitFor(() => existsSync(join(stateDir, 'volumes', NS, 'data-web-1', 'boots')), { what: 'web-1 wrote to its volume' });
  t.equal(readFileSync(join(stateDir, 'volumes', NS, 'data-web-1', 'boots'), 'utf8'), 'web-1\n', 'web-1 has a volume of its own');

  const a = await waitFor(async () => {
    const ips = await resolver.resolve4('web-0.web.default.svc.cluster.local').catch(() => []);
    return ips.length ? ips : undefined;
  }, { what: 'DNS for web-0' });
  t.same(a, [pods.get('web-0')!.status!.podIP], 'web-0.web.default.svc.cluster.local is web-0');

  // delete web-0: it comes back under the same name with the same data
  const old = pods.get('web-0')! as Stored<Pod>;
  await store.delete('Pod', NS, 'web-0');
  pods = await waitFor(async () => {
    const ps = await both();
    return ps && ps.get('web-0')!.metadata.uid !== old.metadata.uid ? ps : undefined;
  }, { what: 'web-0 recreated', timeoutMs: 8000 });
  await waitFor(() => readFileSync(join(dir0, 'boots'), 'utf8') === 'web-0\nweb-0\n', { what: 'second boot recorded' });
  t.pass('the recreated web-0 found the data of the first');
  t.same(alivePids([pidOf(old)]), [], 'the old process is gone');
  const newIp = pods.get('web-0')!.status!.podIP!;
  await waitFor(async () => (await resolver.resolve4('web-0.web.default.svc.cluster.local').catch(() => [])).join() === newIp, { what: 'DNS follows web-0' });
  t.pass('DNS answers with the new pod IP');

  // deleting the set (default retention: Retain) leaves the claims and their data
  const pids = [...pods.values()].map(pidOf);
  await store.delete('StatefulSet', NS, 'web', { propagationPolicy: 'Foreground' });
  await waitFor(async () => (await store.list<Pod>('Pod', { namespace: NS })).items.length === 0 && !(await store.tryGet('StatefulSet', NS, 'web')), {
    what: 'set and pods gone',
    timeoutMs: 8000,
  });
  t.same(alivePids(pids), [], 'cascading delete left no process');
  t.ok(await store.tryGet('PersistentVolumeClaim', NS, 'data-web-0'), 'claim kept');
  t.equal(readFileSync(join(dir0, 'boots'), 'utf8'), 'web-0\nweb-0\n', 'data kept');
  await store.delete('PersistentVolumeClaim', NS, 'data-web-0');
  await waitFor(() => !existsSync(dir0), { what: 'data removed with its claim' });
  t.pass('deleting the claim removes its directory');
});

t.test('emptyDir and hostPath mounts: env per mount, first mount as working directory, emptyDir removed with the pod', async (t) => {
  const w = await startWorkloads(t, { podCidr: '127.250.0.0/16', nodes: [NODE], mountNamespaces: false });
  const { store, stateDir } = w;
  const host = await mkdtemp(join(tmpdir(), 'kubeloop-hostpath-'));
  t.teardown(() => rm(host, { recursive: true, force: true }));
  const script = 'echo "$KUBELOOP_VOLUME_SCRATCH|$KUBELOOP_VOLUME_HOST_DIR|$(pwd)" > "$KUBELOOP_VOLUME_HOST_DIR/out"; exec sleep 3600';
  const p = await store.create<Pod>({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'vols', namespace: NS },
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [
        {
          name: 'c',
          image: 'busybox',
          command: ['sh', '-c', script],
          volumeMounts: [
            { name: 'scratch', mountPath: '/scratch' },
            { name: 'host-dir', mountPath: '/host', subPath: 'sub' },
          ],
        },
      ],
      volumes: [
        { name: 'scratch', emptyDir: {} },
        { name: 'host-dir', hostPath: { path: host, type: 'Directory' } },
      ],
    },
  });
  const out = join(host, 'sub', 'out');
  await waitFor(() => existsSync(out), { what: 'the pod wrote through its hostPath subPath', timeoutMs: 8000 });
  const [scratch, hostDir, cwd] = readFileSync(out, 'utf8').trim().split('|');
  t.equal(scratch, join(stateDir, 'pods', `${NS}_vols_${p.metadata.uid}`, '_volumes', 'scratch'), 'emptyDir under the pod directory');
  t.equal(hostDir, join(host, 'sub'), 'hostPath with subPath');
  t.equal(cwd, scratch, 'the first mount is the working directory');
  t.ok(existsSync(scratch), 'emptyDir exists while the pod runs');
  await store.delete('Pod', NS, 'vols');
  await waitFor(async () => !(await store.tryGet('Pod', NS, 'vols')), { what: 'pod gone', timeoutMs: 5000 });
  await waitFor(() => !existsSync(scratch), { what: 'emptyDir removed' });
  t.ok(existsSync(out), 'hostPath data stays');

  // a claim that does not exist keeps the container waiting, with the reason in its status
  await store.create<Pod>({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'waits', namespace: NS },
    spec: {
      containers: [{ name: 'c', image: 'busybox', command: ['sleep', '3600'], volumeMounts: [{ name: 'd', mountPath: '/d' }] }],
      volumes: [{ name: 'd', persistentVolumeClaim: { claimName: 'later' } }],
    },
  });
  const waiting = await waitFor(async () => {
    const x = await store.get<Pod>('Pod', NS, 'waits');
    return x.status?.containerStatuses?.[0]?.state?.waiting?.message?.includes('later') ? x : undefined;
  }, { what: 'waiting for the claim' });
  t.match(waiting.status?.containerStatuses?.[0]?.state?.waiting, { reason: 'ContainerCreating', message: 'persistentvolumeclaim "later" not found' });
  await store.create({
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name: 'later', namespace: NS },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Mi' } } },
  });
  await waitFor(async () => (await store.get<Pod>('Pod', NS, 'waits')).status?.phase === 'Running', { what: 'runs once the claim is bound', timeoutMs: 5000 });
  t.pass('the container started once its claim was bound');
});
