/**
 * The node agent's own admission (issue 14, max pods): a pod created with `spec.nodeName`
 * already set bypasses the scheduler, so the agent checks the pod count itself, as the kubelet
 * does: over --max-pods the pod is not run but goes Failed with reason OutOfpods and upstream's
 * message, with a Warning event. Real store, controllers and node agent (pods are `sleep`s).
 */
import t from 'tap';
import type { Event, Pod } from '../src/api/types.js';
import { inProcessNode } from './helpers/daemon.js';
import { waitFor } from './helpers/wait.js';

const NS = 'default';
const PODCIDR = '127.218.0.0/18';

t.test('a pod bound to a full node is rejected with OutOfpods, runs nothing, and a freed slot admits the next', async (t) => {
  const { store, runtime } = await inProcessNode(t, { dirPrefix: 'kubeloop-admission-', podCidr: PODCIDR, nodeIP: '127.0.218.1', runtime: { maxPods: 2, startRate: 100 } });

  const bound = (name: string) =>
    store.create<Pod>({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: NS },
      spec: { nodeName: 'node-1', terminationGracePeriodSeconds: 0, containers: [{ name: 'c', image: 'busybox', command: ['sleep', '300'] }] },
    });
  const get = (name: string) => store.get<Pod>('Pod', NS, name);

  await bound('a');
  await bound('b');
  await waitFor(async () => (await get('a')).status?.phase === 'Running' && (await get('b')).status?.phase === 'Running', { timeoutMs: 15_000, what: 'a and b running' });

  await bound('over');
  const over = await waitFor(async () => {
    const p = await get('over');
    return p.status?.phase === 'Failed' ? p : undefined;
  }, { timeoutMs: 10_000, what: 'the third pod rejected' });
  const message = "Node didn't have enough resource: pods, requested: 1, used: 2, capacity: 2";
  t.equal(over.status?.reason, 'OutOfpods');
  t.equal(over.status?.message, `Pod was rejected: ${message}`);
  t.notOk(over.status?.containerStatuses?.some((c) => c.state?.running), 'no container of it runs');
  const ev = await waitFor(
    async () => (await store.list<Event>('Event', { namespace: NS })).items.find((e) => e.involvedObject.name === 'over' && e.reason === 'OutOfpods'),
    { what: 'the OutOfpods event' },
  );
  t.equal(ev.type, 'Warning');
  t.equal(ev.message, message);
  // it stays rejected (the kubelet does not retry a rejected pod), and the node keeps 2 processes
  await new Promise((r) => setTimeout(r, 300));
  t.equal((await get('over')).status?.phase, 'Failed');
  t.equal(runtime.pids().length, 2, 'only the admitted pods run');

  // a freed slot admits the next bound pod
  await store.delete('Pod', NS, 'a', { gracePeriodSeconds: 0 });
  await waitFor(async () => !(await store.tryGet<Pod>('Pod', NS, 'a')), { timeoutMs: 10_000, what: 'a gone' });
  await bound('next');
  await waitFor(async () => (await get('next')).status?.phase === 'Running', { timeoutMs: 10_000, what: 'next running' });
  t.equal(runtime.pids().length, 2);

  // the rejected pod is deleted at once (it never ran)
  await store.delete('Pod', NS, 'over');
  await waitFor(async () => !(await store.tryGet<Pod>('Pod', NS, 'over')), { timeoutMs: 10_000, what: 'the rejected pod removed' });
  t.pass('rejected pod deleted');
});
