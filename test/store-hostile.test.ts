/**
 * A hostile review of the store (issue 15), one case per finding: what broke, with real
 * files, a real tmpfs and a real redis-server.
 *
 * - a journal replaced by (or ending in) bytes no crash can leave was taken for a torn tail and
 *   truncated away: the store started empty (resourceVersion back to 0) without refusing;
 * - a journal or snapshot from a newer kubeloop was "corrupt" / "unreadable", with advice to
 *   move it away (losing it) instead of running the kubeloop that wrote it;
 * - a commit that storage refused outright (Redis out of memory) kept its ClusterIP and
 *   nodePort taken in the registry's allocators: no other Service could have them;
 * - after Redis restarted without its data the watch cache kept its higher revision and
 *   skipped every new commit: the daemon could create nothing ("namespaces default not found");
 * - a full disk: writes are refused with the cause, nothing acknowledged is lost.
 */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { pino, type Logger } from 'pino';
import { isApiError } from '../src/api/errors.js';
import type { KObject, Service } from '../src/api/types.js';
import { EmbeddedStorage } from '../src/store/backends/embedded.js';
import { crc32 } from '../src/store/backends/journal-crc.js';
import { RedisStorage } from '../src/store/backends/redis.js';
import { createStore } from '../src/store/embedded.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { waitFor } from './helpers/wait.js';

const quiet = pino({ level: 'silent' });

function capture(): { log: Logger; text: () => string } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { log: pino({ level: 'info' }, sink), text: () => lines.join('') };
}

const tempDir = (t: Test, tag: string): string => {
  const d = mkdtempSync(join(tmpdir(), `kubeloop-hostile-${tag}-`));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
};

/** a state dir with 10 acknowledged commits in journal-0.log (no clean close: no snapshot) */
async function journalDir(t: Test): Promise<{ dir: string; file: string }> {
  const dir = tempDir(t, 'journal');
  const s = await EmbeddedStorage.open({ dir });
  for (let i = 0; i < 10; i++) await s.commit([{ op: 'create', key: `ConfigMap/default/c${i}`, value: `{"i":${i}}` }]);
  // a crash, as far as the files are concerned: copy them before the close writes a snapshot
  const copy = tempDir(t, 'crashed');
  execFileSync('cp', ['-a', `${dir}/.`, copy]);
  await s.close();
  return { dir: copy, file: join(copy, 'journal-0.log') };
}

const openError = (dir: string): Promise<Error | undefined> =>
  EmbeddedStorage.open({ dir }).then(
    async (s) => {
      await s.close();
      return undefined;
    },
    (e: unknown) => e as Error,
  );

/** bytes another program might have left there: text, not a record (its first 4 bytes read as a length of ~1.9e9) */
const FOREIGN = Buffer.from("this is not a kubeloop journal: some other program's log line\n".repeat(64));

t.test('journal damage that no crash can leave refuses to start (it was truncated away as a "torn tail")', async (t) => {
  await t.test('the whole journal replaced by foreign bytes', async (t) => {
    const { dir, file } = await journalDir(t);
    writeFileSync(file, FOREIGN);
    const err = await openError(dir);
    t.ok(err, 'open refuses (it used to open an empty store at resourceVersion 0)');
    t.match(err?.message, `${file} is corrupt at byte 0 (record 1: impossible record length`);
    t.match(err?.message, /restore it from a backup, or move it/, 'with the recovery step');
    t.same(readFileSync(file), FOREIGN, 'the file is left as it was');
  });

  await t.test('foreign bytes after the whole records', async (t) => {
    const { dir, file } = await journalDir(t);
    const size = statSync(file).size;
    appendFileSync(file, FOREIGN);
    const err = await openError(dir);
    t.ok(err, 'open refuses');
    t.match(err?.message, `corrupt at byte ${size} (record 11:`, 'naming where the damage starts');
    t.equal(statSync(file).size, size + FOREIGN.length, 'nothing was truncated');
  });

  await t.test('still a torn tail: the first bytes of a record, then zeros (what a crash leaves)', async (t) => {
    const { dir, file } = await journalDir(t);
    const b = readFileSync(file);
    const size = b.length;
    // a record's first 12 bytes (header, version, part of its revision), then zeros where the rest never landed
    appendFileSync(file, Buffer.concat([b.subarray(0, 12), Buffer.alloc(20)]));
    const s = await EmbeddedStorage.open({ dir });
    t.teardown(() => s.close());
    t.equal(await s.currentRv(), 10, 'every whole record is there');
    t.equal(statSync(file).size, size, 'the torn tail was cut off');
  });
});

t.test('a journal or snapshot written by a newer kubeloop is refused as such, not as damage to move away', async (t) => {
  const { dir, file } = await journalDir(t);
  const b = readFileSync(file);
  const len = b.readUInt32LE(0);
  b[8] = 2; // the first record's format version
  b.writeUInt32LE(crc32(b, 0, 8, 8 + len), 4);
  writeFileSync(file, b);
  const err = await openError(dir);
  t.ok(err, 'open refuses');
  t.match(err?.message, /record version 2 is newer than this kubeloop's \(1\): it was written by a newer kubeloop; run that one/);
  t.notMatch(err?.message, /move it/, 'no advice to move the newer journal away');
  t.same(readFileSync(file), b, 'and it is not truncated (it was taken for a torn tail before)');

  const d2 = tempDir(t, 'snap');
  const snap = join(d2, 'snapshot.json');
  writeFileSync(snap, `${JSON.stringify({ format: 'kubeloop-snapshot/2', rv: 7, time: new Date().toISOString(), compression: 'zstd' })}\n`);
  const err2 = await openError(d2);
  t.match(err2?.message, `${snap} is in format "kubeloop-snapshot/2", which this kubeloop cannot read (it reads kubeloop-snapshot/1)`);
  t.match(err2?.message, /written by a newer kubeloop; run that one/);
  t.notMatch(err2?.message, /moving it away/, 'no advice that would lose it');
});

const asRoot = process.getuid?.() === 0 ? false : 'mounting a tmpfs needs root';
t.test('a full disk (2 MiB tmpfs): writes are refused with the cause, reads go on, nothing acknowledged is lost', { skip: asRoot }, async (t) => {
  const dir = tempDir(t, 'enospc');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tmpfs', dir]);
  t.teardown(() => execFileSync('umount', [dir]));
  const value = JSON.stringify({ data: 'x'.repeat(100 * 1024) });
  const s = await EmbeddedStorage.open({ dir });
  let acked = 0;
  let err: unknown;
  for (let i = 0; i < 40 && err === undefined; i++) {
    await s.commit([{ op: 'create', key: `ConfigMap/default/big${i}`, value }]).then(() => acked++, (e: unknown) => (err = e));
  }
  t.ok(isApiError(err, 'ServiceUnavailable'), `a write on the full disk is refused as ServiceUnavailable: ${String(err)}`);
  t.match((err as Error).message, /journal .*journal-0\.log failed \(ENOSPC/, 'naming the file and the cause');
  t.ok(acked > 5 && acked < 40, `some writes were acknowledged first (${acked})`);
  const later = await s.commit([{ op: 'create', key: 'ConfigMap/default/small', value: '{}' }]).catch((e: unknown) => e);
  t.ok(isApiError(later, 'ServiceUnavailable'), 'later writes are refused too (memory would be ahead of the disk)');
  t.equal((await s.get('ConfigMap/default/big0'))?.value, value, 'reads go on');
  await s.close(); // its final snapshot cannot be written either: the journal is kept

  execFileSync('mount', ['-o', 'remount,size=8m', dir]);
  const again = await EmbeddedStorage.open({ dir });
  t.teardown(() => again.close());
  t.equal(await again.currentRv(), acked, 'the revision is that of the last acknowledged write');
  let present = 0;
  for (let i = 0; i < acked; i++) if ((await again.get(`ConfigMap/default/big${i}`))?.value === value) present++;
  t.equal(present, acked, 'every acknowledged write is there');
  const w = await again.commit([{ op: 'create', key: 'ConfigMap/default/small', value: '{}' }]);
  t.same(w, { ok: true, rv: acked + 1 }, 'with space again, writes go on after a restart');
});

t.test('default, kube-system and kube-public may not be deleted (kubectl delete ns default emptied and removed it)', async (t) => {
  const store = await createStore(await EmbeddedStorage.open({}), { log: quiet });
  t.teardown(() => store.close());
  await store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'keep', namespace: 'default' } } as KObject);
  for (const ns of ['default', 'kube-system', 'kube-public']) {
    for (const dryRun of [false, true]) {
      const e = await store.delete('Namespace', undefined, ns, { dryRun }).catch((err: unknown) => err);
      t.ok(isApiError(e, 'Forbidden'), `${ns}${dryRun ? ' (dry run)' : ''}: Forbidden`);
      t.equal((e as Error).message, `namespaces "${ns}" is forbidden: this namespace may not be deleted`);
    }
    t.notOk((await store.get('Namespace', undefined, ns)).metadata.deletionTimestamp, `${ns} is not marked for deletion`);
  }
  t.ok(await store.tryGet('ConfigMap', 'default', 'keep'), 'and what is in default stays');
  await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'mortal' } } as KObject);
  await store.delete('Namespace', undefined, 'mortal');
  t.equal(await store.tryGet('Namespace', undefined, 'mortal'), undefined, 'other namespaces are deleted as before');
});

const svc = (name: string, nodePort: number, clusterIP: string): Service =>
  ({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'default' },
    spec: { type: 'NodePort', clusterIP, ports: [{ port: 80, nodePort }] },
  }) as Service;

t.test('on redis-server', async (t) => {
  const srv: RedisServer = await startRedisServer({ appendonly: false });
  t.teardown(() => srv.close());
  const admin = new Redis({ host: '127.0.0.1', port: srv.port, lazyConnect: true });
  admin.on('error', () => undefined); // the last case restarts the server under it
  await admin.connect();
  t.teardown(() => admin.disconnect());
  let n = 0;
  const registry = async (t: Test, log: Logger = quiet) => {
    const storage = await RedisStorage.open({ url: srv.url, log, keyPrefix: `h${++n}:`, commandTimeoutMs: 1000 });
    const store = await createStore(storage, { log });
    t.teardown(() => store.close());
    return store;
  };

  await t.test('a commit Redis refuses (out of memory) leaves its ClusterIP and nodePort free for the next Service', async (t) => {
    const store = await registry(t);
    await admin.config('SET', 'maxmemory', '1');
    t.teardown(() => admin.config('SET', 'maxmemory', '0'));
    const refused = await store.create(svc('a', 30555, '127.96.0.50')).catch((e: unknown) => e);
    t.ok(isApiError(refused, 'ServiceUnavailable'), String(refused));
    t.match((refused as Error).message, /is out of memory: OOM command not allowed .* raise its maxmemory or free memory there/, 'the cause and the fix are named (it said "is unreachable")');
    await admin.config('SET', 'maxmemory', '0');
    const b = await store.create(svc('b', 30555, '127.96.0.50')).catch((e: unknown) => e as Error);
    t.equal((b as Service).spec?.clusterIP, '127.96.0.50', `the IP and port are free (was: "provided IP is already allocated"): ${(b as Error).message ?? 'created'}`);
    t.equal((b as Service).spec?.ports?.[0].nodePort, 30555);
  });

  await t.test("a database holding another program's keys: none is listed, changed or deleted", async (t) => {
    const foreign: Array<[string, string]> = [
      ['Service/default/web', 'not ours'],
      ['r:ConfigMap/default/x', 'not ours'],
      ['~ip/127.96.0.9', 'not ours'],
      ['session:42', 'someone'],
    ];
    for (const [k, v] of foreign) await admin.set(k, v);
    await admin.hset('h-other', 'v', '{"kind":"ConfigMap"}', 'rv', '1');
    await admin.xadd('changes', '1-0', 'sService/default/web', '{}');
    const store = await registry(t);
    const made = await store.create(svc('web', 30600, '127.96.0.9'));
    t.equal(made.spec?.clusterIP, '127.96.0.9', 'its own allocations are not confused with foreign keys');
    t.same((await store.list('ConfigMap')).items, [], 'no foreign key is taken for an object');
    t.same((await store.list<KObject>('Service')).items.map((o) => o.metadata.name), ['web']);
    await store.close();
    for (const [k, v] of foreign) t.equal(await admin.get(k), v, `${k} is untouched`);
    t.equal(await admin.hget('h-other', 'v'), '{"kind":"ConfigMap"}');
    t.equal(await admin.xlen('changes'), 1);
  });

  await t.test("another program's key under kubeloop's prefix: the commit is refused whole, nothing half-written", async (t) => {
    for (const [suffix, make] of [
      ['changes', (k: string) => admin.set(k, 'a string, not a stream')],
      ['idx:ConfigMap', (k: string) => admin.rpush(k, 'a list, not a sorted set')],
    ] as const) {
      const prefix = `h${++n}:`;
      await make(`${prefix}${suffix}`);
      const s = await RedisStorage.open({ url: srv.url, log: quiet, keyPrefix: prefix });
      t.teardown(() => s.close());
      const e = await s.commit([{ op: 'create', key: 'ConfigMap/default/x', value: '{}' }]).catch((err: unknown) => err as Error);
      t.match((e as Error).message, `refused the write: WRONGTYPE key ${prefix}${suffix} holds a`, `${suffix}: the commit fails naming the key`);
      t.match((e as Error).message, /another program uses this key prefix; point kubeloop at another database/, 'and the fix');
      t.equal(await admin.get(`${prefix}rev`), null, 'the revision was not bumped (it was, with the record written and no change entry)');
      t.equal(await admin.exists(`${prefix}r:ConfigMap/default/x`), 0, 'the record was not written');
    }
  });

  await t.test('a namespace deleted through one daemon while another creates in it: nothing is left behind in it', async (t) => {
    const prefix = `h${++n}:`;
    const open = async () => {
      const store = await createStore(await RedisStorage.open({ url: srv.url, log: quiet, keyPrefix: prefix }), { log: quiet });
      t.teardown(() => store.close());
      return store;
    };
    const [a, b] = [await open(), await open()];
    await a.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'doomed' } } as KObject);
    for (let i = 0; i < 40; i++) await a.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `pre${i}`, namespace: 'doomed' } } as KObject);
    let made = 0;
    let forbidden = 0;
    let deleted = false;
    const creator = (async () => {
      // bounded: until the namespace is gone and then 20 more tries
      for (let i = 0, after = 0; i < 3000 && after < 20; i++) {
        if (deleted) after++;
        await b
          .create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `race${i}`, namespace: 'doomed' } } as KObject)
          .then(
            () => made++,
            (e: unknown) => void (isApiError(e, 'Forbidden') && forbidden++),
          );
      }
    })();
    await waitFor(() => made >= 5, { what: 'creates through B under way' });
    await a.delete('Namespace', undefined, 'doomed');
    deleted = true;
    await creator;
    t.equal(await b.tryGet('Namespace', undefined, 'doomed'), undefined, 'the namespace is gone');
    const left = [...(await a.list('ConfigMap', { namespace: 'doomed' })).items, ...(await b.list('ConfigMap', { namespace: 'doomed' })).items];
    t.same(left.map((o) => o.metadata.name), [], `no ConfigMap is left in it (${made} were created through B meanwhile; it left ~130 of 160)`);
    t.ok(forbidden > 0, `creates while it was Terminating were refused as Forbidden (${forbidden})`);
  });

  // last: it restarts the server without its data
  await t.test('Redis restarted without its data: the loss is said, and the registry follows the new revisions', async (t) => {
    const c = capture();
    const store = await registry(t, c.log);
    for (let i = 0; i < 5; i++) await store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `c${i}`, namespace: 'default' } } as KObject);
    const before = Number(store.resourceVersion);
    await srv.stop('SIGKILL');
    await srv.restart();
    await waitFor(() => Number(store.resourceVersion) < before, { what: 'the cache to follow the empty store', timeoutMs: 15_000 });
    t.match(c.text(), new RegExp(`resourceVersion went back from ${before} to 0: it lost data \\(a Redis restarted without persistence`), 'the loss is logged with both revisions');
    t.match(c.text(), /following the store from here\. Restart every kubeloop daemon on this store to register its nodes and system namespaces again/, 'and what to do');
    t.equal(await store.tryGet('ConfigMap', 'default', 'c0'), undefined, 'what was lost is not served from the cache');
    await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } } as KObject);
    const cm = await store
      .create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'after', namespace: 'default' } } as KObject)
      .catch((e: unknown) => e as Error);
    t.equal((cm as KObject).metadata?.name, 'after', `a create in the re-made namespace works (was: namespaces "default" not found): ${(cm as Error).message ?? ''}`);
    t.equal((await store.tryGet('ConfigMap', 'default', 'after'))?.metadata.name, 'after', 'and is read back');
  });
});
