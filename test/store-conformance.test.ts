/**
 * One conformance suite for every storage backend (issue 15): the same cases, from a table of
 * factories, against the `Storage` seam and against the registry (`createStore`) over it.
 * `embedded` runs journaled in a temp dir with fsync on; `redis` against a real redis-server
 * of this file's own on a free loopback port (each case under its own key prefix).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import { isApiError } from '../src/api/errors.js';
import type { Service } from '../src/api/types.js';
import { EmbeddedStorage } from '../src/store/backends/embedded.js';
import { RedisStorage } from '../src/store/backends/redis.js';
import { createStore } from '../src/store/embedded.js';
import type { ChangeBatch, Storage, StorageOp } from '../src/store/storage.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { waitFor } from './helpers/wait.js';

const log = pino({ level: 'silent' });

interface Opened {
  storage: Storage;
  /** a second instance on the same data (same server and prefix), where the backend allows one */
  second?: () => Promise<Storage>;
  /** close, then open the same data again */
  reopen: () => Promise<Storage>;
}

interface Backend {
  name: string;
  /** fresh, empty data for one case */
  open(o?: { historySize?: number }): Promise<Opened>;
}

const dirs: string[] = [];
const embedded: Backend = {
  name: 'embedded',
  async open(o = {}) {
    const dir = await mkdtemp(join(tmpdir(), 'kubeloop-conformance-'));
    dirs.push(dir);
    const make = () => EmbeddedStorage.open({ dir, fsync: true, historySize: o.historySize, log });
    const storage = await make();
    // one process owns a journal: the two-writer race runs two loops on one instance
    return { storage, reopen: async () => (await storage.close(), make()) };
  },
};

let server: RedisServer | undefined;
let prefixN = 0;
const redis: Backend = {
  name: 'redis',
  async open(o = {}) {
    const keyPrefix = `conf${++prefixN}:`;
    const make = () => RedisStorage.open({ url: server!.url, log, keyPrefix, historySize: o.historySize });
    const storage = await make();
    return { storage, second: make, reopen: async () => (await storage.close(), make()) };
  },
};

t.before(async () => {
  server = await startRedisServer();
});
t.teardown(async () => {
  await server?.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const v = (o: unknown) => JSON.stringify(o);
const create = (key: string, value: unknown = { k: key }): StorageOp => ({ op: 'create', key, value: v(value) });

async function ok(s: Storage, ops: StorageOp[]): Promise<number> {
  const r = await s.commit(ops);
  if (!r.ok) throw new Error(`commit failed at op ${r.index}: ${JSON.stringify(r)}`);
  return r.rv;
}

/** collects a watch's batches; `until(n)` waits for the n-th */
function collect(s: Storage, from: number) {
  const batches: ChangeBatch[] = [];
  let error: Error | undefined;
  const w = s.watch(from, (b) => batches.push(b), (e) => (error = e));
  return {
    batches,
    error: () => error,
    stop: () => w.stop(),
    until: (n: number) => waitFor(() => batches.length >= n || error, { what: `${n} batches (have ${batches.length})`, timeoutMs: 10_000 }),
  };
}

for (const b of [embedded, redis]) {
  t.test(`${b.name}: Storage`, async (t) => {
    const opened: Opened[] = [];
    const open = async (o?: { historySize?: number }) => {
      const x = await b.open(o);
      opened.push(x);
      return x;
    };
    t.teardown(async () => {
      for (const x of opened) await x.storage.close().catch(() => undefined);
    });

    t.test('create-if-absent: a second create fails with the current record', async (t) => {
      const { storage: s } = await open();
      const rv = await ok(s, [create('ConfigMap/default/a', { n: 1 })]);
      const r = await s.commit([create('ConfigMap/default/a', { n: 2 })]);
      t.same(r, { ok: false, index: 0, current: { key: 'ConfigMap/default/a', value: v({ n: 1 }), rv } });
      t.same(await s.get('ConfigMap/default/a'), { key: 'ConfigMap/default/a', value: v({ n: 1 }), rv }, 'the first value stays');
    });

    t.test('update and delete with expectRv: a stale one fails with the current record', async (t) => {
      const { storage: s } = await open();
      const k = 'ConfigMap/default/b';
      const rv1 = await ok(s, [create(k, { n: 1 })]);
      const rv2 = await ok(s, [{ op: 'update', key: k, value: v({ n: 2 }), expectRv: rv1 }]);
      t.ok(rv2 > rv1, 'the update has a newer revision');
      const cur = { key: k, value: v({ n: 2 }), rv: rv2 };
      t.same(await s.commit([{ op: 'update', key: k, value: v({ n: 3 }), expectRv: rv1 }]), { ok: false, index: 0, current: cur }, 'stale update');
      t.same(await s.commit([{ op: 'delete', key: k, expectRv: rv1 }]), { ok: false, index: 0, current: cur }, 'stale delete');
      t.same(await s.get(k), cur, 'unchanged by the failed ops');
      const rv3 = await ok(s, [{ op: 'delete', key: k, expectRv: rv2 }]);
      t.ok(rv3 > rv2);
      t.equal(await s.get(k), undefined, 'deleted');
    });

    t.test('an unconditional update or delete of a missing key fails', async (t) => {
      const { storage: s } = await open();
      const before = await s.currentRv();
      const u = await s.commit([{ op: 'update', key: 'ConfigMap/default/none', value: v({}) }]);
      t.same(u, { ok: false, index: 0, current: undefined });
      const d = await s.commit([{ op: 'delete', key: 'ConfigMap/default/none' }]);
      t.same(d, { ok: false, index: 0, current: undefined });
      t.equal(await s.get('ConfigMap/default/none'), undefined, 'not created by the update');
      t.equal(await s.currentRv(), before, 'no revision used');
    });

    t.test('transactions are all-or-nothing', async (t) => {
      const { storage: s } = await open();
      const rvTaken = await ok(s, [create('~ip/127.96.0.1', { owner: 'x' })]);
      const before = await s.currentRv();
      t.equal(before, rvTaken);
      const r = await s.commit([create('Service/default/web'), create('~ip/127.96.0.1', { owner: 'web' })]);
      t.same(r, { ok: false, index: 1, current: { key: '~ip/127.96.0.1', value: v({ owner: 'x' }), rv: rvTaken } }, 'the second op fails');
      t.equal(await s.get('Service/default/web'), undefined, 'the first op is not applied');
      t.equal(await s.currentRv(), before, 'the revision is unchanged');
      const rv = await ok(s, [create('Service/default/web'), create('~ip/127.96.0.2', { owner: 'web' }), { op: 'delete', key: '~ip/127.96.0.1' }]);
      t.equal((await s.get('Service/default/web'))?.rv, rv, 'every record of one commit carries its revision');
      t.equal((await s.get('~ip/127.96.0.2'))?.rv, rv);
      t.equal(await s.get('~ip/127.96.0.1'), undefined);
    });

    t.test('list(prefix): its revision and prefix isolation', async (t) => {
      const { storage: s } = await open();
      await ok(s, [create('Service/default/a'), create('Service/kube-system/b')]);
      await ok(s, [create('ServiceAccount/default/a'), create('ServiceAccount//x')]);
      const last = await ok(s, [create('Services/default/c'), create('~port/30001')]);
      const svc = await s.list('Service/');
      t.same(svc.records.map((r) => r.key).sort(), ['Service/default/a', 'Service/kube-system/b'], 'Service/ holds no ServiceAccount');
      t.ok(svc.rv >= last, `the list's rv ${svc.rv} covers the last commit ${last}`);
      t.same((await s.list('ServiceAccount/')).records.map((r) => r.key).sort(), ['ServiceAccount//x', 'ServiceAccount/default/a']);
      t.same((await s.list('Service/default/')).records.map((r) => r.key), ['Service/default/a'], 'a namespace prefix');
      t.same((await s.list('~port/')).records.map((r) => r.key), ['~port/30001']);
      t.equal((await s.list('')).records.length, 6, "'' lists everything");
      t.same((await s.list('Secret/')).records, [], 'nothing under an unused prefix');
    });

    t.test('watch: every batch in order, from 0 and from a middle revision, then live', async (t) => {
      const { storage: s } = await open();
      const rvs: number[] = [];
      for (let i = 0; i < 30; i++) {
        const k = `ConfigMap/default/w${i % 7}`;
        const cur = await s.get(k);
        rvs.push(await ok(s, [cur ? (i % 5 === 0 ? { op: 'delete', key: k, expectRv: cur.rv } : { op: 'update', key: k, value: v({ i }), expectRv: cur.rv }) : create(k, { i })]));
      }
      const all = collect(s, 0);
      t.teardown(all.stop);
      await all.until(30);
      t.same(all.batches.map((x) => x.rv), rvs, 'from 0: every batch, in order');
      const mid = rvs[14];
      const half = collect(s, mid);
      t.teardown(half.stop);
      await half.until(15);
      t.same(half.batches.map((x) => x.rv), rvs.slice(15), 'from a middle rv: exactly what followed it');
      const live = await ok(s, [create('ConfigMap/default/live', { l: 1 }), { op: 'delete', key: 'ConfigMap/default/w2' }]);
      await all.until(31);
      await half.until(16);
      const lastBatch = all.batches[30];
      t.equal(lastBatch.rv, live, 'a live commit arrives after the replay');
      t.same(lastBatch.changes.map((c) => [c.key, c.value]), [['ConfigMap/default/live', v({ l: 1 })], ['ConfigMap/default/w2', undefined]], 'with its changes (a delete has no value)');
      t.equal(half.batches[15].rv, live);
      t.equal(all.error(), undefined);
    });

    t.test('watch resumes from the last revision seen, with no gap and no repeat', async (t) => {
      const { storage: s } = await open();
      for (let i = 0; i < 10; i++) await ok(s, [create(`ConfigMap/default/r${i}`)]);
      const first = collect(s, 0);
      await first.until(10);
      first.stop();
      const seen = first.batches.at(-1)!.rv;
      const more: number[] = [];
      for (let i = 10; i < 20; i++) more.push(await ok(s, [create(`ConfigMap/default/r${i}`)]));
      const again = collect(s, seen);
      t.teardown(again.stop);
      await again.until(10);
      t.same(again.batches.map((x) => x.rv), more, 'exactly the commits after the last one seen');
      t.same(again.batches.map((x) => x.changes[0].key), more.map((_, i) => `ConfigMap/default/r${i + 10}`));
    });

    t.test('a watch from before the retained window ends with Expired', async (t) => {
      const { storage: s } = await open({ historySize: 5 });
      // the window is at least historySize: redis trims its stream by whole macro nodes (~100
      // entries), the embedded backend in steps of 1,024; go well past both (100 at a time)
      for (let i = 0; i < 1500; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => ok(s, [create(`ConfigMap/default/e${i + j}`)])));
      const w = collect(s, 1);
      t.teardown(w.stop);
      const err = await waitFor(() => w.error(), { what: 'Expired', timeoutMs: 10_000 });
      t.ok(isApiError(err, 'Expired'), `Expired (${err.message})`);
      t.equal(w.batches.length, 0, 'no batch is delivered from a window it cannot complete');
      const fresh = collect(s, await s.currentRv());
      t.teardown(fresh.stop);
      const rv = await ok(s, [create('ConfigMap/default/after')]);
      await fresh.until(1);
      t.same(fresh.batches.map((x) => x.rv), [rv], 'a watch from the current revision works');
    });

    t.test('two writers race 1,000 compare-and-set updates: none is lost', async (t) => {
      const o = await open();
      const s1 = o.storage;
      const s2 = o.second ? await o.second() : s1;
      if (s2 !== s1) t.teardown(() => s2.close());
      const key = 'ConfigMap/default/counter';
      await ok(s1, [create(key, { n: 0 })]);
      let wins = 0;
      let misnamed = 0;
      const writer = async (s: Storage) => {
        for (let i = 0; i < 500; i++) {
          const cur = (await s.get(key))!;
          const n = (JSON.parse(cur.value) as { n: number }).n;
          const r = await s.commit([{ op: 'update', key, value: v({ n: n + 1 }), expectRv: cur.rv }]);
          if (r.ok) wins++;
          else if (r.current?.key !== key || r.current.rv === cur.rv) misnamed++;
        }
      };
      await Promise.all([writer(s1), writer(s2)]);
      const final = JSON.parse((await s1.get(key))!.value) as { n: number };
      t.equal(final.n, wins, `the counter (${final.n}) equals the successful CAS count (${wins}) ${s2 === s1 ? '(two loops on one instance)' : '(two instances)'}`);
      t.ok(wins > 0, 'some CAS succeeded');
      t.equal(misnamed, 0, 'every lost race names the current record, newer than the one read');
    });

    t.test('close() then reopen keeps everything', async (t) => {
      const o = await open();
      const s = o.storage;
      for (let i = 0; i < 50; i++) await ok(s, [create(`ConfigMap/default/p${i}`, { i }), create(`~ip/127.96.1.${i}`)]);
      await ok(s, [{ op: 'delete', key: 'ConfigMap/default/p7' }]);
      const before = await s.list('');
      const rv = await s.currentRv();
      const again = await o.reopen();
      opened.push({ ...o, storage: again });
      t.equal(await again.currentRv(), rv, 'the revision survives');
      const after = await again.list('');
      const sort = (rs: typeof before.records) => [...rs].sort((a, b) => a.key.localeCompare(b.key));
      t.same(sort(after.records), sort(before.records), 'every record, with its value and revision');
      t.equal(after.records.length, 99);
      const next = await ok(again, [create('ConfigMap/default/next')]);
      t.ok(next > rv, 'revisions go on from where they were');
    });
  });

  t.test(`${b.name}: registry over it`, async (t) => {
    const opened = await b.open({ historySize: 20 });
    const store = await createStore(opened.storage, { log, historySize: 20 });
    t.teardown(() => store.close());

    t.test('200 concurrent Service creates: distinct ClusterIPs and nodePorts', async (t) => {
      const stores = [store];
      if (opened.second) {
        // a second registry over the same data, as a second daemon on the same Redis
        const other = await createStore(await opened.second(), { log, historySize: 20 });
        t.teardown(() => other.close());
        stores.push(other);
      }
      const svc = (i: number): Service => ({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: `s${i}`, namespace: 'default' },
        spec: { type: 'NodePort', selector: { app: `a${i}` }, ports: [{ port: 80 }] },
      });
      const made = await Promise.all(Array.from({ length: 200 }, (_, i) => stores[i % stores.length].create(svc(i))));
      const ips = new Set(made.map((s) => s.spec!.clusterIP));
      const ports = new Set(made.map((s) => s.spec!.ports![0].nodePort));
      t.equal(ips.size, 200, '200 distinct ClusterIPs');
      t.equal(ports.size, 200, '200 distinct nodePorts');
      t.equal(stores.length, b.name === 'redis' ? 2 : 1, `created through ${stores.length} registr${stores.length > 1 ? 'ies' : 'y'}`);
    });

    t.test('an update with a stale resourceVersion is a 409 Conflict', async (t) => {
      const cm = await store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c', namespace: 'default' }, data: { a: '1' } });
      await store.update({ ...cm, data: { a: '2' } });
      const err = await store.update({ ...cm, data: { a: '3' } }).then(() => undefined, (e: unknown) => e);
      t.ok(isApiError(err, 'Conflict'), `Conflict (${(err as Error)?.message})`);
      t.equal((err as { code?: number }).code, 409);
      t.same((await store.get<{ data: unknown } & typeof cm>('ConfigMap', 'default', 'c')).data, { a: '2' }, 'the newer write stays');
    });

    t.test('a watch from a resourceVersion older than the window is a 410 Expired', async (t) => {
      const first = await store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'old', namespace: 'default' } });
      for (let i = 0; i < 40; i++) await store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `n${i}`, namespace: 'default' } });
      let thrown: unknown;
      let asyncErr: Error | undefined;
      try {
        const w = store.watch('ConfigMap', { resourceVersion: first.metadata.resourceVersion }, () => undefined, (e) => (asyncErr = e));
        t.teardown(() => w.stop());
      } catch (e) {
        thrown = e;
      }
      const err = thrown ?? (await waitFor(() => asyncErr, { what: 'the watch to end' }));
      t.ok(isApiError(err, 'Expired') || isApiError(err, 'Gone'), `Expired (${(err as Error).message})`);
      t.equal((err as { code?: number }).code, 410);
    });
  });
}
