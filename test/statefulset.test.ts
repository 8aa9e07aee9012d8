import { existsSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { ControllerRevision, Endpoints, PersistentVolumeClaim, Pod, Service, StatefulSet, Stored } from '../src/api/types.js';
import { addNode, fakeKubelet, setPodStatus } from './controllers-helpers.js';
import { waitFor } from './helpers/wait.js';
import { eventsFor, livePods, startWorkloads } from './workloads-helpers.js';

const NS = 'default';

function sts(name: string, replicas: number, extra: Partial<NonNullable<StatefulSet['spec']>> = {}, version = 'v1'): StatefulSet {
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name, namespace: NS },
    spec: {
      replicas,
      serviceName: name,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: 'app', image: 'kubeloop/echo', ports: [{ containerPort: 8080 }], env: [{ name: 'VERSION', value: version }] }] },
      },
      volumeClaimTemplates: [{ metadata: { name: 'www' }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Mi' } } } }],
      ...extra,
    },
  };
}

const headless = (name: string): Service => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: NS },
  spec: { clusterIP: 'None', selector: { app: name }, ports: [{ port: 80, targetPort: 8080 }] },
});

async function setVersion(store: Awaited<ReturnType<typeof startWorkloads>>['store'], name: string, version: string) {
  await store.mutate<StatefulSet>('StatefulSet', NS, name, (s) => {
    s.spec!.template.spec!.containers[0].env = [{ name: 'VERSION', value: version }];
  });
}

const versionOf = (p: Pod) => p.spec?.containers[0].env?.find((e) => e.name === 'VERSION')?.value;

t.test('OrderedReady: pods one at a time in ordinal order, stable identity, claims bound to directories', async (t) => {
  const w = await startWorkloads(t);
  const { store } = w;
  await addNode(store, 'n1');
  const allowed = new Set<string>();
  fakeKubelet(t, store, { ready: (p) => allowed.has(p.metadata?.name ?? '') });
  await store.create(headless('web'));
  await store.create(sts('web', 3));

  const web0 = await waitFor(async () => (await livePods(store)).get('web-0'), { what: 'web-0' });
  t.equal(web0.spec?.hostname, 'web-0', 'hostname is the pod name');
  t.equal(web0.spec?.subdomain, 'web', 'subdomain is the serviceName');
  t.equal(web0.metadata.labels?.['statefulset.kubernetes.io/pod-name'], 'web-0');
  t.equal(web0.metadata.labels?.['apps.kubernetes.io/pod-index'], '0');
  t.match(web0.metadata.labels?.['controller-revision-hash'], /^web-[a-z0-9]+$/);
  t.same(web0.spec?.volumes?.find((v) => v.name === 'www')?.persistentVolumeClaim, { claimName: 'www-web-0' });
  const claim = await waitFor(async () => {
    const c = await store.tryGet<PersistentVolumeClaim>('PersistentVolumeClaim', NS, 'www-web-0');
    return c?.status?.phase === 'Bound' ? c : undefined;
  }, { what: 'claim bound' });
  t.equal(claim.spec?.volumeName, `pvc-${claim.metadata.uid}`);
  t.same(claim.status?.capacity, { storage: '1Mi' });
  t.ok(claim.metadata.finalizers?.includes('kubernetes.io/pvc-protection'), 'protected while in use');
  t.notOk(claim.metadata.ownerReferences, 'Retain: the claim has no owner');
  t.ok(existsSync(join(w.stateDir, 'volumes', NS, 'www-web-0')), 'claim directory made under the state dir');

  // web-0 runs but is not ready: web-1 must not appear
  await waitFor(async () => (await store.get<Pod>('Pod', NS, 'web-0')).status?.phase === 'Running', { what: 'web-0 running' });
  await new Promise((r) => setTimeout(r, 200));
  t.notOk((await livePods(store)).has('web-1'), 'web-1 waits for web-0 to be ready');

  for (const name of ['web-0', 'web-1', 'web-2']) {
    allowed.add(name);
    await waitFor(async () => (await livePods(store)).has(name), { what: name });
    await setPodStatus(store, NS, name, { ready: true });
  }
  const st = await waitFor(async () => {
    const s = await store.get<StatefulSet>('StatefulSet', NS, 'web');
    return s.status?.readyReplicas === 3 ? s.status : undefined;
  }, { what: 'status ready 3' });
  t.match(st, { replicas: 3, readyReplicas: 3, availableReplicas: 3, currentReplicas: 3, updatedReplicas: 3, observedGeneration: 1 });
  t.equal(st.currentRevision, st.updateRevision, 'one revision');

  // the headless Service gets hostnames: DNS answers web-0.web.default.svc...
  const ep = await waitFor(async () => {
    const e = await store.tryGet<Endpoints>('Endpoints', NS, 'web');
    return e?.subsets?.[0]?.addresses?.length === 3 ? e : undefined;
  }, { what: 'endpoints' });
  t.same(ep.subsets![0].addresses!.map((a) => a.hostname).sort(), ['web-0', 'web-1', 'web-2']);

  const evs = await eventsFor(store, { kind: 'StatefulSet', metadata: { name: 'web' } });
  t.ok(evs.some((e) => e.reason === 'SuccessfulCreate' && e.message === 'create Pod web-0 in StatefulSet web successful'), 'pod event');
  t.ok(evs.some((e) => e.reason === 'SuccessfulCreate' && e.message === 'create Claim www-web-0 Pod web-0 in StatefulSet web success'), 'claim event');

  // ordered scale-down: web-2 first, then web-1; claims stay
  const order: string[] = [];
  const watch = store.watch<Pod>('Pod', { namespace: NS }, (ev) => {
    if (ev.object.metadata.deletionTimestamp && !ev.old?.metadata.deletionTimestamp) order.push(ev.object.metadata.name);
  });
  t.teardown(() => watch.stop());
  await store.mutate<StatefulSet>('StatefulSet', NS, 'web', (s) => {
    s.spec!.replicas = 1;
  });
  await waitFor(async () => [...(await livePods(store)).keys()].join() === 'web-0', { what: 'scaled to 1' });
  t.same(order, ['web-2', 'web-1'], 'highest ordinal first');
  for (const c of ['www-web-0', 'www-web-1', 'www-web-2']) {
    t.ok(await store.tryGet('PersistentVolumeClaim', NS, c), `${c} kept after scale-down`);
  }
  // scaling back up reuses the claims
  await store.mutate<StatefulSet>('StatefulSet', NS, 'web', (s) => {
    s.spec!.replicas = 2;
  });
  const web1 = await waitFor(async () => (await livePods(store)).get('web-1'), { what: 'web-1 back' });
  t.same(web1.spec?.volumes?.find((v) => v.name === 'www')?.persistentVolumeClaim, { claimName: 'www-web-1' });

  // a failed pod is recreated under the same name
  const old0 = (await store.get<Pod>('Pod', NS, 'web-0')).metadata.uid;
  await setPodStatus(store, NS, 'web-0', { phase: 'Failed', ready: false });
  await waitFor(async () => {
    const p = (await livePods(store)).get('web-0');
    return p && p.metadata.uid !== old0;
  }, { what: 'web-0 recreated' });
  t.pass('failed web-0 recreated');
});

t.test('RollingUpdate with a partition, then rollback to an earlier revision', async (t) => {
  const { store } = await startWorkloads(t);
  await addNode(store, 'n1');
  fakeKubelet(t, store);
  await store.create(sts('db', 3, { updateStrategy: { type: 'RollingUpdate', rollingUpdate: { partition: 2 } } }));
  const ready3 = async () => {
    const s = await store.get<StatefulSet>('StatefulSet', NS, 'db');
    return s.status?.readyReplicas === 3 && (s.status.observedGeneration ?? 0) >= (s.metadata.generation ?? 0) ? s : undefined;
  };
  const first = await waitFor(ready3, { what: 'db ready' });
  const rev1 = first.status!.updateRevision!;

  await setVersion(store, 'db', 'v2');
  const partial = await waitFor(async () => {
    const pods = await livePods(store);
    const s = await store.get<StatefulSet>('StatefulSet', NS, 'db');
    return pods.size === 3 && versionOf(pods.get('db-2')!) === 'v2' && s.status?.updatedReplicas === 1 && s.status.readyReplicas === 3 ? { pods, s } : undefined;
  }, { what: 'db-2 updated' });
  t.equal(versionOf(partial.pods.get('db-0')!), 'v1', 'below the partition: old template');
  t.equal(versionOf(partial.pods.get('db-1')!), 'v1');
  t.equal(partial.s.status?.currentRevision, rev1, 'current revision unchanged while partitioned');
  t.not(partial.s.status?.updateRevision, rev1);
  const rev2 = partial.s.status!.updateRevision!;

  // partition 0: the rest follows, highest ordinal first
  const replaced: string[] = [];
  const watch = store.watch<Pod>('Pod', { namespace: NS }, (ev) => {
    if (ev.type === 'ADDED') replaced.push(ev.object.metadata.name);
  });
  t.teardown(() => watch.stop());
  await store.mutate<StatefulSet>('StatefulSet', NS, 'db', (s) => {
    s.spec!.updateStrategy = { type: 'RollingUpdate', rollingUpdate: { partition: 0 } };
  });
  const done = await waitFor(async () => {
    const s = await ready3();
    return s && s.status?.currentRevision === rev2 && s.status.updatedReplicas === 3 ? s : undefined;
  }, { what: 'rolled out' });
  t.same(replaced, ['db-1', 'db-0'], 'replaced in reverse ordinal order');
  t.equal(done.status?.currentReplicas, 3);

  // back to v1: the old revision is renumbered, not duplicated
  await setVersion(store, 'db', 'v1');
  await waitFor(async () => {
    const s = await ready3();
    return s && s.status?.updateRevision === rev1 && s.status.currentRevision === rev1 && s.status.updatedReplicas === 3;
  }, { what: 'rolled back' });
  const revs = (await store.list<ControllerRevision>('ControllerRevision', { namespace: NS })).items.filter((r) => r.metadata.name.startsWith('db-'));
  t.equal(revs.length, 2, 'two revisions');
  t.equal(revs.find((r) => r.metadata.name === rev1)?.revision, 3, 'the earlier revision is now number 3');
  t.same((revs[0].data as { spec: { template: { $patch: string } } }).spec.template.$patch, 'replace', 'upstream data format');
});

t.test('Parallel: every pod at once, ready or not; scale-down all at once', async (t) => {
  const { store } = await startWorkloads(t);
  await addNode(store, 'n1');
  fakeKubelet(t, store, { ready: () => false });
  await store.create(sts('par', 3, { podManagementPolicy: 'Parallel', volumeClaimTemplates: [] }));
  const pods = await waitFor(async () => {
    const ps = await livePods(store);
    return ps.size === 3 ? ps : undefined;
  }, { what: 'three pods without any ready' });
  t.same([...pods.keys()].sort(), ['par-0', 'par-1', 'par-2']);
  await store.mutate<StatefulSet>('StatefulSet', NS, 'par', (s) => {
    s.spec!.replicas = 0;
  });
  await waitFor(async () => (await livePods(store)).size === 0, { what: 'scaled to zero although none is ready' });
  t.pass('scaled down without waiting for readiness');
});

t.test('OnDelete updates only deleted pods; whenDeleted Delete removes the claims with the set', async (t) => {
  const { store, stateDir } = await startWorkloads(t);
  await addNode(store, 'n1');
  fakeKubelet(t, store);
  await store.create(
    sts('od', 2, {
      updateStrategy: { type: 'OnDelete' },
      persistentVolumeClaimRetentionPolicy: { whenDeleted: 'Delete', whenScaled: 'Retain' },
    }),
  );
  await waitFor(async () => (await store.get<StatefulSet>('StatefulSet', NS, 'od')).status?.readyReplicas === 2, { what: 'od ready' });
  const claim = await store.get<PersistentVolumeClaim>('PersistentVolumeClaim', NS, 'www-od-0');
  t.match(claim.metadata.ownerReferences, [{ kind: 'StatefulSet', name: 'od' }], 'the set owns its claims');

  await setVersion(store, 'od', 'v2');
  await waitFor(async () => {
    const s = await store.get<StatefulSet>('StatefulSet', NS, 'od');
    return s.status?.observedGeneration === 2 && s.status.updateRevision !== s.status.currentRevision;
  }, { what: 'new update revision' });
  await new Promise((r) => setTimeout(r, 200));
  let pods = await livePods(store);
  t.equal(versionOf(pods.get('od-0')!), 'v1', 'OnDelete: not replaced by itself');
  t.equal(versionOf(pods.get('od-1')!), 'v1');
  await store.delete('Pod', NS, 'od-0');
  pods = await waitFor(async () => {
    const ps = await livePods(store);
    return ps.get('od-0') && versionOf(ps.get('od-0')!) === 'v2' ? ps : undefined;
  }, { what: 'od-0 recreated at v2' });
  t.equal(versionOf(pods.get('od-1')!), 'v1', 'od-1 untouched');

  // deleting the set takes its pods and (policy Delete) its claims and their directories
  const s = await store.get<StatefulSet>('StatefulSet', NS, 'od');
  await store.delete('StatefulSet', NS, 'od', { preconditions: { uid: s.metadata.uid } });
  await waitFor(async () => {
    const { items } = await store.list<PersistentVolumeClaim>('PersistentVolumeClaim', { namespace: NS });
    return items.filter((c) => c.metadata.name.startsWith('www-od-')).length === 0 && (await livePods(store)).size === 0;
  }, { what: 'claims and pods gone', timeoutMs: 8000 });
  t.notOk(existsSync(join(stateDir, 'volumes', NS, 'www-od-0')), 'directory removed with its claim');
});

t.test('a claim in use is kept until its pod is gone', async (t) => {
  const { store, stateDir } = await startWorkloads(t);
  await addNode(store, 'n1');
  await store.create<PersistentVolumeClaim>({
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name: 'data', namespace: NS },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '5Mi' } } },
  });
  await waitFor(async () => (await store.get<PersistentVolumeClaim>('PersistentVolumeClaim', NS, 'data')).status?.phase === 'Bound', { what: 'bound' });
  await store.create<Pod>({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'user', namespace: NS },
    spec: { containers: [{ name: 'c', image: 'kubeloop/echo' }], volumes: [{ name: 'd', persistentVolumeClaim: { claimName: 'data' } }] },
  });
  await store.delete('PersistentVolumeClaim', NS, 'data');
  await new Promise((r) => setTimeout(r, 200));
  const held = await store.tryGet<Stored<PersistentVolumeClaim>>('PersistentVolumeClaim', NS, 'data');
  t.ok(held?.metadata.deletionTimestamp, 'terminating, not gone, while a pod uses it');
  t.ok(existsSync(join(stateDir, 'volumes', NS, 'data')), 'data still there');
  await store.delete('Pod', NS, 'user', { gracePeriodSeconds: 0 });
  await waitFor(async () => !(await store.tryGet('PersistentVolumeClaim', NS, 'data')), { what: 'claim gone' });
  t.notOk(existsSync(join(stateDir, 'volumes', NS, 'data')), 'directory removed');
});
