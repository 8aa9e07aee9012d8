/**
 * controllers/pod-control.ts over a real embedded store: creates under generated names with
 * expectations (unsatisfied until the cache shows the pod), deletes by uid (a successor of the
 * same name is left alone), events as upstream, and the create turn dropped when no longer wanted.
 */
import pino from 'pino';
import t from 'tap';
import type { KObject, Pod, Stored } from '../../src/api/types.js';
import { PodControl } from '../../src/controllers/pod-control.js';
import { createEmbeddedStore } from '../../src/store/embedded.js';
import { EventRecorder } from '../../src/store/events.js';
import { TokenBucket } from '../../src/util/token-bucket.js';

const log = pino({ level: 'silent' });

t.test('create, delete, expectations and events', async (t) => {
  const store = await createEmbeddedStore({ log });
  t.teardown(() => store.close());
  const events = new EventRecorder({ store, log, component: 'test-controller' });
  t.teardown(() => events.close());
  const owner = await store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'owner', namespace: 'default' } });
  const pc = new PodControl({ store, events });
  const template: Pod = { apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'owner-', labels: { app: 'x' } }, spec: { containers: [{ name: 'c', image: 'echo' }] } };

  t.equal(await pc.create(owner, template), true);
  const pods = (await store.list<Pod>('Pod', { namespace: 'default' })).items;
  t.equal(pods.length, 1);
  t.match(pods[0].metadata.name, /^owner-[a-z0-9]{5}$/);
  t.same(pods[0].metadata.labels, { app: 'x' });

  // the cache has not shown it: not satisfied; once it does: satisfied
  t.equal(pc.satisfied('default/owner', () => undefined), false, 'a create the cache has not shown');
  const byKey = new Map(pods.map((p) => [`default/${p.metadata.name}`, p as Stored<Pod>]));
  t.equal(pc.satisfied('default/owner', (k) => byKey.get(k)), true);

  // a pod replaced under the same name: the old uid's delete leaves the successor alone
  const old = pods[0] as Stored<Pod>;
  await store.delete('Pod', 'default', old.metadata.name, { gracePeriodSeconds: 0 });
  await store.create({ ...template, metadata: { name: old.metadata.name, namespace: 'default' } });
  await pc.delete(owner, old);
  const after = (await store.list<Pod>('Pod', { namespace: 'default' })).items;
  t.equal(after.length, 1, 'the successor is still there');
  t.not(after[0].metadata.uid, old.metadata.uid);
  await pc.delete(owner, after[0] as Stored<Pod>, { force: true });
  t.equal((await store.list<Pod>('Pod', { namespace: 'default' })).items.length, 0);

  // a failed create: FailedCreate, the expectation cancelled, the error thrown
  const bad: Pod = { ...template, spec: { containers: [] } };
  await t.rejects(pc.create(owner, bad), /containers/);
  t.equal(pc.satisfied('default/owner', () => undefined), true, 'nothing left expected');

  await events.close();
  const reasons = (await store.list<KObject & { reason?: string; message?: string }>('Event', { namespace: 'default' })).items.map((e) => `${e.reason}: ${e.message}`);
  t.ok(reasons.some((r) => /^SuccessfulCreate: Created pod: owner-/.test(r)), 'SuccessfulCreate');
  t.ok(reasons.some((r) => /^SuccessfulDelete: Deleted pod: owner-/.test(r)), 'SuccessfulDelete');
  t.ok(reasons.some((r) => /^FailedCreate: Error creating: /.test(r)), 'FailedCreate');
});

t.test('a rate-limited create is dropped when no longer wanted by its turn', async (t) => {
  const store = await createEmbeddedStore({ log });
  t.teardown(() => store.close());
  const events = new EventRecorder({ store, log, component: 'test-controller' });
  t.teardown(() => events.close());
  const owner = await store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'owner', namespace: 'default' } });
  const podCreates = new TokenBucket({ ratePerSecond: 1, burst: 1 });
  const pc = new PodControl({ store, events, podCreates });
  const template: Pod = { apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'owner-' }, spec: { containers: [{ name: 'c', image: 'echo' }] } };
  t.equal(await pc.create(owner, template, { rateLimited: true }), true, 'the burst');
  t.equal(await pc.create(owner, template, { rateLimited: true, stillWanted: () => false }), false, 'not wanted any more');
  t.equal((await store.list('Pod', { namespace: 'default' })).items.length, 1);
  t.equal(pc.satisfied('default/owner', (k) => (k.startsWith('default/owner-') ? ({} as Stored<Pod>) : undefined)), true, 'the dropped create is not expected');
});
