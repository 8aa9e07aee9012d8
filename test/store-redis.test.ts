/**
 * The redis storage backend against a real `redis-server` on loopback: the same commit/CAS
 * semantics as the in-memory reference backend, several instances on one server (racing CAS,
 * cross-instance watch), the change stream's retained window, outages and restarts, and the
 * password never shown.
 */
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { pino, type Logger } from 'pino';
import { isApiError } from '../src/api/errors.js';
import { ApiServer } from '../src/server/index.js';
import { EmbeddedStorage } from '../src/store/backends/embedded.js';
import { RedisStorage, redactUrl } from '../src/store/backends/redis.js';
import { parseRedisUrl } from '../src/store/backends/redis-url.js';
import { createStore } from '../src/store/embedded.js';
import { InformerFactory } from '../src/store/informer.js';
import type { ChangeBatch, Storage, StorageOp } from '../src/store/storage.js';
import { testPki } from './helpers/api.js';
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
  // the server's own counters: lists went through the index, never KEYS or SCAN
  const raw = new Redis({ host: '127.0.0.1', port: server.port, lazyConnect: true });
  t.teardown(() => raw.disconnect());
  await raw.connect();
  const stats = await raw.info('commandstats');
  t.match(stats, /cmdstat_zrangebylex:calls=\d+/, 'the index was read');
  t.notMatch(stats, /cmdstat_(keys|scan):/, 'no KEYS, no SCAN');
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

t.test('redis-server killed: every op fails fast with ServiceUnavailable; restarted: the watch resumes, nothing lost or twice', async (t) => {
  const srv = await startRedisServer({ appendonly: true });
  t.teardown(() => srv.close());
  const s = await RedisStorage.open({ url: srv.url, log: quiet, commandTimeoutMs: 1000, watchOutageMs: 30_000 });
  t.teardown(() => s.close());
  const got: number[] = [];
  const errors: Error[] = [];
  const w = s.watch(0, (b) => got.push(b.rv), (e) => errors.push(e));
  t.teardown(() => w.stop());
  for (let i = 0; i < 20; i++) t.ok((await s.commit([{ op: 'create', key: `ConfigMap/default/c${i}`, value: `v${i}` }])).ok);
  await waitFor(() => got.length === 20, { what: 'the first 20 batches' });

  await srv.stop('SIGKILL');
  const t0 = performance.now();
  const results = await Promise.allSettled([
    s.get('ConfigMap/default/c0'),
    s.list('ConfigMap/'),
    s.currentRv(),
    ...Array.from({ length: 20 }, (_, i) => s.commit([{ op: 'create', key: `ConfigMap/default/down${i}`, value: 'x' }])),
  ]);
  const ms = performance.now() - t0;
  t.comment(`23 ops against a killed redis-server all failed in ${ms.toFixed(1)} ms`);
  for (const r of results) {
    t.equal(r.status, 'rejected');
    const err = (r as PromiseRejectedResult).reason;
    t.ok(isApiError(err, 'ServiceUnavailable'), String(err));
    t.match(err.message, `the store (redis at redis://127.0.0.1:${srv.port}) is unreachable: `);
    t.equal(err.details.retryAfterSeconds, 1);
  }

  await srv.restart();
  await waitFor(async () => (await s.commit([{ op: 'create', key: 'ConfigMap/default/after0', value: 'a' }])).ok, {
    what: 'a commit after the restart',
    timeoutMs: 10_000,
    intervalMs: 100,
  });
  for (let i = 1; i < 10; i++) t.ok((await s.commit([{ op: 'create', key: `ConfigMap/default/after${i}`, value: 'a' }])).ok);
  const last = await s.currentRv();
  t.equal(last, 30, 'the 20 acknowledged commits survived the crash; none of the failed ones was applied');
  await waitFor(() => got.length === 30, { what: 'the watch to resume', timeoutMs: 10_000 });
  t.same(got, Array.from({ length: 30 }, (_, i) => i + 1), 'every rv once, in order, across the outage');
  t.same(errors, []);
  t.equal((await s.get('ConfigMap/default/c19'))?.value, 'v19');
  t.equal(await s.get('ConfigMap/default/down0'), undefined);
});

t.test('redis-server restarted without its data: watches end with Expired (they must relist)', async (t) => {
  const srv = await startRedisServer({ appendonly: false });
  t.teardown(() => srv.close());
  const s = await RedisStorage.open({ url: srv.url, log: quiet, commandTimeoutMs: 1000 });
  t.teardown(() => s.close());
  const got: number[] = [];
  const err = new Promise<Error>((resolve) => s.watch(0, (b) => got.push(b.rv), resolve));
  for (let i = 0; i < 3; i++) await s.commit([{ op: 'create', key: `ConfigMap/default/c${i}`, value: 'x' }]);
  await waitFor(() => got.length === 3);
  await srv.stop('SIGKILL');
  await srv.restart();
  const e = await err;
  t.ok(isApiError(e, 'Expired'), e.message);
  t.match(e.message, /too old resource version: 3 \(the store restarted at 0\)/);
});

t.test('a commit whose reply is lost fails with ServiceUnavailable and is not re-sent: the retry finds it applied', async (t) => {
  const srv = await startRedisServer();
  t.teardown(() => srv.close());
  const s = await RedisStorage.open({ url: srv.url, log: quiet, commandTimeoutMs: 300 });
  t.teardown(() => s.close());
  const pid = srv.pid();
  process.kill(pid, 'SIGSTOP');
  let stopped = true;
  t.teardown(() => {
    if (stopped) process.kill(pid, 'SIGCONT');
  });
  const key = 'ConfigMap/default/once';
  const pending = s.commit([{ op: 'create', key, value: 'x' }]);
  await t.rejects(pending, { name: 'ApiError', reason: 'ServiceUnavailable', message: /timed out/i });
  process.kill(pid, 'SIGCONT');
  stopped = false;
  // Redis ran the script when it woke up: the commit was applied once, its reply came too late
  await waitFor(async () => (await s.get(key)) !== undefined, { what: 'the ambiguous commit to show' });
  const retry = await s.commit([{ op: 'create', key, value: 'x' }]);
  t.same(retry, { ok: false, index: 0, current: { key, value: 'x', rv: 1 } }, 'the retried create finds it (AlreadyExists), no duplicate');
  t.equal(await s.currentRv(), 1, 'one revision: nothing was re-sent');
});

t.test('unreachable at open: ServiceUnavailable at once, naming the redacted URL', async (t) => {
  const srv = await startRedisServer();
  const url = `redis://:hunter2-secret@127.0.0.1:${srv.port}`;
  await srv.close();
  const c = capture();
  const t0 = performance.now();
  const err = await RedisStorage.open({ url, log: c.log }).catch((e: Error) => e);
  t.comment(`open against a closed port failed in ${(performance.now() - t0).toFixed(1)} ms`);
  t.ok(isApiError(err, 'ServiceUnavailable'), String(err));
  t.match((err as Error).message, `the store (redis at redis://:***@127.0.0.1:${srv.port}) is unreachable: `);
  t.notMatch((err as Error).message, /hunter2/);
  t.notMatch(c.text(), /hunter2/);
});

t.test('a password (URL or option) is used and never logged or shown', async (t) => {
  const pw = 'Pw-never-show-9f3b';
  const srv = await startRedisServer({ password: pw });
  t.teardown(() => srv.close());
  const c = capture();
  const viaUrl = await RedisStorage.open({ url: `redis://:${pw}@127.0.0.1:${srv.port}/1`, log: c.log, commandTimeoutMs: 500 });
  t.teardown(() => viaUrl.close());
  t.ok((await viaUrl.commit([{ op: 'create', key: 'Secret/default/s', value: 'v' }])).ok);
  const viaOption = await RedisStorage.open({ url: `redis://127.0.0.1:${srv.port}/1`, password: pw, log: c.log });
  t.teardown(() => viaOption.close());
  t.equal((await viaOption.get('Secret/default/s'))?.value, 'v', 'the same database, authenticated by the option');

  const wrong = await RedisStorage.open({ url: `redis://:wrong-${pw}@127.0.0.1:${srv.port}`, log: c.log }).catch((e: Error) => e);
  t.ok(isApiError(wrong, 'ServiceUnavailable'), String(wrong));
  t.match((wrong as Error).message, /refused the credentials: .*set the password in the URL or \$KUBELOOP_REDIS_PASSWORD/);
  const none = await RedisStorage.open({ url: `redis://127.0.0.1:${srv.port}`, log: c.log }).catch((e: Error) => e);
  t.match((none as Error).message, /refused the credentials/);

  await srv.stop('SIGKILL');
  const down = await viaUrl.get('Secret/default/s').catch((e: Error) => e);
  t.ok(isApiError(down, 'ServiceUnavailable'));
  t.match((down as Error).message, `redis at redis://:***@127.0.0.1:${srv.port}/1`);
  // let ioredis try (and log) a few reconnects
  await waitFor(() => /redis connection error/.test(c.text()), { what: 'a logged connection error' });
  for (const text of [c.text(), (wrong as Error).message, (none as Error).message, (down as Error).message]) {
    t.notMatch(text, new RegExp(pw), 'the password appears nowhere');
  }
  t.match(c.text(), /redis store opened/, 'the log was captured (the check above looked at something)');
});

t.test('rediss:// — TLS, the server certificate verified against the given CA', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kubeloop-redis-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const pki = await testPki(dir);
  const files = { certFile: join(dir, 'server.crt'), keyFile: join(dir, 'server.key'), caFile: join(dir, 'ca.crt') };
  writeFileSync(files.certFile, pki.serverCert);
  writeFileSync(files.keyFile, pki.serverKey, { mode: 0o600 });
  writeFileSync(files.caFile, pki.ca);
  const srv = await startRedisServer({ tls: files });
  t.teardown(() => srv.close());
  t.match(srv.url, /^rediss:\/\//);
  const s = await RedisStorage.open({ url: srv.url, log: quiet, tlsCa: pki.ca });
  t.teardown(() => s.close());
  t.ok((await s.commit([{ op: 'create', key: 'ConfigMap/default/tls', value: 'v' }])).ok);
  const seen: number[] = [];
  const w = s.watch(0, (b) => seen.push(b.rv), (e) => t.fail(e.message));
  t.teardown(() => w.stop());
  await waitFor(() => seen.length === 1, { what: 'the watch over TLS' });
  // without the CA the certificate is not trusted: refused, not silently accepted
  const err = await RedisStorage.open({ url: srv.url, log: quiet, connectTimeoutMs: 2000 }).catch((e: Error) => e);
  t.ok(isApiError(err, 'ServiceUnavailable'), String(err));
  t.match((err as Error).message, /self.signed|unable to (get|verify)|certificate/i);
  // and plain redis:// to a TLS port does not get through
  const plain = await RedisStorage.open({ url: srv.url.replace('rediss:', 'redis:'), log: quiet, connectTimeoutMs: 1000, commandTimeoutMs: 1000 }).catch((e: Error) => e);
  t.ok(isApiError(plain, 'ServiceUnavailable'), String(plain));
});

t.test('through the API: Redis away → a write is 503 with Retry-After and names the redacted store; back → it works', async (t) => {
  const pw = 'Api-pw-never-shown';
  const srv = await startRedisServer({ appendonly: true, password: pw });
  t.teardown(() => srv.close());
  const storage = await RedisStorage.open({ url: `redis://:${pw}@127.0.0.1:${srv.port}`, log: quiet, commandTimeoutMs: 500, watchOutageMs: 60_000 });
  const store = await createStore(storage, { log: quiet });
  const informers = new InformerFactory(store);
  const dir = mkdtempSync(join(tmpdir(), 'kubeloop-redis-api-'));
  const api = new ApiServer({ store, informers, log: quiet, address: '127.0.0.1', port: 0, stateDir: dir, insecurePlainHttp: true });
  await api.start();
  t.teardown(async () => {
    await api.stop();
    informers.stop();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  /** one request per connection (no keep-alive left for the server's stop to wait on) */
  const call = (method: string, path: string, body?: unknown): Promise<{ status: number; headers: http.IncomingHttpHeaders; json: () => any }> =>
    new Promise((resolve, reject) => {
      const req = http.request(`${api.url}${path}`, { method, agent: false, headers: { 'Content-Type': 'application/json' } }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, json: () => JSON.parse(text) }));
      });
      req.on('error', reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  const post = (name: string) => call('POST', '/api/v1/namespaces/default/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data: { a: 'b' } });
  t.equal((await post('up')).status, 201);
  await srv.stop('SIGKILL');
  const r = await post('down');
  const body = r.json() as { reason: string; message: string; details?: { retryAfterSeconds?: number } };
  t.equal(r.status, 503);
  t.equal(r.headers['retry-after'], '1');
  t.equal(body.reason, 'ServiceUnavailable');
  t.equal(body.details?.retryAfterSeconds, 1);
  t.match(body.message, `the store (redis at redis://:***@127.0.0.1:${srv.port}) is unreachable`);
  t.notMatch(JSON.stringify(body), new RegExp(pw));
  const t0 = performance.now();
  await srv.restart();
  const back = await waitFor(async () => {
    const x = await post('back');
    return x.status === 201 ? x : undefined;
  }, { what: 'a create once Redis is back', timeoutMs: 10_000, intervalMs: 200 });
  t.equal(back.status, 201);
  t.comment(`writes accepted again ${(performance.now() - t0).toFixed(0)} ms after the restart began`);
  const got = await call('GET', '/api/v1/namespaces/default/configmaps/up');
  t.equal(got.status, 200, 'what was acknowledged before the crash is there');
});
