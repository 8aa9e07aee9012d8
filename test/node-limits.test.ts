/**
 * Node limits (issue 14): --max-pods is the Node's allocatable pods and the scheduler keeps pods
 * over it Pending with upstream's message; --pod-start-rate queues pod starts instead of forking
 * them all at once. Real store, controllers and node agent (pods are `sleep` processes).
 */
import t from 'tap';
import pino from 'pino';
import type { Deployment, Event, Node, Pod } from '../src/api/types.js';
import { ControllerManager } from '../src/controllers/index.js';
import type { RuntimeOptions } from '../src/agent/runtime/index.js';
import { createEmbeddedStore } from '../src/store/embedded.js';
import { InformerFactory } from '../src/store/informer.js';
import { type InProcessNode, inProcessNode } from './helpers/daemon.js';
import { waitFor } from './helpers/wait.js';

const log = pino({ level: process.env.KUBELOOP_TEST_LOG ?? 'silent' });
const NS = 'default';
const TOO_MANY =
  '0/1 nodes are available: 1 Too many pods. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.';

const setup = (t: { teardown(fn: () => unknown): void }, podCidr: string, nodeIP: string, more: Partial<RuntimeOptions>): Promise<InProcessNode> =>
  inProcessNode(t, { dirPrefix: 'kubeloop-node-limits-', podCidr, nodeIP, runtime: more });

const sleeper = { name: 'c', image: 'busybox', command: ['sleep', '300'] };
const running = (p: Pod) => p.status?.phase === 'Running';
const scheduled = (p: Pod) => p.status?.conditions?.find((c) => c.type === 'PodScheduled');

t.test('--max-pods: the node reports it, pods over it stay Pending with the upstream message, a freed slot is used', async (t) => {
  const { store, runtime, pods } = await setup(t, '127.213.0.0/18', '127.0.213.1', { maxPods: 5, startRate: 100 });
  const node = await store.get<Node>('Node', undefined, 'node-1');
  t.equal(node.status?.allocatable?.pods, '5');
  t.equal(node.status?.capacity?.pods, '5');

  await store.create<Deployment>({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: NS },
    spec: {
      replicas: 8,
      selector: { matchLabels: { app: 'web' } },
      template: { metadata: { labels: { app: 'web' } }, spec: { terminationGracePeriodSeconds: 0, containers: [sleeper] } },
    },
  });
  const pending = await waitFor(
    async () => {
      const all = await pods();
      const run = all.filter(running);
      const wait = all.filter((p) => scheduled(p)?.status === 'False');
      return all.length === 8 && run.length === 5 && wait.length === 3 ? wait : undefined;
    },
    { timeoutMs: 15_000, what: '5 running and 3 unschedulable pods' },
  );
  t.equal(runtime.pids().length, 5, 'exactly max-pods processes run');
  for (const p of pending) {
    const c = scheduled(p)!;
    t.equal(c.reason, 'Unschedulable');
    t.equal(c.message, TOO_MANY);
    t.notOk(p.spec?.nodeName, 'not bound');
  }
  const failed = await waitFor(
    async () => {
      const evs = (await store.list<Event>('Event', { namespace: NS })).items.filter((e) => e.reason === 'FailedScheduling');
      return evs.length >= 3 ? evs : undefined;
    },
    { what: 'FailedScheduling events' },
  );
  t.same(new Set(failed.map((e) => e.involvedObject.name)), new Set(pending.map((p) => p.metadata.name)), 'one event per pending pod');
  for (const e of failed) {
    t.equal(e.type, 'Warning');
    t.equal(e.message, TOO_MANY);
    t.equal(e.count ?? 1, 1, 'not repeated while nothing changed');
  }

  // a pod of its own waits too; scaling the Deployment down to 4 frees a slot it then takes
  await store.create<Pod>({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'extra', namespace: NS }, spec: { terminationGracePeriodSeconds: 0, containers: [sleeper] } });
  await waitFor(async () => scheduled((await store.get<Pod>('Pod', NS, 'extra')))?.message === TOO_MANY, { what: 'extra unschedulable' });
  await store.mutate<Deployment>('Deployment', NS, 'web', (d) => {
    d.spec!.replicas = 4;
  });
  await waitFor(
    async () => {
      const all = await pods();
      const extra = all.find((p) => p.metadata.name === 'extra');
      return all.length === 5 && all.every(running) && extra && running(extra);
    },
    { timeoutMs: 15_000, what: 'the Deployment at 4 and the extra pod running' },
  );
  t.equal(runtime.pids().length, 5);
});

t.test('--pod-start-rate: starts beyond the burst wait in a queue with a reason, and all of them run', async (t) => {
  const { store, runtime, pods } = await setup(t, '127.213.64.0/18', '127.0.213.2', { startRate: 2 });
  const started = Date.now();
  for (let i = 0; i < 8; i++) {
    await store.create<Pod>({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: `p${i}`, namespace: NS },
      spec: { nodeName: 'node-1', terminationGracePeriodSeconds: 0, containers: [sleeper] },
    });
  }
  const queued = await waitFor(async () => (await pods()).filter((p) => p.status?.reason === 'StartRateLimited'), {
    what: 'queued pods',
  });
  t.ok(queued.length >= 4, `pods wait for the start rate (${queued.length} queued)`);
  t.match(queued[0].status?.message, /node-1 starts at most 2 pods per second \(kubeloop up --pod-start-rate\)/);
  t.equal(queued[0].status?.phase, 'Pending');
  t.ok(runtime.pids().length <= 3, `at most the burst forked at once (${runtime.pids().length})`);
  await waitFor(async () => (await pods()).filter(running).length === 8, { timeoutMs: 15_000, what: 'all 8 running' });
  const took = Date.now() - started;
  // 2 at once, then 2 a second: the 8th starts ≥ 3 s after the first
  t.ok(took >= 2500, `starts were spread over ${took} ms`);
  t.notOk((await pods()).some((p) => p.status?.reason), 'no pod keeps the queued reason');
  t.equal(runtime.pids().length, 8);
});

t.test('replicas: 1000000000 creates pods at the controllers\' bounded rate, and scaling back to 1 recovers', async (t) => {
  const store = await createEmbeddedStore({ log, podCidr: '127.213.128.0/18' });
  const informers = new InformerFactory(store);
  const controllers = new ControllerManager({ store, informers, log, podCidr: '127.213.128.0/18', podCreateRate: { perSecond: 20, burst: 10 } });
  t.teardown(async () => {
    await controllers.stop();
    informers.stop();
    await store.close();
  });
  await controllers.start();
  const started = Date.now();
  await store.create<Deployment>({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'typo', namespace: NS },
    spec: {
      replicas: 1_000_000_000,
      selector: { matchLabels: { app: 'typo' } },
      template: { metadata: { labels: { app: 'typo' } }, spec: { containers: [sleeper] } },
    },
  });
  const count = async () => (await store.list<Pod>('Pod', { namespace: NS })).items.length;
  await waitFor(async () => (await count()) >= 30, { what: '30 pods created' });
  await new Promise((r) => setTimeout(r, 1000));
  const n = await count();
  const bound = 10 + 20 * ((Date.now() - started) / 1000) + 5;
  t.ok(n <= bound, `${n} pods after ${Date.now() - started} ms (bound ${Math.round(bound)})`);
  await store.mutate<Deployment>('Deployment', NS, 'typo', (d) => {
    d.spec!.replicas = 1;
  });
  // creations already waiting for a token still land (as upstream's batch in flight); the surplus is then deleted
  const live = async () => {
    const items = (await store.list<Pod>('Pod', { namespace: NS })).items;
    return `${items.filter((p) => !p.metadata.deletionTimestamp).length} live, ${items.length} in all`;
  };
  await waitFor(async () => (await live()) === '1 live, 1 in all', { timeoutMs: 30_000, what: 'one pod left' });
  t.pass('scaled back to one pod');
});
