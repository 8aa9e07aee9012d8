import t from 'tap';
import type { Endpoints, Event, Pod, Service, Stored } from '../src/api/types.js';
import { addNode, pod, podIp, setNodeReady, setPodStatus, startCluster } from './controllers-helpers.js';
import { waitFor } from './helpers/wait.js';

const NS = 'default';

function service(name: string, spec: Service['spec']): Service {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: NS }, spec };
}

const ep = (store: { tryGet: (k: string, ns: string, n: string) => Promise<unknown> }, name: string) =>
  store.tryGet('Endpoints', NS, name) as Promise<Stored<Endpoints> | undefined>;

const ips = (addrs: Array<{ ip: string }> | undefined) => (addrs ?? []).map((a) => a.ip).sort();

t.test('endpoints follow pods becoming ready, not ready, terminating and deleted', async (t) => {
  const { store } = await startCluster(t);
  await store.create(service('web', { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] }));
  await store.create(pod(NS, 'a', { app: 'web' }, { nodeName: 'n1' }));
  await store.create(pod(NS, 'b', { app: 'web' }));
  await store.create(pod(NS, 'c', { app: 'web' }));
  await store.create(pod(NS, 'other', { app: 'api' }));
  const [ipA, ipB, ipOther] = [podIp(), podIp(), podIp()];
  await setPodStatus(store, NS, 'a', { ip: ipA, ready: true });
  await setPodStatus(store, NS, 'b', { ip: ipB, ready: false });
  await setPodStatus(store, NS, 'other', { ip: ipOther, ready: true });
  // c has no IP yet: not an endpoint at all

  let e = await waitFor(async () => {
    const x = await ep(store, 'web');
    return x && ips(x.subsets?.[0]?.addresses).join() === ipA && ips(x.subsets?.[0]?.notReadyAddresses).join() === ipB ? x : undefined;
  }, { what: 'a ready, b not ready' });
  t.equal(e.subsets!.length, 1);
  t.same(e.subsets![0].ports, [{ name: 'http', port: 8080, protocol: 'TCP' }], 'the resolved target port, named after the service port');
  const addrA = e.subsets![0].addresses![0];
  t.equal(addrA.nodeName, 'n1');
  t.match(addrA.targetRef, { kind: 'Pod', name: 'a', namespace: NS });
  t.ok(addrA.targetRef!.uid, 'targetRef carries the pod uid');
  t.ok(e.metadata!.annotations?.['endpoints.kubernetes.io/last-change-trigger-time'], 'trigger time annotated');

  // an update that does not concern endpoints writes nothing; count Endpoints writes from here on
  let writes = 0;
  const w = store.watch<Endpoints>('Endpoints', { resourceVersion: store.resourceVersion }, (ev) => {
    if (ev.object.metadata.name === 'web') writes++;
  });
  t.teardown(() => w.stop());
  await store.mutate<Pod>('Pod', NS, 'a', (p) => {
    p.metadata!.annotations = { note: 'irrelevant' };
  });
  await setPodStatus(store, NS, 'b', { ready: true });
  e = await waitFor(async () => {
    const x = await ep(store, 'web');
    return x && ips(x.subsets?.[0]?.addresses).length === 2 ? x : undefined;
  }, { what: 'b ready' });
  t.same(ips(e.subsets![0].addresses), [ipA, ipB].sort());
  t.notOk(e.subsets![0].notReadyAddresses, 'no not-ready addresses left');
  t.equal(writes, 1, 'one write for the one change that mattered');

  await setPodStatus(store, NS, 'a', { ready: false });
  await waitFor(async () => ips((await ep(store, 'web'))?.subsets?.[0]?.notReadyAddresses).join() === ipA, { what: 'a not ready' });

  await setPodStatus(store, NS, 'c', { ip: podIp(), ready: true });
  await waitFor(async () => ips((await ep(store, 'web'))?.subsets?.[0]?.addresses).length === 2, { what: 'c joins' });

  // a is on a node: deleting it makes it terminating first, which already takes it out
  await store.delete('Pod', NS, 'a');
  t.ok((await store.get<Pod>('Pod', NS, 'a')).metadata.deletionTimestamp, 'a is terminating');
  await waitFor(async () => !JSON.stringify((await ep(store, 'web'))?.subsets ?? []).includes(ipA), { what: 'terminating a leaves' });
  await store.delete('Pod', NS, 'b');
  e = await waitFor(async () => {
    const x = await ep(store, 'web');
    return x && !JSON.stringify(x.subsets).includes(ipB) ? x : undefined;
  }, { what: 'deleted b leaves' });
  t.equal(e.subsets!.length, 1);
  t.equal(e.subsets![0].addresses!.length, 1, 'only c is left');
  t.notOk(JSON.stringify(e).includes(ipOther), 'pods the selector does not match never appear');

  await store.delete('Service', NS, 'web');
  await waitFor(async () => !(await ep(store, 'web')), { what: 'endpoints deleted with the service' });
});

t.test('a named targetPort resolves per pod: different container ports make different subsets', async (t) => {
  const { store } = await startCluster(t);
  await store.create(
    service('named', {
      selector: { app: 'named' },
      ports: [
        { name: 'web', port: 80, targetPort: 'web', protocol: 'TCP' },
        { name: 'metrics', port: 9100, targetPort: 9100, protocol: 'TCP' },
      ],
    }),
  );
  await store.create(pod(NS, 'x', { app: 'named' }, {}, [{ name: 'web', containerPort: 8080 }]));
  await store.create(pod(NS, 'y', { app: 'named' }, {}, [{ name: 'web', containerPort: 9090 }]));
  await store.create(pod(NS, 'z', { app: 'named' }, {}, [{ name: 'other', containerPort: 7070 }]));
  const [ipX, ipY, ipZ] = [podIp(), podIp(), podIp()];
  for (const [n, ip] of [['x', ipX], ['y', ipY], ['z', ipZ]]) await setPodStatus(store, NS, n, { ip, ready: true });

  const e = await waitFor(async () => {
    const x = await ep(store, 'named');
    // all three pods in: the controller may sync between the status writes
    return x?.subsets?.length === 3 && JSON.stringify(x.subsets).includes(`"${ipZ}"`) ? x : undefined;
  }, { what: 'three subsets with every pod' });
  const byIps = new Map(e.subsets!.map((s) => [ips(s.addresses).join(), s.ports]));
  t.same(byIps.get(ipX), [{ name: 'web', port: 8080, protocol: 'TCP' }], 'x: web → 8080 only');
  t.same(byIps.get(ipY), [{ name: 'web', port: 9090, protocol: 'TCP' }], 'y: web → 9090 only');
  t.same(byIps.get(ipZ), undefined, 'z lacks the name: no subset of its own for web');
  t.same(byIps.get([ipX, ipY, ipZ].sort().join()), [{ name: 'metrics', port: 9100, protocol: 'TCP' }], 'every pod serves the numeric port');

  // deterministic: the same inputs give a deep-equal object
  const again = await ep(store, 'named');
  t.same(again!.subsets, e.subsets);
});

t.test('publishNotReadyAddresses, headless label, selector-less services left alone', async (t) => {
  const { store, controllers } = await startCluster(t);
  await store.create({
    apiVersion: 'v1',
    kind: 'Endpoints',
    metadata: { name: 'manual', namespace: NS },
    subsets: [{ addresses: [{ ip: '127.244.200.1' }], ports: [{ port: 5432, protocol: 'TCP' }] }],
  } as Endpoints);
  const manual = await store.get<Endpoints>('Endpoints', NS, 'manual');
  await store.create(service('manual', { ports: [{ port: 5432, protocol: 'TCP' }] }));
  await store.create(service('hl', { clusterIP: 'None', publishNotReadyAddresses: true, selector: { app: 'db' }, ports: [{ port: 5432, protocol: 'TCP' }] }));
  await store.create(pod(NS, 'db-0', { app: 'db' }, { hostname: 'db-0', subdomain: 'hl' }));
  await setPodStatus(store, NS, 'db-0', { ip: podIp(), ready: false });

  const e = await waitFor(async () => {
    const x = await ep(store, 'hl');
    return x?.subsets?.[0]?.addresses?.length === 1 ? x : undefined;
  }, { what: 'not-ready pod published' });
  t.equal(e.subsets![0].addresses![0].hostname, 'db-0', 'hostname when the subdomain is the service');
  t.equal(e.metadata!.labels?.['service.kubernetes.io/headless'], '', 'headless label');
  t.notOk(e.subsets![0].notReadyAddresses);

  // every queued key has been reconciled, the selector-less service's among them
  await waitFor(() => controllers.pending === 0, { what: 'controllers quiet' });
  const after = await store.get<Endpoints>('Endpoints', NS, 'manual');
  t.equal(after.metadata.resourceVersion, manual.metadata.resourceVersion, 'hand-written Endpoints untouched');
  t.same(after.subsets, manual.subsets);
});

t.test('scheduler binds pods to ready nodes, spreads them, and reports unschedulable ones', async (t) => {
  const { store } = await startCluster(t);
  await addNode(store, 'n1', { disk: 'ssd' });
  await addNode(store, 'n2');
  await addNode(store, 'n3', {}, false);
  for (let i = 0; i < 4; i++) await store.create(pod(NS, `p${i}`, { app: 'p' }));
  await store.create(pod(NS, 'picky', { app: 'p' }, { nodeSelector: { disk: 'ssd' } }));
  await store.create(pod(NS, 'gpu', { app: 'p' }, { nodeSelector: { gpu: 'yes' } }));

  const placed = await waitFor(async () => {
    const { items } = await store.list<Pod>('Pod', { namespace: NS });
    const bound = items.filter((p) => p.spec?.nodeName);
    return bound.length === 5 ? items : undefined;
  }, { what: 'five pods bound' });
  const nodeOf = new Map(placed.map((p) => [p.metadata.name, p.spec?.nodeName]));
  t.equal(nodeOf.get('picky'), 'n1', 'nodeSelector respected');
  const load = (n: string) => placed.filter((p) => p.spec?.nodeName === n).length;
  t.ok(load('n1') >= 2 && load('n2') >= 2, `spread over the ready nodes (n1 ${load('n1')}, n2 ${load('n2')})`);
  t.equal(load('n3'), 0, 'a node that is not ready gets nothing');
  t.match(placed.find((p) => p.metadata.name === 'p0')!.status?.conditions, [{ type: 'PodScheduled', status: 'True' }]);

  const gpu = await waitFor(async () => {
    const p = await store.get<Pod>('Pod', NS, 'gpu');
    return p.status?.conditions?.find((c) => c.type === 'PodScheduled' && c.reason === 'Unschedulable') ? p : undefined;
  }, { what: 'Unschedulable condition' });
  const cond = gpu.status!.conditions!.find((c) => c.type === 'PodScheduled')!;
  t.equal(cond.status, 'False');
  t.match(cond.message, /^0\/3 nodes are available: /);
  t.match(cond.message, /2 node\(s\) didn't match Pod's node affinity\/selector/);
  t.match(cond.message, /1 node\(s\) were not ready/);
  await waitFor(async () => (await store.list<Event>('Event', { namespace: NS })).items.some((e) => e.reason === 'FailedScheduling'), {
    what: 'FailedScheduling event',
  });

  // a node that becomes ready with the wanted label takes the pod
  await store.mutate('Node', undefined, 'n3', (n) => {
    n.metadata!.labels = { ...n.metadata!.labels, gpu: 'yes' };
  });
  await setNodeReady(store, 'n3', true);
  const bound = await waitFor(async () => (await store.get<Pod>('Pod', NS, 'gpu')).spec?.nodeName, { what: 'gpu pod bound' });
  t.equal(bound, 'n3');
});

t.test('garbage collector: dangling owners, several owners, orphan propagation', async (t) => {
  const { store, controllers } = await startCluster(t);
  const cm = (name: string, owners: Array<{ kind: string; name: string; uid: string; apiVersion: string }>) =>
    store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: NS, ownerReferences: owners } });
  const owner = await store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'owner', namespace: NS } });
  const ref = { apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata.uid };
  const ghost = { apiVersion: 'v1', kind: 'ConfigMap', name: 'ghost', uid: '00000000-0000-0000-0000-000000000000' };
  await cm('dangling', [ghost]);
  await cm('shared', [ref, ghost]);
  await cm('child', [ref]);

  await waitFor(async () => !(await store.tryGet('ConfigMap', NS, 'dangling')), { what: 'dangling dependent deleted' });
  const shared = await waitFor(async () => {
    const x = await store.get('ConfigMap', NS, 'shared');
    return x.metadata.ownerReferences?.length === 1 ? x : undefined;
  }, { what: 'dangling reference removed' });
  t.equal(shared.metadata.ownerReferences![0].uid, owner.metadata.uid, 'the live owner stays');
  t.ok(await store.tryGet('ConfigMap', NS, 'child'), 'a dependent with a live owner stays');

  // Orphan: the dependents lose the reference and live on
  await store.delete('ConfigMap', NS, 'owner', { propagationPolicy: 'Orphan' });
  await waitFor(() => controllers.pending === 0, { what: 'controllers quiet' });
  const child = await store.get('ConfigMap', NS, 'child');
  t.notOk(child.metadata.ownerReferences, 'orphaned child has no owner reference');
  t.ok(await store.tryGet('ConfigMap', NS, 'shared'), 'orphaned shared dependent lives on');

  // Background (default): dependents follow their owner
  const owner2 = await store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'owner2', namespace: NS } });
  await cm('child2', [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner2', uid: owner2.metadata.uid }]);
  await store.delete('ConfigMap', NS, 'owner2');
  await waitFor(async () => !(await store.tryGet('ConfigMap', NS, 'child2')), { what: 'background cascade' });
  t.pass('child2 collected');
});
