import t from 'tap';
import type { DaemonSet, Node, Pod, Stored } from '../src/api/types.js';
import { cidrContains, parseCidr } from '../src/util/cidr.js';
import { addNode, fakeKubelet } from './controllers-helpers.js';
import { waitFor } from './helpers/wait.js';
import { type NodeSpec, alivePids, eventsFor, isReady, livePods, startWorkloads } from './workloads-helpers.js';

const NS = 'default';

function ds(name: string, extra: Partial<NonNullable<DaemonSet['spec']>> = {}, version = 'v1', nodeSelector?: Record<string, string>): DaemonSet {
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name, namespace: NS },
    spec: {
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          ...(nodeSelector ? { nodeSelector } : {}),
          terminationGracePeriodSeconds: 2,
          containers: [{ name: 'agent', image: 'kubeloop/echo', ports: [{ containerPort: 9100 }], env: [{ name: 'VERSION', value: version }] }],
        },
      },
      ...extra,
    },
  };
}

const versionOf = (p: Pod) => p.spec?.containers[0].env?.find((e) => e.name === 'VERSION')?.value;

/** node → its live pods of the daemon set */
async function perNode(store: Awaited<ReturnType<typeof startWorkloads>>['store'], app: string): Promise<Map<string, Stored<Pod>[]>> {
  const out = new Map<string, Stored<Pod>[]>();
  for (const p of (await livePods(store)).values()) {
    if (p.metadata.labels?.app !== app) continue;
    out.set(p.spec!.nodeName!, [...(out.get(p.spec!.nodeName!) ?? []), p]);
  }
  return out;
}

const NODES: NodeSpec[] = [
  { name: 'ds-node-1', ip: '127.0.40.1', podCidr: '127.245.0.0/18' },
  { name: 'ds-node-2', ip: '127.0.41.1', podCidr: '127.245.64.0/18' },
  { name: 'ds-node-3', ip: '127.0.42.1', podCidr: '127.245.128.0/18' },
];
const FOURTH: NodeSpec = { name: 'ds-node-4', ip: '127.0.43.1', podCidr: '127.245.192.0/18' };

t.test('a DaemonSet runs one real pod per node across 3 node agents, follows a node added, relabelled and removed', async (t) => {
  const w = await startWorkloads(t, { podCidr: '127.245.0.0/16', nodes: NODES });
  const { store } = w;
  await store.create(ds('agent'));
  const ready = async (n: number) => {
    const m = await perNode(store, 'agent');
    return m.size === n && [...m.values()].every((ps) => ps.length === 1 && isReady(ps[0])) ? m : undefined;
  };
  let m = await waitFor(() => ready(3), { what: 'a ready pod on each of 3 nodes', timeoutMs: 8000 });
  for (const n of NODES) {
    const p = m.get(n.name)![0];
    t.ok(cidrContains(parseCidr(n.podCidr), p.status!.podIP!), `${n.name}: pod IP ${p.status!.podIP} from the node's podCIDR`);
    t.equal(p.status?.hostIP, n.ip, `${n.name}: hostIP is the node IP`);
  }
  const node1 = await store.get<Node>('Node', undefined, 'ds-node-1');
  t.equal(node1.spec?.podCIDR, NODES[0].podCidr, 'Node.spec.podCIDR is the slice');
  const st = await waitFor(async () => {
    const d = await store.get<DaemonSet>('DaemonSet', NS, 'agent');
    return d.status?.numberAvailable === 3 ? d.status : undefined;
  }, { what: 'status' });
  t.match(st, { desiredNumberScheduled: 3, currentNumberScheduled: 3, numberReady: 3, updatedNumberScheduled: 3, numberMisscheduled: 0, numberUnavailable: 0 });

  // a fourth node joins
  const r4 = await w.startNode(FOURTH);
  m = await waitFor(() => ready(4), { what: 'a pod on the new node', timeoutMs: 8000 });
  t.ok(m.has('ds-node-4'), 'the new node got its pod');
  const pidsBefore = r4.pids();
  t.equal(pidsBefore.length, 1, 'node 4 runs one daemon process');

  // relabelled out of the selector: the pod leaves that node (and its process ends)
  await store.mutate<DaemonSet>('DaemonSet', NS, 'agent', (d) => {
    d.spec!.template.spec!.nodeSelector = { role: 'edge' };
  });
  await waitFor(async () => (await perNode(store, 'agent')).size === 0, { what: 'no node matches role=edge', timeoutMs: 8000 });
  await store.mutate<Node>('Node', undefined, 'ds-node-2', (n) => {
    n.metadata!.labels = { ...n.metadata!.labels, role: 'edge' };
  });
  m = await waitFor(async () => {
    const x = await perNode(store, 'agent');
    return x.size === 1 && x.get('ds-node-2')?.[0] && isReady(x.get('ds-node-2')![0]) ? x : undefined;
  }, { what: 'pod only on the labelled node', timeoutMs: 8000 });
  t.same([...m.keys()], ['ds-node-2'], 'kubectl label node: the pod follows the label');
  // the pod object goes when its agent has stopped it; the process exit is observed a moment later
  await waitFor(() => alivePids(pidsBefore).length === 0, { what: 'the old daemon process ended', timeoutMs: 5000 });
  t.same(alivePids(pidsBefore), [], 'the process on the unselected node 4 has ended');
  await store.mutate<Node>('Node', undefined, 'ds-node-2', (n) => {
    const { role: _r, ...rest } = n.metadata!.labels!;
    n.metadata!.labels = rest;
  });
  await waitFor(async () => (await perNode(store, 'agent')).size === 0, { what: 'label removed: pod gone', timeoutMs: 8000 });

  // back to every node; then node 4 is removed (agent stopped, Node deleted)
  await store.mutate<DaemonSet>('DaemonSet', NS, 'agent', (d) => {
    delete d.spec!.template.spec!.nodeSelector;
  });
  await waitFor(() => ready(4), { what: 'back on 4 nodes', timeoutMs: 8000 });
  await r4.stop();
  await store.delete('Node', undefined, 'ds-node-4');
  m = await waitFor(async () => {
    const x = await perNode(store, 'agent');
    return x.size === 3 && !x.has('ds-node-4') ? x : undefined;
  }, { what: 'the removed node has no pod', timeoutMs: 8000 });
  t.notOk(m.has('ds-node-4'));
  const evs = await eventsFor(store, { kind: 'DaemonSet', metadata: { name: 'agent' } });
  t.ok(evs.some((e) => e.reason === 'SuccessfulCreate'), 'SuccessfulCreate events');
  t.ok(evs.some((e) => e.reason === 'SuccessfulDelete'), 'SuccessfulDelete events');
});

t.test('rolling update goes node by node within maxUnavailable', async (t) => {
  const w = await startWorkloads(t, { podCidr: '127.245.0.0/16', nodes: NODES });
  const { store } = w;
  await store.create(ds('roll', { updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } } }));
  await waitFor(async () => (await store.get<DaemonSet>('DaemonSet', NS, 'roll')).status?.numberAvailable === 3, { what: 'roll ready', timeoutMs: 8000 });

  // watch every pod change: how many nodes lack a ready, not terminating pod at any moment
  const pods = new Map<string, Stored<Pod>>();
  let worst = 0;
  const watch = store.watch<Pod>('Pod', { namespace: NS }, (ev) => {
    if (ev.object.metadata.labels?.app !== 'roll') return;
    if (ev.type === 'DELETED') pods.delete(ev.object.metadata.name);
    else pods.set(ev.object.metadata.name, ev.object);
    const serving = new Set([...pods.values()].filter((p) => isReady(p) && !p.metadata.deletionTimestamp).map((p) => p.spec!.nodeName));
    worst = Math.max(worst, NODES.filter((n) => !serving.has(n.name)).length);
  });
  t.teardown(() => watch.stop());
  for (const p of (await livePods(store)).values()) if (p.metadata.labels?.app === 'roll') pods.set(p.metadata.name, p);

  await store.mutate<DaemonSet>('DaemonSet', NS, 'roll', (d) => {
    d.spec!.template.spec!.containers[0].env = [{ name: 'VERSION', value: 'v2' }];
  });
  const done = await waitFor(async () => {
    const d = await store.get<DaemonSet>('DaemonSet', NS, 'roll');
    const m = await perNode(store, 'roll');
    const all = [...m.values()].flat();
    return d.status?.updatedNumberScheduled === 3 && d.status.numberAvailable === 3 && all.length === 3 && all.every((p) => versionOf(p) === 'v2') ? d : undefined;
  }, { what: 'rolled out', timeoutMs: 12000 });
  t.equal(done.status?.observedGeneration, 2);
  t.ok(worst <= 1, `at most one node without a ready pod during the rollout (worst ${worst})`);
  t.ok(worst >= 1, 'a node was briefly without its pod (replace, not surge)');
});

t.test('maxSurge starts the new pod before the old one goes; taints and nodes that vanish', async (t) => {
  const { store } = await startWorkloads(t);
  for (const n of ['s1', 's2']) await addNode(store, n);
  fakeKubelet(t, store);
  await store.create(ds('surge', { updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } } }));
  await waitFor(async () => (await store.get<DaemonSet>('DaemonSet', NS, 'surge')).status?.numberAvailable === 2, { what: 'surge ready' });
  let worst = 0;
  const serving = new Map<string, Stored<Pod>>();
  for (const p of (await livePods(store)).values()) serving.set(p.metadata.name, p);
  const watch = store.watch<Pod>('Pod', { namespace: NS }, (ev) => {
    if (ev.type === 'DELETED') serving.delete(ev.object.metadata.name);
    else serving.set(ev.object.metadata.name, ev.object);
    const nodes = new Set([...serving.values()].filter((p) => isReady(p) && !p.metadata.deletionTimestamp).map((p) => p.spec!.nodeName));
    worst = Math.max(worst, 2 - nodes.size);
  });
  t.teardown(() => watch.stop());
  await store.mutate<DaemonSet>('DaemonSet', NS, 'surge', (d) => {
    d.spec!.template.spec!.containers[0].env = [{ name: 'VERSION', value: 'v2' }];
  });
  await waitFor(async () => {
    const all = [...(await livePods(store)).values()];
    return all.length === 2 && all.every((p) => versionOf(p) === 'v2' && isReady(p));
  }, { what: 'surged rollout' });
  t.equal(worst, 0, 'with maxSurge no node was ever without a ready pod');

  // a NoSchedule taint the pods do not tolerate: the pod leaves that node
  await store.mutate<Node>('Node', undefined, 's2', (n) => {
    n.spec = { ...n.spec, taints: [{ key: 'dedicated', value: 'db', effect: 'NoSchedule' }] };
  });
  await waitFor(async () => [...(await livePods(store)).values()].every((p) => p.spec?.nodeName === 's1'), { what: 'tainted node emptied' });
  // cordoning does not matter to daemon pods
  await store.mutate<Node>('Node', undefined, 's1', (n) => {
    n.spec = { ...n.spec, unschedulable: true };
  });
  await new Promise((r) => setTimeout(r, 150));
  t.equal((await livePods(store)).size, 1, 'a cordoned node keeps its daemon pod');
  // a node deleted while its pod runs: the pod is removed at once (no agent would stop it)
  await store.delete('Node', undefined, 's1');
  await waitFor(async () => (await store.list<Pod>('Pod', { namespace: NS })).items.length === 0, { what: 'pod of the vanished node removed' });
  const d = await waitFor(async () => {
    const x = await store.get<DaemonSet>('DaemonSet', NS, 'surge');
    return x.status?.desiredNumberScheduled === 0 ? x : undefined;
  }, { what: 'status 0' });
  t.equal(d.status?.numberMisscheduled, 0);
});
