/** The kubelet's events users look for in `kubectl describe pod`: Started, BackOff, Unhealthy, Killing. */
import t from 'tap';
import type { Event, Pod, Stored } from '../src/api/types.js';
import { waitFor } from './helpers/wait.js';
import { type NodeSpec, startWorkloads } from './workloads-helpers.js';

const NS = 'default';
const NODE: NodeSpec = { name: 'ev-node', ip: '127.0.57.1', podCidr: '127.253.0.0/16' };

async function podEvents(store: Awaited<ReturnType<typeof startWorkloads>>['store'], name: string): Promise<Stored<Event>[]> {
  const { items } = await store.list<Event>('Event', { namespace: NS });
  return items.filter((e) => e.involvedObject.kind === 'Pod' && e.involvedObject.name === name);
}

t.test('crash loop, failing probes and deletion leave events on the pod', async (t) => {
  const { store } = await startWorkloads(t, { podCidr: '127.253.0.0/16', nodes: [NODE] });
  const pod = (name: string, container: NonNullable<Pod['spec']>['containers'][number]): Pod => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS },
    spec: { terminationGracePeriodSeconds: 1, containers: [container] },
  });
  await store.create(pod('crash', { name: 'c', image: 'busybox', command: ['sh', '-c', 'exit 1'] }));
  // runs further apart than 2 × the test's 400 ms cap, as on a loaded machine: it still backs off
  await store.create(pod('slow-crash', { name: 'c', image: 'busybox', command: ['sh', '-c', 'sleep 1; exit 1'] }));
  await store.create(
    pod('unready', {
      name: 'c',
      image: 'busybox',
      command: ['sleep', '3600'],
      readinessProbe: { exec: { command: ['false'] }, periodSeconds: 1, failureThreshold: 1, successThreshold: 1, timeoutSeconds: 1 },
    }),
  );
  await store.create(
    pod('dying', {
      name: 'c',
      image: 'busybox',
      command: ['sleep', '3600'],
      livenessProbe: { exec: { command: ['false'] }, periodSeconds: 1, failureThreshold: 1, successThreshold: 1, timeoutSeconds: 1 },
    }),
  );

  const backoff = await waitFor(async () => (await podEvents(store, 'crash')).find((e) => e.reason === 'BackOff'), { what: 'BackOff event', timeoutMs: 8000 });
  t.equal(backoff.type, 'Warning');
  t.match(backoff.message, /^Back-off restarting failed container c in pod crash_default\(/);
  t.equal(backoff.source?.component, 'kubelet');
  t.equal(backoff.source?.host, 'ev-node');
  t.equal(backoff.involvedObject.fieldPath, 'spec.containers{c}');
  t.ok((await podEvents(store, 'crash')).some((e) => e.reason === 'Started' && e.message === 'Started container c'), 'Started event');
  await waitFor(async () => (await podEvents(store, 'slow-crash')).find((e) => e.reason === 'BackOff'), { what: 'BackOff of a slow crash loop', timeoutMs: 15_000 });

  const unhealthy = await waitFor(async () => (await podEvents(store, 'unready')).find((e) => e.reason === 'Unhealthy'), { what: 'Unhealthy event', timeoutMs: 8000 });
  t.equal(unhealthy.type, 'Warning');
  t.match(unhealthy.message, /^Readiness probe failed: command \["false"\] exited with 1/);

  const killed = await waitFor(async () => (await podEvents(store, 'dying')).find((e) => e.reason === 'Killing'), { what: 'liveness Killing event', timeoutMs: 8000 });
  t.equal(killed.message, 'Container c failed liveness probe, will be restarted');
  t.ok((await podEvents(store, 'dying')).some((e) => e.reason === 'Unhealthy' && /^Liveness probe failed/.test(e.message ?? '')), 'Liveness Unhealthy event');

  await store.delete('Pod', NS, 'unready');
  const stopping = await waitFor(async () => (await podEvents(store, 'unready')).find((e) => e.reason === 'Killing'), { what: 'Killing on delete', timeoutMs: 5000 });
  t.equal(stopping.message, 'Stopping container c');

  // repeats are counted on one Event, not written again
  await waitFor(async () => ((await podEvents(store, 'crash')).find((e) => e.reason === 'BackOff')?.count ?? 0) >= 2, { what: 'BackOff counted twice', timeoutMs: 8000 });
  t.equal((await podEvents(store, 'crash')).filter((e) => e.reason === 'BackOff').length, 1, 'one BackOff Event with a count');
});
