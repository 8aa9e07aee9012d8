/**
 * Leader election on the `kube-system/kubeloop-controller-manager` Lease: two electors over one
 * store (the registry, embedded and on a real redis-server), durations shortened; and the Lease
 * kind through the API with the real kubectl.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import type { Lease } from '../src/api/types.js';
import { LEASE_NAME, LEASE_NAMESPACE, LeaderElector, microTime } from '../src/controllers/leader.js';
import { ApiServer, kubeconfigYaml } from '../src/server/index.js';
import { RedisStorage } from '../src/store/backends/redis.js';
import { type ClosableStore, createEmbeddedStore, createStore } from '../src/store/embedded.js';
import { InformerFactory } from '../src/store/informer.js';
import type { Store } from '../src/store/types.js';
import { testPki } from './helpers/api.js';
import { startRedisServer } from './helpers/redis-server.js';
import { waitFor } from './helpers/wait.js';

const quiet = pino({ level: process.env.KUBELOOP_TEST_LOG ?? 'silent' });
/** 1 s lease (the shortest the seconds field holds), 600 ms renew deadline, 150 ms retry */
const FAST = { leaseDurationMs: 1000, renewDeadlineMs: 600, retryPeriodMs: 150 };

interface Tracked {
  elector: LeaderElector;
  /** [start, end) of each leading interval, by wall clock; end undefined while leading */
  spans: { from: number; to?: number }[];
  id: string;
}

/** An elector that records when it led; stopped by the test's teardown. */
function elector(t: { teardown(fn: () => unknown): void }, store: Store, id: string, o: Partial<typeof FAST> = {}): Tracked {
  const spans: Tracked['spans'] = [];
  const elector = new LeaderElector({
    store,
    log: quiet,
    identity: id,
    ...FAST,
    ...o,
    onStartedLeading: () => void spans.push({ from: Date.now() }),
    onStoppedLeading: () => void (spans[spans.length - 1].to = Date.now()),
  });
  t.teardown(() => elector.stop());
  return { elector, spans, id };
}

const lease = (store: Store): Promise<Lease | undefined> => store.tryGet<Lease>('Lease', LEASE_NAMESPACE, LEASE_NAME);

/** no instant at which two electors led together */
function noOverlap(a: Tracked, b: Tracked): boolean {
  const end = (s: { to?: number }): number => s.to ?? Infinity;
  return a.spans.every((x) => b.spans.every((y) => end(x) <= y.from || end(y) <= x.from));
}

t.test('options are checked: a renew deadline past the lease duration is refused', async (t) => {
  const store = await createEmbeddedStore();
  t.teardown(() => store.close());
  const base = { store, log: quiet, identity: 'a', onStartedLeading: () => undefined, onStoppedLeading: () => undefined };
  t.throws(() => new LeaderElector({ ...base, leaseDurationMs: 1000, renewDeadlineMs: 1000 }), /leaseDuration \(1000 ms\) must be greater than renewDeadline/);
  t.throws(() => new LeaderElector({ ...base, renewDeadlineMs: 1000, retryPeriodMs: 1000 }), /renewDeadline \(1000 ms\) must be greater than retryPeriod/);
  t.throws(() => new LeaderElector({ ...base, identity: '' }), /identity must not be empty/);
  t.equal(microTime(Date.UTC(2026, 0, 2, 3, 4, 5, 678)), '2026-01-02T03:04:05.678000Z');
});

t.test('two electors on one store: exactly one leads and renews; a graceful stop hands over at once', async (t) => {
  const store = await createEmbeddedStore();
  t.teardown(() => store.close());
  // a long lease: the standby can only lead within this test's waits if the lease is released
  const slow = { leaseDurationMs: 30_000, renewDeadlineMs: 600, retryPeriodMs: 150 };
  const a = elector(t, store, 'daemon-a', slow);
  const b = elector(t, store, 'daemon-b', slow);
  a.elector.start();
  b.elector.start();
  const first = await waitFor(() => [a, b].find((x) => x.elector.isLeader), { what: 'a leader' });
  const second = first === a ? b : a;
  const l0 = await lease(store);
  t.equal(l0?.spec?.holderIdentity, first.id);
  t.equal(l0?.spec?.leaseDurationSeconds, 30);
  t.equal(l0?.spec?.leaseTransitions, 0);
  t.match(l0?.spec?.renewTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'MicroTime');
  // the leader renews (renewTime moves) and the standby stays standby meanwhile
  await waitFor(async () => (await lease(store))?.spec?.renewTime !== l0?.spec?.renewTime, { what: 'a renewal' });
  const l1 = await lease(store);
  t.equal(l1?.spec?.acquireTime, l0?.spec?.acquireTime, 'a renewal keeps acquireTime');
  t.equal(second.elector.isLeader, false);
  t.equal(second.spans.length, 0);

  await first.elector.stop();
  t.equal(first.elector.isLeader, false);
  t.equal(first.spans.length, 1);
  t.ok(first.spans[0].to, 'onStoppedLeading ran on stop');
  await waitFor(() => second.elector.isLeader, { what: 'the standby to take over the released lease' });
  const l2 = await lease(store);
  t.equal(l2?.spec?.holderIdentity, second.id);
  t.equal(l2?.spec?.leaseTransitions, 1, 'a change of holder counts a transition');
  t.ok(noOverlap(a, b), 'never two leaders at once');
});

t.test('a crashed holder (no release): the standby waits a full lease duration by its own clock, whatever renewTime says', async (t) => {
  const store = await createEmbeddedStore();
  t.teardown(() => store.close());
  for (const renewTime of ['1970-01-01T00:00:00.000000Z', '2999-01-01T00:00:00.000000Z']) {
    const existing = await lease(store);
    const spec = { holderIdentity: 'crashed', leaseDurationSeconds: 1, acquireTime: renewTime, renewTime, leaseTransitions: 4 };
    if (existing) await store.update({ ...existing, spec });
    else await store.create<Lease>({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: LEASE_NAME, namespace: LEASE_NAMESPACE }, spec });
    const b = elector(t, store, `standby-${renewTime.slice(0, 4)}`);
    const started = Date.now();
    b.elector.start();
    await waitFor(() => b.elector.isLeader, { what: 'the standby to take over the expired lease' });
    t.ok(b.spans[0].from - started >= 1000, `took over after ${b.spans[0].from - started} ms, not before the 1 s lease ran out on its own clock (renewTime ${renewTime})`);
    const l = await lease(store);
    t.equal(l?.spec?.holderIdentity, b.id);
    t.equal(l?.spec?.leaseTransitions, 5);
    await b.elector.stop();
  }
});

t.test('a leader whose lease is taken stops leading, and leads again once it is free', async (t) => {
  const store = await createEmbeddedStore();
  t.teardown(() => store.close());
  const a = elector(t, store, 'daemon-a');
  a.elector.start();
  await waitFor(() => a.elector.isLeader);
  const cur = await lease(store);
  // an intruder writes itself in (as a daemon whose clock said the lease had expired would)
  await store.update({ ...cur!, spec: { ...cur!.spec, holderIdentity: 'intruder', renewTime: microTime(Date.now()) } });
  await waitFor(() => !a.elector.isLeader && a.spans[0].to !== undefined, { what: 'the leader to step down' });
  // the intruder never renews: a notices the expiry by its own clock and leads again
  await waitFor(() => a.elector.isLeader && a.spans.length === 2, { what: 'a to lead again', timeoutMs: 5000 });
  t.equal((await lease(store))?.spec?.holderIdentity, 'daemon-a');
});

t.test('several daemons on one redis-server: one leads; the store going away stops it leading; back, one leads again', async (t) => {
  const srv = await startRedisServer({ appendonly: true });
  t.teardown(() => srv.close());
  const stores: ClosableStore[] = [];
  for (let i = 0; i < 2; i++) {
    const storage = await RedisStorage.open({ url: srv.url, log: quiet, commandTimeoutMs: 300, watchOutageMs: 60_000 });
    const store = await createStore(storage, { log: quiet });
    stores.push(store);
  }
  t.teardown(async () => {
    for (const s of stores) await s.close();
  });
  const a = elector(t, stores[0], 'daemon-a');
  const b = elector(t, stores[1], 'daemon-b');
  a.elector.start();
  b.elector.start();
  const first = await waitFor(() => [a, b].find((x) => x.elector.isLeader), { what: 'a leader' });
  // the other daemon's registry sees the lease through the redis change feed
  const other = first === a ? stores[1] : stores[0];
  await waitFor(async () => (await lease(other))?.spec?.holderIdentity === first.id, { what: 'the lease on the other daemon' });

  await srv.stop('SIGKILL');
  const killed = Date.now();
  await waitFor(() => !a.elector.isLeader && !b.elector.isLeader && first.spans[0].to !== undefined, { what: 'the leader to step down', timeoutMs: 5000 });
  t.comment(`the leader stepped down ${first.spans[0].to! - killed} ms after redis-server was killed (renew deadline ${FAST.renewDeadlineMs} ms)`);
  await srv.restart();
  await waitFor(() => a.elector.isLeader || b.elector.isLeader, { what: 'a leader after the restart', timeoutMs: 10_000 });
  t.ok(noOverlap(a, b), 'never two leaders at once');
});

t.test('the Lease kind through the API: kubectl get leases -A, and bad specs refused with the field', async (t) => {
  const store = await createEmbeddedStore();
  const informers = new InformerFactory(store);
  const dir = mkdtempSync(join(tmpdir(), 'kubeloop-leader-'));
  const pki = await testPki(dir);
  const api = new ApiServer({ store, informers, log: quiet, address: '127.0.0.1', port: 0, stateDir: dir, tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca } });
  await api.start();
  t.teardown(async () => {
    await api.stop();
    informers.stop();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, kubeconfigYaml({ server: api.url, ca: pki.ca, clientCert: pki.clientCert, clientKey: pki.clientKey }), { mode: 0o600 });
  const kubectl = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      execFile('kubectl', ['--kubeconfig', kubeconfig, '--cache-dir', join(dir, 'cache'), ...args], { timeout: 20_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });

  const a = elector(t, store, 'daemon-a');
  a.elector.start();
  await waitFor(() => a.elector.isLeader);
  const get = await kubectl('get', 'leases', '-A');
  t.equal(get.code, 0, get.stderr);
  t.match(get.stdout, /^NAMESPACE\s+NAME\s+HOLDER\s+AGE\n/);
  t.match(get.stdout, /kube-system\s+kubeloop-controller-manager\s+daemon-a\s+\d+s/);
  const res = await kubectl('api-resources', '--api-group=coordination.k8s.io');
  t.match(res.stdout, /leases\s+coordination\.k8s\.io\/v1\s+true\s+Lease/);

  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: mine, namespace: default}\nspec: {leaseDurationSeconds: 0, leaseTransitions: -1, renewTime: "yesterday"}\n');
  const r = await kubectl('apply', '-f', bad);
  t.not(r.code, 0);
  t.match(r.stderr, /The Lease "mine" is invalid/);
  t.match(r.stderr, /spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0/);
  t.match(r.stderr, /spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0/);
  t.equal(await store.tryGet('Lease', 'default', 'mine'), undefined, 'nothing stored');
});
