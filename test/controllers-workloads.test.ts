import t from 'tap';
import type { Deployment, Event, Pod, ReplicaSet, ReplicationController, Stored } from '../src/api/types.js';
import type { Store } from '../src/store/types.js';
import { addNode, fakeKubelet, pod, podSpec, setPodStatus, startCluster } from './controllers-helpers.js';
import { waitFor } from './helpers/wait.js';

const NS = 'default';

function replicaSet(name: string, replicas: number, labels: Record<string, string>): ReplicaSet {
  return {
    apiVersion: 'apps/v1',
    kind: 'ReplicaSet',
    metadata: { name, namespace: NS },
    spec: { replicas, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: podSpec() } },
  };
}

function deployment(name: string, replicas: number, env = 'v1'): Deployment {
  const labels = { app: name };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: NS },
    spec: {
      replicas,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: { containers: [{ name: 'app', image: 'kubeloop/echo', env: [{ name: 'VERSION', value: env }] }] },
      },
    },
  };
}

/** the live (not terminating) pods of a controller, by owner uid */
async function podsOf(store: Store, ownerUid: string): Promise<Stored<Pod>[]> {
  const { items } = await store.list<Pod>('Pod', { namespace: NS });
  return items.filter((p) => !p.metadata.deletionTimestamp && p.metadata.ownerReferences?.some((r) => r.uid === ownerUid && r.controller));
}

async function rsOf(store: Store, d: Stored<Deployment>): Promise<Stored<ReplicaSet>[]> {
  const { items } = await store.list<ReplicaSet>('ReplicaSet', { namespace: NS });
  return items.filter((r) => r.metadata.ownerReferences?.some((o) => o.uid === d.metadata.uid));
}

t.test('a ReplicaSet scales up and down, adopts orphans, releases and replaces pods', async (t) => {
  const { store } = await startCluster(t);
  await addNode(store, 'n1');
  fakeKubelet(t, store);

  // an orphan that matches is adopted and counts towards the replicas
  await store.create(pod(NS, 'orphan', { app: 'rs' }));
  const rs = await store.create(replicaSet('web', 3, { app: 'rs' }));
  let pods = await waitFor(async () => {
    const ps = await podsOf(store, rs.metadata.uid);
    return ps.length === 3 ? ps : undefined;
  }, { what: '3 pods' });
  t.ok(pods.some((p) => p.metadata.name === 'orphan'), 'the orphan was adopted');
  for (const p of pods.filter((p) => p.metadata.name !== 'orphan')) {
    t.match(p.metadata.name, /^web-[bcdfghjklmnpqrstvwxz2456789]{5}$/, 'generated name');
    t.match(p.metadata.ownerReferences, [{ kind: 'ReplicaSet', name: 'web', controller: true, blockOwnerDeletion: true }]);
    t.same(p.metadata.labels, { app: 'rs' }, 'labels from the template');
  }
  const st = await waitFor(async () => {
    const r = await store.get<ReplicaSet>('ReplicaSet', NS, 'web');
    return r.status?.readyReplicas === 3 && r.status.availableReplicas === 3 ? r.status : undefined;
  }, { what: 'status ready 3' });
  t.match(st, { replicas: 3, fullyLabeledReplicas: 3, readyReplicas: 3, availableReplicas: 3, observedGeneration: 1 });

  // scale down: the survivor is the one that is ready; a not-ready pod goes first
  const notReady = pods.find((p) => p.metadata.name !== 'orphan')!.metadata.name;
  await setPodStatus(store, NS, notReady, { ready: false });
  await store.mutate<ReplicaSet>('ReplicaSet', NS, 'web', (r) => {
    r.spec!.replicas = 2;
  });
  pods = await waitFor(async () => {
    const ps = await podsOf(store, rs.metadata.uid);
    return ps.length === 2 ? ps : undefined;
  }, { what: 'scaled down to 2' });
  t.notOk(pods.some((p) => p.metadata.name === notReady), 'the not-ready pod was deleted first');

  // a deleted pod is replaced
  const victim = pods[0].metadata.name;
  await store.delete('Pod', NS, victim, { gracePeriodSeconds: 0 });
  pods = await waitFor(async () => {
    const ps = await podsOf(store, rs.metadata.uid);
    return ps.length === 2 && !ps.some((p) => p.metadata.name === victim) ? ps : undefined;
  }, { what: 'replacement' });

  // a failed pod is replaced (it stays, finished, as upstream leaves it)
  const failed = pods[0].metadata.name;
  await setPodStatus(store, NS, failed, { phase: 'Failed', ready: false });
  await waitFor(async () => (await podsOf(store, rs.metadata.uid)).filter((p) => p.status?.phase !== 'Failed').length === 2, {
    what: 'failed pod replaced',
  });

  // a pod whose labels stop matching is released (and replaced)
  const leaver = (await podsOf(store, rs.metadata.uid)).find((p) => p.status?.phase !== 'Failed')!.metadata.name;
  await store.mutate<Pod>('Pod', NS, leaver, (p) => {
    p.metadata!.labels = { app: 'debug' };
  });
  const released = await waitFor(async () => {
    const p = await store.get<Pod>('Pod', NS, leaver);
    return p.metadata.ownerReferences === undefined ? p : undefined;
  }, { what: 'released' });
  t.notOk(released.metadata.ownerReferences, 'owner reference removed');
  await waitFor(async () => (await podsOf(store, rs.metadata.uid)).filter((p) => p.status?.phase !== 'Failed').length === 2, {
    what: 'replaced after release',
  });

  // scale to zero
  await store.mutate<ReplicaSet>('ReplicaSet', NS, 'web', (r) => {
    r.spec!.replicas = 0;
  });
  await waitFor(async () => (await podsOf(store, rs.metadata.uid)).filter((p) => p.status?.phase !== 'Failed').length === 0, {
    what: 'scaled to 0',
  });
  const events = (await store.list<Event>('Event', { namespace: NS })).items.filter((e) => e.involvedObject.name === 'web');
  t.ok(events.some((e) => e.reason === 'SuccessfulCreate' && /^Created pod: web-/.test(e.message ?? '')), 'SuccessfulCreate event');
  t.ok(events.some((e) => e.reason === 'SuccessfulDelete' && e.source?.component === 'replicaset-controller'), 'SuccessfulDelete event');
});

t.test('a ReplicationController keeps its replicas with an equality selector', async (t) => {
  const { store } = await startCluster(t);
  const rc = await store.create<ReplicationController>({
    apiVersion: 'v1',
    kind: 'ReplicationController',
    metadata: { name: 'legacy', namespace: NS },
    spec: { replicas: 2, selector: { app: 'legacy' }, template: { metadata: { labels: { app: 'legacy' } }, spec: podSpec() } },
  });
  const pods = await waitFor(async () => {
    const ps = await podsOf(store, rc.metadata.uid);
    return ps.length === 2 ? ps : undefined;
  }, { what: '2 pods' });
  t.match(pods[0].metadata.ownerReferences, [{ kind: 'ReplicationController', apiVersion: 'v1', name: 'legacy' }]);
  await waitFor(async () => (await store.get<ReplicationController>('ReplicationController', NS, 'legacy')).status?.replicas === 2);
});

t.test('a Deployment rolls out, rolls a new template with revisions, rolls back, and is garbage-collected', async (t) => {
  const { store } = await startCluster(t);
  await addNode(store, 'n1');
  fakeKubelet(t, store);

  const d = await store.create(deployment('app', 3));
  const first = await waitFor(async () => {
    const rss = await rsOf(store, d);
    return rss.length === 1 && rss[0].status?.availableReplicas === 3 ? rss[0] : undefined;
  }, { what: 'first replica set available' });
  const hash = first.metadata.labels?.['pod-template-hash'];
  t.match(hash, /^[bcdfghjklmnpqrstvwxz2456789]{1,10}$/, 'pod-template-hash');
  t.equal(first.metadata.name, `app-${hash}`);
  t.equal(first.metadata.annotations?.['deployment.kubernetes.io/revision'], '1');
  t.equal(first.spec?.selector.matchLabels?.['pod-template-hash'], hash, 'hash in the selector');
  t.equal(first.spec?.template?.metadata?.labels?.['pod-template-hash'], hash, 'hash in the template');
  t.match(first.metadata.ownerReferences, [{ kind: 'Deployment', name: 'app', controller: true }]);
  const pods1 = await podsOf(store, first.metadata.uid);
  t.ok(pods1.every((p) => p.metadata.labels?.['pod-template-hash'] === hash), 'pods carry the hash');

  let dep = await waitFor(async () => {
    const x = await store.get<Deployment>('Deployment', NS, 'app');
    const progressing = x.status?.conditions?.find((c) => c.type === 'Progressing');
    return x.status?.availableReplicas === 3 && progressing?.reason === 'NewReplicaSetAvailable' ? x : undefined;
  }, { what: 'deployment complete' });
  t.match(dep.status, { replicas: 3, updatedReplicas: 3, readyReplicas: 3, availableReplicas: 3, observedGeneration: dep.metadata.generation });
  t.match(dep.status!.conditions!.find((c) => c.type === 'Available'), { status: 'True', reason: 'MinimumReplicasAvailable' });
  t.equal(dep.metadata.annotations?.['deployment.kubernetes.io/revision'], '1');

  // a new template: revision 2, the old replica set ends at 0, never fewer than 3 - 0 available... (25% of 3 rounds down to 0)
  await store.mutate<Deployment>('Deployment', NS, 'app', (x) => {
    x.spec!.template.spec!.containers[0].env = [{ name: 'VERSION', value: 'v2' }];
  });
  const second = await waitFor(async () => {
    const rss = await rsOf(store, d);
    const cur = rss.find((r) => r.metadata.annotations?.['deployment.kubernetes.io/revision'] === '2');
    const old = rss.find((r) => r.metadata.uid === first.metadata.uid);
    return cur?.status?.availableReplicas === 3 && old?.spec?.replicas === 0 && old.status?.replicas === 0 ? cur : undefined;
  }, { what: 'rolled to revision 2', timeoutMs: 10_000 });
  t.not(second.metadata.name, first.metadata.name, 'a new replica set for the new template');
  dep = await waitFor(async () => {
    const x = await store.get<Deployment>('Deployment', NS, 'app');
    return x.status?.updatedReplicas === 3 && x.status.replicas === 3 && x.metadata.annotations?.['deployment.kubernetes.io/revision'] === '2' ? x : undefined;
  }, { what: 'deployment status after rollout' });
  const events = (await store.list<Event>('Event', { namespace: NS })).items.filter((e) => e.reason === 'ScalingReplicaSet');
  t.ok(events.some((e) => e.message === `Scaled up replica set ${first.metadata.name} from 0 to 3`), 'ScalingReplicaSet up');
  t.ok(events.some((e) => /^Scaled down replica set app-\w+ from \d to \d$/.test(e.message ?? '')), 'ScalingReplicaSet down');

  // back to the first template (what `kubectl rollout undo` writes): the old replica set is reused as revision 3
  await store.mutate<Deployment>('Deployment', NS, 'app', (x) => {
    x.spec!.template.spec!.containers[0].env = [{ name: 'VERSION', value: 'v1' }];
  });
  const back = await waitFor(async () => {
    const rss = await rsOf(store, d);
    const r = rss.find((x) => x.metadata.uid === first.metadata.uid);
    const s = rss.find((x) => x.metadata.uid === second.metadata.uid);
    return r?.status?.availableReplicas === 3 && s?.status?.replicas === 0 ? r : undefined;
  }, { what: 'rolled back', timeoutMs: 10_000 });
  t.equal(back.metadata.annotations?.['deployment.kubernetes.io/revision'], '3', 'the reused replica set gets the next revision');
  t.equal(back.metadata.annotations?.['deployment.kubernetes.io/revision-history'], '1');
  t.equal((await rsOf(store, d)).length, 2, 'no third replica set');

  // deleting the deployment removes its replica sets and their pods (background cascade)
  await store.delete('Deployment', NS, 'app');
  await waitFor(async () => {
    const { items: rss } = await store.list<ReplicaSet>('ReplicaSet', { namespace: NS });
    const { items: pods } = await store.list<Pod>('Pod', { namespace: NS });
    return rss.length === 0 && pods.length === 0;
  }, { what: 'replica sets and pods collected', timeoutMs: 10_000 });
  t.pass('cascade complete');
});

t.test('a Deployment scaled mid-way, paused, and with a revision history limit', async (t) => {
  const { store } = await startCluster(t);
  await addNode(store, 'n1');
  fakeKubelet(t, store);
  const d = await store.create({ ...deployment('hist', 2), spec: { ...deployment('hist', 2).spec!, revisionHistoryLimit: 1 } });
  for (const v of ['v2', 'v3']) {
    await waitFor(async () => (await store.get<Deployment>('Deployment', NS, 'hist')).status?.updatedReplicas === 2 &&
      (await store.get<Deployment>('Deployment', NS, 'hist')).status?.replicas === 2, { what: `rollout before ${v}`, timeoutMs: 10_000 });
    await store.mutate<Deployment>('Deployment', NS, 'hist', (x) => {
      x.spec!.template.spec!.containers[0].env = [{ name: 'VERSION', value: v }];
    });
  }
  const rss = await waitFor(async () => {
    const all = await rsOf(store, d);
    const cur = all.find((r) => r.metadata.annotations?.['deployment.kubernetes.io/revision'] === '3');
    return all.length === 2 && cur?.status?.availableReplicas === 2 ? all : undefined;
  }, { what: 'history limited to one old replica set', timeoutMs: 10_000 });
  t.same(rss.map((r) => r.metadata.annotations?.['deployment.kubernetes.io/revision']).sort(), ['2', '3'], 'revision 1 cleaned up');

  // scale up: the current replica set follows
  await store.mutate<Deployment>('Deployment', NS, 'hist', (x) => {
    x.spec!.replicas = 4;
  });
  await waitFor(async () => (await store.get<Deployment>('Deployment', NS, 'hist')).status?.availableReplicas === 4, { what: 'scaled to 4' });

  // paused: a template change makes no new replica set
  await store.mutate<Deployment>('Deployment', NS, 'hist', (x) => {
    x.spec!.paused = true;
    x.spec!.template.spec!.containers[0].env = [{ name: 'VERSION', value: 'v4' }];
  });
  const paused = await waitFor(async () => {
    const x = await store.get<Deployment>('Deployment', NS, 'hist');
    return x.status?.conditions?.find((c) => c.type === 'Progressing' && c.reason === 'DeploymentPaused') ? x : undefined;
  }, { what: 'paused condition' });
  t.equal(paused.status!.conditions!.find((c) => c.type === 'Progressing')!.status, 'Unknown');
  const whilePaused = await rsOf(store, d);
  t.notOk(
    whilePaused.some((r) => JSON.stringify(r.spec?.template).includes('v4')),
    'no replica set for the new template while paused',
  );
  t.ok(whilePaused.some((r) => r.spec?.replicas === 4), 'the running replica set keeps its pods');
  await store.mutate<Deployment>('Deployment', NS, 'hist', (x) => {
    x.spec!.paused = false;
  });
  await waitFor(async () => {
    const all = await rsOf(store, d);
    return all.some((r) => r.metadata.annotations?.['deployment.kubernetes.io/revision'] === '4' && r.status?.availableReplicas === 4);
  }, { what: 'resumed rollout', timeoutMs: 10_000 });
  t.pass('resumed');
});

t.test('RollingUpdate stays within maxSurge / maxUnavailable; Recreate never runs old and new together', async (t) => {
  const { store } = await startCluster(t);
  await addNode(store, 'n1');
  fakeKubelet(t, store);

  const rolling = deployment('roll', 4);
  rolling.spec!.strategy = { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } };
  const recreate = deployment('rec', 3);
  recreate.spec!.strategy = { type: 'Recreate' };
  const dRoll = await store.create(rolling);
  const dRec = await store.create(recreate);
  for (const name of ['roll', 'rec']) {
    await waitFor(async () => (await store.get<Deployment>('Deployment', NS, name)).status?.availableReplicas === (name === 'roll' ? 4 : 3), {
      what: `${name} available`,
    });
  }

  // from here on, watch every replica set and pod change
  const specs = new Map<string, number>();
  const livePods = new Map<string, Stored<Pod>>();
  let maxSpecSum = 0;
  let minReady = Infinity;
  let overlap = false;
  const ownerOf = new Map<string, string>();
  for (const r of (await store.list<ReplicaSet>('ReplicaSet', { namespace: NS })).items) {
    ownerOf.set(r.metadata.uid, r.metadata.ownerReferences![0].name);
    if (r.metadata.ownerReferences![0].name === 'roll') specs.set(r.metadata.uid, r.spec!.replicas!);
  }
  for (const p of (await store.list<Pod>('Pod', { namespace: NS })).items) livePods.set(p.metadata.name, p);
  const check = () => {
    maxSpecSum = Math.max(maxSpecSum, [...specs.values()].reduce((a, b) => a + b, 0));
    const pods = [...livePods.values()].filter((p) => !p.metadata.deletionTimestamp && p.status?.phase !== 'Failed');
    const rsOfPod = (p: Pod) => p.metadata!.ownerReferences?.[0]?.uid ?? '';
    const rollReady = pods.filter((p) => ownerOf.get(rsOfPod(p)) === 'roll' && p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
    minReady = Math.min(minReady, rollReady.length);
    const recHashes = new Set(pods.filter((p) => ownerOf.get(rsOfPod(p)) === 'rec').map((p) => p.metadata!.labels?.['pod-template-hash']));
    if (recHashes.size > 1) overlap = true;
  };
  const w1 = store.watch<ReplicaSet>('ReplicaSet', { resourceVersion: store.resourceVersion }, (ev) => {
    const r = ev.object;
    ownerOf.set(r.metadata.uid, r.metadata.ownerReferences?.[0]?.name ?? '');
    if (ownerOf.get(r.metadata.uid) !== 'roll') return;
    if (ev.type === 'DELETED') specs.delete(r.metadata.uid);
    else specs.set(r.metadata.uid, r.spec?.replicas ?? 0);
    check();
  });
  const w2 = store.watch<Pod>('Pod', { resourceVersion: store.resourceVersion }, (ev) => {
    if (ev.type === 'DELETED') livePods.delete(ev.object.metadata.name);
    else livePods.set(ev.object.metadata.name, ev.object);
    check();
  });
  t.teardown(() => {
    w1.stop();
    w2.stop();
  });

  for (const name of ['roll', 'rec']) {
    await store.mutate<Deployment>('Deployment', NS, name, (x) => {
      x.spec!.template.spec!.containers[0].env = [{ name: 'VERSION', value: 'v2' }];
    });
  }
  for (const [d, n] of [[dRoll, 4], [dRec, 3]] as const) {
    await waitFor(async () => {
      const rss = await rsOf(store, d);
      const cur = rss.find((r) => r.metadata.annotations?.['deployment.kubernetes.io/revision'] === '2');
      return cur?.status?.availableReplicas === n && rss.every((r) => r === cur || r.status?.replicas === 0);
    }, { what: `${d.metadata.name} rolled out`, timeoutMs: 10_000 });
  }
  t.ok(maxSpecSum <= 5, `replica sets never asked for more than replicas + maxSurge (max ${maxSpecSum})`);
  t.ok(maxSpecSum === 5, 'the surge was used');
  t.equal(minReady, 4, 'ready pods never fell below replicas - maxUnavailable');
  t.notOk(overlap, 'Recreate: no moment with pods of two templates');
  const rec = await store.get<Deployment>('Deployment', NS, 'rec');
  t.match(rec.status, { replicas: 3, updatedReplicas: 3, availableReplicas: 3 });
});
