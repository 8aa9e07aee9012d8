/**
 * Regression: controllers built after the shared informers have synced (the daemon starts some
 * informers first) must not see their handlers called before they are ready, and must still act.
 */
import t from 'tap';
import pino from 'pino';
import { createEmbeddedStore } from '../src/store/embedded.js';
import { InformerFactory } from '../src/store/informer.js';
import { KINDS } from '../src/api/types.js';
import { ControllerManager } from '../src/controllers/index.js';
import { waitFor } from './helpers/wait.js';

t.test('controllers start over already-synced informers holding owned objects', async (t) => {
  const store = await createEmbeddedStore();
  t.teardown(() => store.close());
  const owner = await store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'owner', namespace: 'default' } });
  await store.create({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: 'dependent',
      namespace: 'default',
      ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata.uid }],
    },
  });
  const informers = new InformerFactory(store);
  for (const k of KINDS) informers.for(k.kind);
  await informers.start();
  const cm = new ControllerManager({ store, informers, log: pino({ level: 'silent' }) });
  await cm.start();
  t.teardown(async () => {
    await cm.stop();
    informers.stop();
  });
  await store.delete('ConfigMap', 'default', 'owner');
  await waitFor(async () => !(await store.tryGet('ConfigMap', 'default', 'dependent')), { timeoutMs: 5000 });
  t.pass('the garbage collector removed the dependent');
});
