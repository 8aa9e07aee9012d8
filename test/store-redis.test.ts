/**
 * The redis storage backend against a real `redis-server` on loopback: the same commit/CAS
 * semantics as the in-memory reference backend, several instances on one server (racing CAS,
 * cross-instance watch), the change stream's retained window, outages and restarts, and the
 * password never shown.
 */
import t from 'tap';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { isApiError } from '../src/api/errors.js';
import { EmbeddedStorage } from '../src/store/backends/embedded.js';
import { RedisStorage, redactUrl } from '../src/store/backends/redis.js';
import { parseRedisUrl } from '../src/store/backends/redis-url.js';
import type { ChangeBatch, Storage, StorageOp } from '../src/store/storage.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { waitFor } from './helpers/wait.js';

/** A logger whose lines are kept, to assert what was (not) logged. */
function capture(): { log: Logger; text: () => string } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { log: pino({ level: 'debug' }, sink), text: () => lines.join('') };
}
const quiet = pino({ level: 'silent' });

let server: RedisServer;
let prefixN = 0;
/** each case gets its own key prefix on the shared server */
const open = (extra: Partial<Parameters<typeof RedisStorage.open>[0]> = {}, url = server.url): Promise<RedisStorage> =>
  RedisStorage.open({ url, log: quiet, keyPrefix: `t${++prefixN}:`, ...extra });

t.before(async () => {
  server = await startRedisServer({ appendonly: true });
});
t.teardown(() => server.close());

t.test('redactUrl and parseRedisUrl: the password never shows, bad URLs name the fix', async (t) => {
  const table: [string, string][] = [
    ['redis://127.0.0.1:6379', 'redis://127.0.0.1:6379'],
    ['redis://:s3cret@127.0.0.1:6379/2', 'redis://:***@127.0.0.1:6379/2'],
    ['rediss://admin:p%40ss@db.example:6380', 'rediss://admin:***@db.example:6380'],
    ['redis://admin:a@b@host:1', 'redis://admin:***@host:1'],
    ['redis://onlyuser@host', 'redis://:***@host'],
    ['not a url :pw@x', '***@x'],
  ];
  for (const [url, want] of table) t.equal(redactUrl(url), want, url);

  const p = parseRedisUrl('rediss://admin:p%40ss@[::1]:6380/3');
  t.same({ ...p }, { host: '::1', port: 6380, db: 3, tls: true, username: 'admin', password: 'p@ss', redacted: 'rediss://admin:***@[::1]:6380/3' });
  t.equal(parseRedisUrl('redis://h', 'fromenv').password, 'fromenv', 'the env password is used when the URL has none');
  t.equal(parseRedisUrl('redis://:url@h', 'fromenv').password, 'url', 'the URL password wins');
  t.equal(parseRedisUrl('redis://h').port, 6379);
  for (const [bad, why] of [
    ['http://:pw1@h:1', /unsupported scheme "http"/],
    ['redis://:pw1@h:1/x', /database "x" is not a number/],
    ['redis://:pw1@h:99999', /not a URL|port/],
    ['nonsense', /not a URL/],
    ['redis://:pw1@h:1/0?tls=1', /query and fragment/],
  ] as const) {
    const err = t.throws(() => parseRedisUrl(bad)) as Error;
    t.match(err.message, why, bad);
    t.notMatch(err.message, /pw1/, 'no password in the error');
    t.match(err.message, /expected redis:\/\/\[user:password@\]host:port\[\/db\]/);
  }
});

/** Runs one script of ops on a backend, returning every result (errors as their reason). */
async function script(s: Storage): Promise<unknown[]> {
  const out: unknown[] = [];
  const step = async (ops: StorageOp[]): Promise<void> => {
    const r = await s.commit(ops);
    out.push(r.ok ? { ok: true, rv: r.rv } : r);
  };
  await step([{ op: 'create', key: 'ConfigMap/default/a', value: 'A1' }]);
  await step([{ op: 'create', key: 'ConfigMap/default/a', value: 'A2' }]); // exists
  await step([{ op: 'update', key: 'ConfigMap/default/a', value: 'A3', expectRv: 1 }]);
  await step([{ op: 'update', key: 'ConfigMap/default/a', value: 'A4', expectRv: 1 }]); // stale
  await step([{ op: 'update', key: 'ConfigMap/default/b', value: 'B' }]); // absent
  await step([{ op: 'delete', key: 'ConfigMap/default/b' }]); // absent
  await step([
    { op: 'create', key: 'Service/default/web', value: 'S' },
    { op: 'create', key: '~ip/127.96.0.10', value: 'Service/default/web' },
  ]);
  // all-or-nothing: the second op fails, the first is not applied
  await step([
    { op: 'create', key: 'Service/default/api', value: 'S2' },
    { op: 'create', key: '~ip/127.96.0.10', value: 'Service/default/api' },
  ]);
  await step([{ op: 'update', key: 'ConfigMap/default/a', value: 'A5' }]); // unconditional
  await step([
    { op: 'delete', key: 'Service/default/web', expectRv: 4 },
    { op: 'delete', key: '~ip/127.96.0.10', expectRv: 3 }, // wrong rv: nothing deleted
  ]);
  await step([
    { op: 'delete', key: 'Service/default/web', expectRv: 3 },
    { op: 'delete', key: '~ip/127.96.0.10' },
  ]);
  await step([{ op: 'create', key: 'ConfigMap/kube-system/c', value: 'C' }]);
  await step([{ op: 'create', key: 'Namespace//default', value: 'N' }]);
  await step([{ op: 'create', key: 'ConfigMapX/default/z', value: 'Z' }]);
  out.push(await s.get('ConfigMap/default/a'), await s.get('Service/default/web'), await s.currentRv());
  const sorted = async (prefix: string): Promise<unknown> => {
    const l = await s.list(prefix);
    return { rv: l.rv, records: l.records.sort((x, y) => x.key.localeCompare(y.key)) };
  };
  for (const prefix of ['', 'ConfigMap/', 'ConfigMap/default/', 'ConfigMap', 'Service/', '~ip/', 'Namespace/', 'Nope/']) {
    out.push({ prefix, ...((await sorted(prefix)) as object) });
  }
  return out;
}

t.test('commit, get, list: the same results as the reference (in-memory) backend', async (t) => {
  const redis = await open();
  t.teardown(() => redis.close());
  const ref = await EmbeddedStorage.open();
  const want = await script(ref);
  const got = await script(redis);
  t.same(got, want);
  // and the script exercised both outcomes, so the comparison means something
  t.ok(want.some((r) => (r as { ok?: boolean }).ok === false) && want.some((r) => (r as { ok?: boolean }).ok === true));
});

t.test('list pages through more records than one chunk, and never uses KEYS', async (t) => {
  const s = await open();
  t.teardown(() => s.close());
  const n = 1203;
  for (let i = 0; i < n; i += 100) {
    const ops: StorageOp[] = [];
    for (let j = i; j < Math.min(n, i + 100); j++) ops.push({ op: 'create', key: `Pod/ns${j % 3}/p${String(j).padStart(5, '0')}`, value: `v${j}` });
    t.ok((await s.commit(ops)).ok);
  }
  const all = await s.list('Pod/');
  t.equal(all.records.length, n);
  t.equal(new Set(all.records.map((r) => r.key)).size, n, 'no record twice');
  t.equal((await s.list('Pod/ns1/')).records.length, 401);
  t.ok((await s.list('Pod/ns1/')).records.every((r) => r.key.startsWith('Pod/ns1/')));
  t.equal(all.rv, await s.currentRv());
});

t.test('two instances, 1,000 racing CAS updates of one key: every acknowledged one applied, none lost', async (t) => {
  const a = await open();
  const b = await RedisStorage.open({ url: server.url, log: quiet, keyPrefix: `t${prefixN}:` });
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const key = 'ConfigMap/default/counter';
  t.ok((await a.commit([{ op: 'create', key, value: '0' }])).ok);
  let attempts = 0;
  let won = 0;
  const worker = async (s: Storage): Promise<void> => {
    while (attempts < 1000) {
      attempts++;
      const cur = await s.get(key);
      if (!cur) throw new Error('counter vanished');
      const r = await s.commit([{ op: 'update', key, value: String(Number(cur.value) + 1), expectRv: cur.rv }]);
      if (r.ok) won++;
      else t.ok(r.current && r.current.rv > cur.rv, 'a failed CAS reports the newer record');
    }
  };
  await Promise.all([a, b, a, b, a, b, a, b].map(worker));
  const final = await b.get(key);
  t.equal(Number(final?.value), won, `the counter equals the ${won} successful CAS updates`);
  t.ok(won > 0 && won < 1000, 'some updates lost the race (they did race)');
  t.equal(final?.rv, await a.currentRv(), 'one revision per successful commit');
});

t.test('a watch on A delivers commits made by B, in rv order, none missing or twice', async (t) => {
  const a = await open();
  const b = await RedisStorage.open({ url: server.url, log: quiet, keyPrefix: `t${prefixN}:` });
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  await b.commit([{ op: 'create', key: 'ConfigMap/default/before', value: 'x' }]);
  const got: ChangeBatch[] = [];
  const early: ChangeBatch[] = [];
  const errors: Error[] = [];
  const w = a.watch(0, (bt) => got.push(bt), (e) => errors.push(e));
  const w2 = a.watch(0, (bt) => early.push(bt), (e) => errors.push(e));
  t.teardown(() => {
    w.stop();
    w2.stop();
  });
  const n = 300;
  await Promise.all(
    Array.from({ length: 6 }, async (_, j) => {
      for (let i = j; i < n; i += 6) {
        const key = `ConfigMap/default/k${i % 20}`;
        const cur = await b.get(key);
        await b.commit(cur ? [{ op: 'delete', key }] : [{ op: 'create', key, value: `v${i}` }]);
      }
    }),
  );
  const last = await b.currentRv();
  await waitFor(() => got.length && got[got.length - 1].rv === last, { what: `the watch to reach rv ${last}` });
  t.same(got.map((bt) => bt.rv), Array.from({ length: last }, (_, i) => i + 1), 'every rv 1..last once, in order');
  t.same(got[0].changes, [{ key: 'ConfigMap/default/before', value: 'x' }]);
  t.ok(got.some((bt) => bt.changes[0].value === undefined), 'deletes come without a value');
  await waitFor(() => early.length === last, { what: 'the second watch' });
  t.same(early, got, 'two watches of one instance see the same feed');
  // a watch from the middle replays only what came after
  const mid: number[] = [];
  const w3 = a.watch(last - 5, (bt) => mid.push(bt.rv), (e) => errors.push(e));
  t.teardown(() => w3.stop());
  await waitFor(() => mid.length === 5);
  t.same(mid, [last - 4, last - 3, last - 2, last - 1, last]);
  t.same(errors, []);
});

t.test('the stream is trimmed to about streamMaxLen: a watch from before it ends with Expired', async (t) => {
  const s = await open({ streamMaxLen: 10 });
  t.teardown(() => s.close());
  // MAXLEN ~ trims whole stream nodes (100 entries each by default): write well past one
  for (let i = 0; i < 400; i++) await s.commit([{ op: 'create', key: `Event/default/e${i}`, value: 'x' }]);
  const err = await new Promise<Error>((resolve) => s.watch(1, () => undefined, resolve));
  t.ok(isApiError(err, 'Expired'), `Expired, got ${err.message}`);
  t.match(err.message, /too old resource version: 1 \(\d+\)/);
  // a watch from the retained window still works
  const rv = await s.currentRv();
  const seen: number[] = [];
  const w = s.watch(rv - 3, (b) => seen.push(b.rv), (e) => t.fail(e.message));
  t.teardown(() => w.stop());
  await waitFor(() => seen.length === 3);
  t.same(seen, [rv - 2, rv - 1, rv]);
});

t.test('hints of this instance reach its own watchers; the wire never carries them', async (t) => {
  const a = await open();
  t.teardown(() => a.close());
  const got: ChangeBatch[] = [];
  const w = a.watch(0, (b) => got.push(b), (e) => t.fail(e.message));
  t.teardown(() => w.stop());
  // wait until the reader is live, so the hint is kept for it
  await a.commit([{ op: 'create', key: 'ConfigMap/default/h0', value: '{}' }]);
  await waitFor(() => got.length === 1);
  const obj = { kind: 'ConfigMap' };
  await a.commit([{ op: 'create', key: 'ConfigMap/default/h1', value: '{"kind":"ConfigMap"}', hint: obj }]);
  await waitFor(() => got.length === 2);
  t.equal(got[1].changes[0].hint, obj);
});

t.test('bad input to commit is refused, nothing written', async (t) => {
  const s = await open();
  t.teardown(() => s.close());
  await t.rejects(s.commit([]), { name: 'ApiError', reason: 'BadRequest' });
  const many: StorageOp[] = Array.from({ length: 4000 }, (_, i) => ({ op: 'create', key: `Pod/x/p${i}`, value: 'v' }));
  await t.rejects(s.commit(many), { reason: 'RequestEntityTooLarge', message: /split it/ });
  t.equal(await s.currentRv(), 0);
  // odd keys and values round-trip byte for byte
  const key = 'ConfigMap/default/ünï cödé\n"\'';
  const value = '\u0000binary\r\n-ERR not an error\r\n$5\r\n';
  t.ok((await s.commit([{ op: 'create', key, value }])).ok);
  t.same(await s.get(key), { key, value, rv: 1 });
});
