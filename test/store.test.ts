import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEmbeddedStore } from '../src/store/embedded.js';
import { Informer } from '../src/store/informer.js';
import type { ConfigMap, Job, Mutable, Pod, Service } from '../src/api/types.js';
import type { WatchEvent } from '../src/store/types.js';

const cm = (name: string, data: Record<string, string> = {}, labels?: Record<string, string>): ConfigMap => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace: 'default', ...(labels ? { labels } : {}) },
  data,
});

t.test('create / get / list / update / delete with resourceVersions', async (t) => {
  const store = await createEmbeddedStore();
  t.teardown(() => store.close());
  const a = await store.create(cm('a', { x: '1' }, { app: 'web' }));
  t.ok(a.metadata.uid, 'uid set');
  t.equal(a.metadata.namespace, 'default');
  t.ok(Object.isFrozen(a), 'stored objects are frozen');
  await t.rejects(store.create(cm('a')), { name: 'ApiError', reason: 'AlreadyExists', code: 409 });
  await store.create(cm('b', {}, { app: 'api' }));
  t.equal((await store.list('ConfigMap', { labelSelector: 'app=web' })).items.length, 1);
  t.equal((await store.list('ConfigMap', { namespace: 'default' })).items.length, 2);
  t.equal((await store.list('ConfigMap', { fieldSelector: 'metadata.name=b' })).items[0].metadata.name, 'b');

  const upd = await store.update({ ...a, data: { x: '2' } });
  t.ok(Number(upd.metadata.resourceVersion) > Number(a.metadata.resourceVersion), 'rv moves forward');
  await t.rejects(store.update({ ...a, data: { x: '3' } }), { name: 'ApiError', reason: 'Conflict', code: 409 }, 'stale rv conflicts');
  const same = await store.update({ ...upd });
  t.equal(same.metadata.resourceVersion, upd.metadata.resourceVersion, 'a no-op update writes nothing');

  await store.delete('ConfigMap', 'default', 'a');
  await t.rejects(store.get('ConfigMap', 'default', 'a'), { name: 'ApiError', reason: 'NotFound', code: 404 });
  await t.rejects(store.create({ ...cm('z'), metadata: { name: 'z', namespace: 'nope' } }), { name: 'ApiError', reason: 'NotFound' });
});

t.test('mutate retries and status subresource keeps spec', async (t) => {
  const store = await createEmbeddedStore();
  t.teardown(() => store.close());
  await store.create<Pod>({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { containers: [{ name: 'c', image: 'echo' }] } });
  const p = await store.mutate<Pod>('Pod', 'default', 'p', (pod) => {
    (pod as Mutable<Pod>).status = { phase: 'Running', podIP: '127.244.0.5' };
    pod.spec!.containers[0].image = 'ignored';
  }, { subresource: 'status' });
  t.equal(p?.status?.phase, 'Running');
  t.equal(p?.spec?.containers[0].image, 'echo', 'status update does not change spec');
  const q = await store.mutate<Pod>('Pod', 'default', 'p', (pod) => {
    pod.metadata!.labels = { a: 'b' };
    (pod as Mutable<Pod>).status = {};
  });
  t.equal(q?.status?.phase, 'Running', 'main update does not change status');
  t.same(q?.metadata.labels, { a: 'b' });
  t.equal(await store.mutate('Pod', 'default', 'missing', () => {}), undefined);
});

t.test('graceful pod deletion marks, then removes', async (t) => {
  const store = await createEmbeddedStore();
  t.teardown(() => store.close());
  await store.create<Pod>({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { nodeName: 'n1', terminationGracePeriodSeconds: 7, containers: [{ name: 'c', image: 'echo' }] } });
  await store.mutate<Pod>('Pod', 'default', 'p', (p) => { (p as Mutable<Pod>).status = { phase: 'Running', podIP: '127.244.0.9' }; }, { subresource: 'status' });
  const marked = await store.delete<Pod>('Pod', 'default', 'p');
  t.ok(marked.metadata.deletionTimestamp, 'marked terminating');
  t.equal(marked.metadata.deletionGracePeriodSeconds, 7);
  t.ok(await store.tryGet('Pod', 'default', 'p'), 'still there');
  await store.delete('Pod', 'default', 'p', { gracePeriodSeconds: 0 });
  t.equal(await store.tryGet('Pod', 'default', 'p'), undefined, 'gone after grace 0');
});

t.test('watch from a version replays, too old is Expired', async (t) => {
  const store = await createEmbeddedStore({ historySize: 5 });
  t.teardown(() => store.close());
  const start = store.resourceVersion;
  for (let i = 0; i < 3; i++) await store.create(cm(`w${i}`));
  const seen: string[] = [];
  const w = store.watch('ConfigMap', { resourceVersion: start }, (ev) => seen.push(`${ev.type} ${ev.object.metadata.name}`));
  await store.delete('ConfigMap', 'default', 'w0');
  await new Promise((r) => setImmediate(r));
  t.same(seen, ['ADDED w0', 'ADDED w1', 'ADDED w2', 'DELETED w0'], 'replay then live, in order');
  w.stop();
  for (let i = 0; i < 10; i++) await store.create(cm(`x${i}`));
  t.throws(() => store.watch('ConfigMap', { resourceVersion: start }, () => {}), { name: 'ApiError', reason: 'Expired', code: 410 });
});

t.test('label-filtered watch turns moves into ADDED/DELETED', async (t) => {
  const store = await createEmbeddedStore();
  t.teardown(() => store.close());
  const evs: WatchEvent[] = [];
  store.watch('ConfigMap', { labelSelector: 'app=web' }, (ev) => evs.push(ev));
  const c = await store.create(cm('m', {}, { app: 'api' }));
  const c2 = await store.update({ ...c, metadata: { ...c.metadata, labels: { app: 'web' } } });
  await store.update({ ...c2, metadata: { ...c2.metadata, labels: { app: 'db' } } });
  t.same(evs.map((e) => e.type), ['ADDED', 'DELETED']);
});

t.test('informer syncs and follows changes', async (t) => {
  const store = await createEmbeddedStore();
  t.teardown(() => store.close());
  await store.create(cm('pre'));
  const inf = new Informer<ConfigMap>(store, 'ConfigMap');
  const log: string[] = [];
  inf.addHandler({
    onAdd: (o) => log.push(`add ${o.metadata.name}`),
    onUpdate: (_o, n) => log.push(`upd ${n.metadata.name}`),
    onDelete: (o) => log.push(`del ${o.metadata.name}`),
    onSynced: () => log.push('synced'),
  });
  t.equal(inf.hasSynced(), false);
  await inf.start();
  t.equal(inf.hasSynced(), true);
  const n = await store.create(cm('new'));
  await store.update({ ...n, data: { a: 'b' } });
  await store.delete('ConfigMap', 'default', 'pre');
  t.same(log, ['add pre', 'synced', 'add new', 'upd new', 'del pre']);
  t.equal(inf.get('default', 'new')?.data?.a, 'b');
  inf.stop();
});

t.test('service allocation: clusterIP and nodePort', async (t) => {
  const store = await createEmbeddedStore();
  t.teardown(() => store.close());
  const svc = (name: string, spec: Service['spec']): Service => ({ apiVersion: 'v1', kind: 'Service', metadata: { name }, spec });
  const a = await store.create(svc('a', { type: 'NodePort', ports: [{ port: 80, nodePort: 30008 }] }));
  t.match(a.spec?.clusterIP, /^127\.(9[6-9]|10\d|11[01])\./, 'clusterIP from 127.96.0.0/12');
  t.equal(a.spec?.ports?.[0].nodePort, 30008);
  await t.rejects(store.create(svc('b', { type: 'NodePort', ports: [{ port: 80, nodePort: 30008 }] })), {
    reason: 'Invalid',
    message: /spec\.ports\[0\]\.nodePort: Invalid value: 30008: provided port is already allocated/,
  });
  await t.rejects(store.create(svc('c', { type: 'NodePort', ports: [{ port: 80, nodePort: 80 }] })), {
    message: /provided port is not in the valid range. The range of valid ports is 30000-32767/,
  });
  await t.rejects(store.create(svc('d', { clusterIP: '10.0.171.239', ports: [{ port: 80 }] })), {
    message: /not in the valid range.*--service-cidr/,
  });
  await t.rejects(store.create(svc('e', { clusterIP: a.spec!.clusterIP, ports: [{ port: 80 }] })), {
    message: /provided IP is already allocated/,
  });
  const f = await store.create(svc('f', { ports: [{ port: 80 }] }));
  t.notOk(f.spec?.ports?.[0].nodePort, 'no nodePort on ClusterIP');
  // update keeps the allocated clusterIP when omitted, type change to ExternalName releases it
  const f2 = await store.update({ ...f, spec: { ...f.spec, clusterIP: undefined, clusterIPs: undefined } });
  t.equal(f2.spec?.clusterIP, f.spec?.clusterIP);
  await store.delete('Service', 'default', 'a');
  const b = await store.create(svc('b', { type: 'NodePort', ports: [{ port: 80, nodePort: 30008 }] }));
  t.equal(b.spec?.ports?.[0].nodePort, 30008, 'released on delete and reusable');
  await t.rejects(store.create(svc('g', { clusterIP: b.spec!.clusterIP, ports: [{ port: 80 }] })), { name: 'ApiError', reason: 'Invalid' });
  const dry = await store.create(svc('h', { type: 'NodePort', ports: [{ port: 80, nodePort: 30010 }] }), { dryRun: true });
  t.equal(dry.spec?.ports?.[0].nodePort, 30010);
  t.equal(await store.tryGet('Service', 'default', 'h'), undefined, 'dry run stores nothing');
  await store.create(svc('h', { type: 'NodePort', ports: [{ port: 80, nodePort: 30010 }] }));
});

t.test('state survives a restart through the snapshot', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-store-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const s1 = await createEmbeddedStore({ stateDir: dir });
  const svc = await s1.create<Service>({ apiVersion: 'v1', kind: 'Service', metadata: { name: 's' }, spec: { ports: [{ port: 80 }] } });
  await s1.create(cm('kept', { k: 'v' }));
  const rv = s1.resourceVersion;
  await s1.close();
  const s2 = await createEmbeddedStore({ stateDir: dir });
  t.teardown(() => s2.close());
  t.equal((await s2.get<ConfigMap>('ConfigMap', 'default', 'kept')).data?.k, 'v');
  t.equal(s2.resourceVersion, rv, 'version continues');
  await t.rejects(
    s2.create<Service>({ apiVersion: 'v1', kind: 'Service', metadata: { name: 't' }, spec: { clusterIP: svc.spec!.clusterIP, ports: [{ port: 80 }] } }),
    { message: /already allocated/ },
    'allocations are restored',
  );
});

t.test('Foreground deletion keeps the owner until its finalizer goes; Orphan frees dependents', async (t) => {
  const store = await createEmbeddedStore();
  t.teardown(() => store.close());
  const owner = await store.create(cm('owner'));
  const ref = { apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata.uid };
  await store.create({ ...cm('dep'), metadata: { name: 'dep', namespace: 'default', ownerReferences: [ref] } });
  const marked = await store.delete('ConfigMap', 'default', 'owner', { propagationPolicy: 'Foreground' });
  t.ok(marked.metadata.deletionTimestamp, 'owner marked');
  t.same(marked.metadata.finalizers, ['foregroundDeletion']);
  await store.mutate<ConfigMap>('ConfigMap', 'default', 'owner', (o) => {
    o.metadata!.finalizers = [];
  });
  t.equal(await store.tryGet('ConfigMap', 'default', 'owner'), undefined, 'gone once the finalizer is removed');

  const o2 = await store.create(cm('owner2'));
  await store.create({ ...cm('dep2'), metadata: { name: 'dep2', namespace: 'default', ownerReferences: [{ ...ref, name: 'owner2', uid: o2.metadata.uid }] } });
  await store.delete('ConfigMap', 'default', 'owner2', { propagationPolicy: 'Orphan' });
  t.notOk((await store.get('ConfigMap', 'default', 'dep2')).metadata.ownerReferences, 'dependent orphaned');
});

t.test('a Job gets a selector on its own uid, and its template the matching labels', async (t) => {
  const store = await createEmbeddedStore();
  t.teardown(() => store.close());
  const job = await store.create<Job>({
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: 'hello' },
    spec: { template: { spec: { restartPolicy: 'Never', containers: [{ name: 'c', image: 'busybox' }] } } },
  });
  const uid = job.metadata.uid;
  t.same(job.spec?.selector, { matchLabels: { 'batch.kubernetes.io/controller-uid': uid } });
  t.equal(job.spec?.template.metadata?.labels?.['batch.kubernetes.io/job-name'], 'hello');
  t.equal(job.spec?.template.metadata?.labels?.['controller-uid'], uid);
});
