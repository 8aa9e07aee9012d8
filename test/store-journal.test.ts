/**
 * The embedded backend's journal: acknowledged writes survive SIGKILL of a real writer
 * process, a torn tail is dropped with a warning, damage in the middle refuses to start with
 * the recovery step, store.json is migrated, snapshots truncate the journal, commits share
 * fsyncs, and a journal I/O error stops writes without losing acknowledged ones.
 */
import t, { type Test } from 'tap';
import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, rmdirSync, statSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { ApiError } from '../src/api/errors.js';
import { EmbeddedStorage, type EmbeddedStorageOptions } from '../src/store/backends/embedded.js';
import { writeSnapshot } from '../src/store/backends/journal-files.js';
import { encodeRecord } from '../src/store/backends/journal-format.js';
import type { ChangeBatch } from '../src/store/storage.js';
import { waitFor } from './helpers/wait.js';

/** the file's tap: owns what outlives one case */
const root: Tap = t;
const FIXTURE = join(import.meta.dirname, 'fixtures', 'journal-writer.ts');

const tempDir = (t: Tap): string => {
  const d = mkdtempSync(join(tmpdir(), 'kubeloop-journal-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
};
type Tap = Test;

const segments = (dir: string): string[] => readdirSync(dir).filter((f) => /^journal-\d+\.log$/.test(f)).sort((a, b) => Number(a.slice(8, -4)) - Number(b.slice(8, -4)));
const journalBytes = (dir: string): number => segments(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);

/** a pino logger whose lines land in `lines` */
function capture(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines };
}

async function openStore(t: Tap, o: EmbeddedStorageOptions): Promise<EmbeddedStorage> {
  const s = await EmbeddedStorage.open(o);
  t.teardown(() => s.close());
  return s;
}

interface WriterRun {
  acks: Map<string, number>;
  maxRv: number;
  /** the last acknowledged compare-and-set of Counter//shared */
  lastUpd?: { rv: number; value: string };
  done: boolean;
}

/**
 * Runs the fixture writer on `dir` until it printed `killAfter` acks (or `done`), then SIGKILLs it.
 * Bounded: a writer that neither acks nor finishes in 20 s is killed and the test fails.
 */
async function runWriter(t: Tap, dir: string, run: string, o: { writers: number; snapshotEvery: number; killAfter: number; limit?: number }): Promise<WriterRun> {
  const args = ['--import', 'tsx', FIXTURE, dir, run, String(o.writers), String(o.snapshotEvery)];
  if (o.limit !== undefined) args.push(String(o.limit));
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.teardown(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  const res: WriterRun = { acks: new Map(), maxRv: 0, done: false };
  let buf = '';
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => void (stderr += d.toString()));
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 20_000);
    const stop = (): void => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      resolve();
    };
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const [what, rv, key, value] = buf.slice(0, nl).split(' ');
        buf = buf.slice(nl + 1);
        if (what === 'ack') {
          res.acks.set(key, Number(rv));
          res.maxRv = Math.max(res.maxRv, Number(rv));
        } else if (what === 'upd') {
          res.lastUpd = { rv: Number(rv), value };
          res.maxRv = Math.max(res.maxRv, Number(rv));
        } else if (what === 'done') res.done = true;
      }
      if (res.acks.size >= o.killAfter || res.done) stop();
    });
    child.once('exit', () => stop());
  });
  child.kill('SIGKILL');
  await exited;
  if (!res.acks.size) t.fail(`the writer acknowledged nothing; stderr: ${stderr}`);
  return res;
}

t.test('acknowledged writes survive SIGKILL of the writer, 10 times over, and rv never goes backwards', async (t) => {
  const dir = tempDir(t);
  const all = new Map<string, number>();
  let lastRv = 0;
  let lastUpd: WriterRun['lastUpd'];
  for (let i = 0; i < 10; i++) {
    // kill points spread over a run; snapshots every 40 commits so kills land mid-snapshot too
    const run = await runWriter(t, dir, `k${i}`, { writers: 8, snapshotEvery: 40, killAfter: 20 + ((i * 97) % 180) });
    for (const [k, rv] of run.acks) all.set(k, rv);
    lastUpd = run.lastUpd ?? lastUpd;
    const s = await EmbeddedStorage.open({ dir });
    const missing: string[] = [];
    for (const [key, rv] of all) {
      const r = await s.get(key);
      if (r?.rv !== rv) missing.push(`${key}@${rv}: ${r ? `rv ${r.rv}` : 'absent'}`);
    }
    t.same(missing, [], `kill ${i + 1}: all ${all.size} acknowledged creates are there with their rv`);
    const rv = await s.currentRv();
    t.ok(rv >= run.maxRv && rv >= lastRv, `kill ${i + 1}: rv ${rv} ≥ last acknowledged ${run.maxRv} and ≥ the previous start's ${lastRv}`);
    lastRv = rv;
    if (lastUpd) {
      const c = await s.get('Counter//shared');
      t.ok(c && c.rv >= lastUpd.rv, `kill ${i + 1}: the shared key is at rv ${c?.rv} ≥ its last acknowledged update ${lastUpd.rv}`);
    }
    await s.close();
  }
  t.ok(all.size >= 200, `${all.size} acknowledged creates over 10 kills`);
});

/**
 * A journal of 40 single-record commits (20 creates, 20 updates) left by a killed writer, with
 * no final snapshot: made once (root-level teardown), each caller gets its own copy.
 */
let pristine: Promise<{ dir: string; run: WriterRun }> | undefined;
async function killedJournal(t: Tap): Promise<{ dir: string; run: WriterRun }> {
  pristine ??= (async () => {
    const dir = tempDir(root);
    return { dir, run: await runWriter(root, dir, 'x', { writers: 1, snapshotEvery: 1_000_000, killAfter: 1_000_000, limit: 20 }) };
  })();
  const { dir: src, run } = await pristine;
  t.ok(run.done, 'the writer finished its 20 writes before it was killed');
  t.same(segments(src), ['journal-0.log'], 'one journal segment, no snapshot');
  const dir = tempDir(t);
  cpSync(src, dir, { recursive: true });
  return { dir, run };
}

/** record boundaries of a journal (u32 length + u32 crc + payload) */
const boundaries = (file: string): number[] => {
  const b = readFileSync(file);
  const out: number[] = [];
  for (let o = 0; o < b.length; o += 8 + b.readUInt32LE(o)) out.push(o);
  return out;
};

t.test('torn tail: a record cut short (or zeros after it) is dropped with a warning; every whole record is there', async (t) => {
  const { dir, run } = await killedJournal(t);
  const file = join(dir, 'journal-0.log');
  const size = statSync(file).size;
  const starts = boundaries(file);
  const lastStart = starts.at(-1)!;
  const maxRv = run.maxRv;

  const cases: Array<{ name: string; damage: (f: string) => void; dropped: number; lastRv: number; keptBytes: number }> = [
    { name: '3 bytes cut off the last record', damage: (f) => truncateSync(f, size - 3), dropped: size - 3 - lastStart, lastRv: maxRv - 1, keptBytes: lastStart },
    { name: 'only 5 bytes of a header', damage: (f) => appendFileSync(f, Buffer.from([9, 9, 9, 9, 9])), dropped: 5, lastRv: maxRv, keptBytes: size },
    { name: '4 KiB of zeros (size extended, data never landed)', damage: (f) => appendFileSync(f, Buffer.alloc(4096)), dropped: 4096, lastRv: maxRv, keptBytes: size },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const d = tempDir(t);
      cpSync(dir, d, { recursive: true });
      const f = join(d, 'journal-0.log');
      c.damage(f);
      const { log, lines } = capture();
      const s = await openStore(t, { dir: d, log });
      const warn = lines.find((l) => l.level === 40 && String(l.msg).includes('torn journal tail'));
      t.ok(warn, 'a warning names the torn tail');
      t.equal(warn?.bytes, c.dropped, `the warning says ${c.dropped} bytes were dropped`);
      t.equal(warn?.file, f, 'and the file');
      t.equal(await s.currentRv(), c.lastRv, `rv is that of the last whole record (${c.lastRv})`);
      const wrong: string[] = [];
      for (const [key, rv] of run.acks) {
        const r = await s.get(key);
        if (rv > c.lastRv ? r !== undefined : r?.rv !== rv) wrong.push(`${key}@${rv}`);
      }
      t.same(wrong, [], 'every whole record is there, the torn one is not');
      t.equal(statSync(f).size, c.keptBytes, 'the tail was truncated away');
      const w = await s.commit([{ op: 'create', key: 'ConfigMap/after/torn', value: '{}' }]);
      t.same(w, { ok: true, rv: c.lastRv + 1 }, 'writes go on after the cut');
    });
  }
});

t.test('damage in the middle of the journal refuses to start, naming the file, the byte and the recovery step', async (t) => {
  const { dir } = await killedJournal(t);
  const file = join(dir, 'journal-0.log');
  const starts = boundaries(file);
  const victim = starts[5];
  const b = readFileSync(file);
  b[victim + 20] ^= 0xff; // a byte inside record 6's payload
  writeFileSync(file, b);
  const err = await EmbeddedStorage.open({ dir }).then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  t.ok(err, 'open refuses');
  t.match(err?.message, file, 'the message names the file');
  t.match(err?.message, `corrupt at byte ${victim} (record 6`, 'the byte offset and the record number');
  t.match(err?.message, /restore it from a backup, or move it .*away to start from there is no snapshot/, 'the recovery step and what it loses');
  t.equal(readFileSync(file).length, b.length, 'the damaged journal is left as it was');

  // an unreadable snapshot refuses too
  const d2 = tempDir(t);
  const s = await EmbeddedStorage.open({ dir: d2 });
  await s.commit([{ op: 'create', key: 'ConfigMap/a/b', value: '{"x":1}' }]);
  await s.close();
  const snap = join(d2, 'snapshot.json');
  writeFileSync(snap, readFileSync(snap, 'utf8').replace('{\\"x\\":1}', '{\\"x\\":2}'));
  const err2 = await EmbeddedStorage.open({ dir: d2 }).then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  t.match(err2?.message, `${snap} is unreadable (checksum mismatch): restore it from a backup`, 'a damaged snapshot is named with the fix');
});

t.test('store.json is migrated once: keys, values without resourceVersion, record and global rv', async (t) => {
  const dir = tempDir(t);
  const ns = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default', resourceVersion: '1' } };
  const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a', namespace: 'team', resourceVersion: '7' }, data: { k: 'v' } };
  writeFileSync(join(dir, 'store.json'), JSON.stringify({ rv: 9, objects: { 'Namespace/default': JSON.stringify(ns), 'ConfigMap/team/a': JSON.stringify(cm) } }));
  const { log, lines } = capture();
  const s = await openStore(t, { dir, log });
  t.same(await s.get('Namespace//default'), { key: 'Namespace//default', rv: 1, value: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } }) });
  const got = await s.get('ConfigMap/team/a');
  t.equal(got?.rv, 7);
  t.same(JSON.parse(got!.value), { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a', namespace: 'team' }, data: { k: 'v' } });
  t.equal(await s.currentRv(), 9, 'the global rv is the old one');
  t.notOk(existsSync(join(dir, 'store.json')), 'store.json is gone');
  t.ok(existsSync(join(dir, 'store.json.migrated')), 'kept as store.json.migrated');
  t.equal(statSync(join(dir, 'snapshot.json')).mode & 0o777, 0o600, 'the snapshot is 0600');
  t.ok(lines.some((l) => String(l.msg).includes('imported')), 'the import is logged');
  const w = await s.commit([{ op: 'update', key: 'ConfigMap/team/a', value: '{}', expectRv: 7 }]);
  t.same(w, { ok: true, rv: 10 }, 'the next write continues after the migrated rv');

  const bad = tempDir(t);
  writeFileSync(join(bad, 'store.json'), JSON.stringify({ rv: 1, objects: { 'ConfigMap/x/y': '{"metadata":{}}' } }));
  await t.rejects(EmbeddedStorage.open({ dir: bad }), { message: /store\.json cannot be imported \(entry "ConfigMap\/x\/y" has no numeric metadata\.resourceVersion\): fix or restore it, or move it away/ });
  t.ok(existsSync(join(bad, 'store.json')), 'a store.json that cannot be imported stays where it is');
});

t.test('snapshots truncate the journal while commits go on; files are 0600; a restart keeps everything', async (t) => {
  const dir = tempDir(t);
  const s = await EmbeddedStorage.open({ dir, snapshotEvery: 100 });
  const value = (i: number): string => JSON.stringify({ i, pad: 'p'.repeat(1000) });
  // 8 writers updating 16 keys, 1000 commits: ~1 MB through the journal
  for (let k = 0; k < 16; k++) await s.commit([{ op: 'create', key: `ConfigMap/snap/k${k}`, value: value(-1) }]);
  let n = 0;
  await Promise.all(
    Array.from({ length: 8 }, async (_, w) => {
      while (n < 1000) {
        const key = `ConfigMap/snap/k${(n + w) % 16}`;
        const cur = await s.get(key);
        const r = await s.commit([{ op: 'update', key, value: value(n), expectRv: cur!.rv }]);
        if (r.ok) n++;
      }
    }),
  );
  await waitFor(() => s.stats().snapshots >= 5 && segments(dir).length === 1, { what: 'snapshots and the old segments deleted' });
  const written = 1016 * 1000;
  t.ok(journalBytes(dir) < written / 4, `the journal holds ${journalBytes(dir)} bytes of the ${written} written`);
  t.equal(statSync(join(dir, segments(dir)[0])).mode & 0o777, 0o600, 'the journal is 0600');
  t.equal(statSync(join(dir, 'snapshot.json')).mode & 0o777, 0o600, 'the snapshot is 0600');
  const before = await s.list('ConfigMap/snap/');
  await s.close();
  t.same(segments(dir), [], 'close leaves a snapshot and no journal');
  const s2 = await openStore(t, { dir });
  const after = await s2.list('ConfigMap/snap/');
  t.same(after.records.sort((a, b) => a.key.localeCompare(b.key)), before.records.sort((a, b) => a.key.localeCompare(b.key)), 'every record with its rv');
  t.equal(after.rv, before.rv, 'and the rv');
});

t.test('group commit: concurrent writers share fsyncs', async (t) => {
  const s = await openStore(t, { dir: tempDir(t) });
  const value = 'x'.repeat(1000);
  await Promise.all(
    Array.from({ length: 32 }, async (_, w) => {
      for (let i = 0; i < 20; i++) await s.commit([{ op: 'create', key: `ConfigMap/g/w${w}-${i}`, value }]);
    }),
  );
  const st = s.stats();
  t.equal(st.commits, 640, '640 commits acknowledged');
  t.ok(st.fsyncs <= 640 / 8, `${st.fsyncs} fsyncs for 640 commits (${st.batches} batches)`);
  t.equal(st.fsyncs, st.batches, 'one fsync per batch');
});

t.test('commits: all-or-nothing conditions, current on conflict; watch order, durability, Expired', async (t) => {
  const s = await openStore(t, { dir: tempDir(t), historySize: 5 });
  const seen: ChangeBatch[] = [];
  const notDurable: number[] = [];
  const w = s.watch(0, (b) => {
    seen.push(b);
    void s.currentRv().then((rv) => rv < b.rv && notDurable.push(b.rv));
  }, (e) => t.fail(`watch error ${e.message}`));
  t.teardown(() => w.stop());
  const a = await s.commit([{ op: 'create', key: 'ConfigMap/c/a', value: '1' }]);
  t.same(a, { ok: true, rv: 1 });
  const dup = await s.commit([{ op: 'create', key: 'ConfigMap/c/b', value: '2' }, { op: 'create', key: 'ConfigMap/c/a', value: 'x' }]);
  t.same(dup, { ok: false, index: 1, current: { key: 'ConfigMap/c/a', value: '1', rv: 1 } }, 'create of an existing key fails at its index with the current record');
  t.equal(await s.get('ConfigMap/c/b'), undefined, 'the first op of a failed commit was not applied');
  const stale = await s.commit([{ op: 'update', key: 'ConfigMap/c/a', value: '3', expectRv: 99 }]);
  t.same(stale, { ok: false, index: 0, current: { key: 'ConfigMap/c/a', value: '1', rv: 1 } });
  // a conflict with a write still in its batch reports that write once it is durable
  const [u, c] = await Promise.all([
    s.commit([{ op: 'update', key: 'ConfigMap/c/a', value: '4', expectRv: 1 }]),
    s.commit([{ op: 'update', key: 'ConfigMap/c/a', value: '5', expectRv: 1 }]),
  ]);
  t.same(u, { ok: true, rv: 2 });
  t.same(c, { ok: false, index: 0, current: { key: 'ConfigMap/c/a', value: '4', rv: 2 } });
  t.same(await s.commit([{ op: 'delete', key: 'ConfigMap/c/a', expectRv: 2 }]), { ok: true, rv: 3 });
  t.same(await s.commit([{ op: 'delete', key: 'ConfigMap/c/a' }]), { ok: false, index: 0, current: undefined }, 'delete of an absent key fails');
  await t.rejects(s.commit([]), new ApiError('BadRequest', 'a storage commit needs at least one op'));
  for (let i = 0; i < 10; i++) await s.commit([{ op: 'create', key: `ConfigMap/c/n${i}`, value: String(i) }]);
  await waitFor(() => seen.length === 13, { what: '13 batches' });
  t.same(seen.map((b) => b.rv), Array.from({ length: 13 }, (_, i) => i + 1), 'every batch once, in order');
  t.same(seen[2].changes, [{ key: 'ConfigMap/c/a' }], 'a delete carries no value');
  t.same(notDurable, [], 'no batch was delivered before currentRv covered it');

  let late: Error | undefined;
  let sync = true;
  s.watch(1, () => t.fail('an expired watch delivers nothing'), (e) => {
    late = e;
    t.notOk(sync, 'Expired arrives asynchronously');
  });
  sync = false;
  await waitFor(() => late);
  t.ok(late instanceof ApiError && late.reason === 'Expired', `watch from rv 1 with a window of 5: ${late?.message}`);

  const replay: number[] = [];
  const w2 = s.watch(11, (b) => replay.push(b.rv), () => t.fail('no error'));
  await waitFor(() => replay.length === 2);
  w2.stop();
  t.same(replay, [12, 13], 'a watch inside the window replays what follows its rv');
});

t.test('a journal write error fails that commit and every later one; acknowledged writes survive a restart', async (t) => {
  const dir = tempDir(t);
  const { log, lines } = capture();
  const s = await EmbeddedStorage.open({ dir, snapshotEvery: 5, log });
  // rotation after 5 commits opens journal-5.log: make that /dev/full, where every write fails (ENOSPC)
  symlinkSync('/dev/full', join(dir, 'journal-5.log'));
  let watchErr: Error | undefined;
  s.watch(0, () => undefined, (e) => (watchErr = e));
  for (let i = 1; i <= 5; i++) t.same(await s.commit([{ op: 'create', key: `ConfigMap/f/k${i}`, value: String(i) }]), { ok: true, rv: i });
  const failed = await Promise.allSettled([
    s.commit([{ op: 'create', key: 'ConfigMap/f/k6', value: '6' }]),
    s.commit([{ op: 'create', key: 'ConfigMap/f/k7', value: '7' }]),
  ]);
  for (const f of failed) {
    t.equal(f.status, 'rejected');
    const e = (f as PromiseRejectedResult).reason as ApiError;
    t.equal(e.reason, 'ServiceUnavailable');
    t.match(e.message, /journal .*journal-5\.log failed \(.*ENOSPC.*\): no write is accepted until kubeloop is restarted/);
  }
  await t.rejects(s.commit([{ op: 'create', key: 'ConfigMap/f/k8', value: '8' }]), { name: 'ApiError', reason: 'ServiceUnavailable' } as unknown as Error, 'a later commit fails at once');
  t.equal(await s.get('ConfigMap/f/k6'), undefined, 'a read does not see the failed write');
  t.equal(await s.currentRv(), 5, 'currentRv stays at the last durable commit');
  await waitFor(() => watchErr);
  t.equal((watchErr as ApiError).reason, 'ServiceUnavailable', 'watches end with ServiceUnavailable');
  t.ok(lines.some((l) => l.level === 50 && String(l.msg).includes('journal write failed')), 'the error is logged');
  await s.close();
  unlinkSync(join(dir, 'journal-5.log'));
  const s2 = await openStore(t, { dir });
  t.equal((await s2.get('ConfigMap/f/k5'))?.value, '5', 'acknowledged writes are there after a restart');
  t.equal(await s2.get('ConfigMap/f/k6'), undefined);
  t.ok((await s2.currentRv()) >= 5);
});

t.test('a new journal segment that cannot be started is logged; writes go on in the current one', async (t) => {
  const dir = tempDir(t);
  const { log, lines } = capture();
  const s = await EmbeddedStorage.open({ dir, snapshotEvery: 3, log });
  // rotation after 3 commits would open journal-3.log: a directory there makes that fail (EISDIR)
  mkdirSync(join(dir, 'journal-3.log'));
  for (let i = 1; i <= 8; i++) t.same(await s.commit([{ op: 'create', key: `ConfigMap/r/k${i}`, value: String(i) }]), { ok: true, rv: i });
  t.ok(lines.some((l) => l.level === 50 && String(l.msg).includes('cannot start a new journal segment') && l.file === join(dir, 'journal-3.log')), 'the failure is logged with the file');
  await waitFor(() => s.stats().snapshots >= 1, { what: 'a snapshot at the next rotation (journal-6.log)' });
  rmdirSync(join(dir, 'journal-3.log'));
  await s.close();
  const s2 = await openStore(t, { dir });
  t.same((await s2.list('ConfigMap/r/')).records.map((r) => r.rv).sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8], 'every write is there after a restart');
});

t.test('replay over a fuzzy snapshot (records newer than its rv) and a stale segment converges', async (t) => {
  const dir = tempDir(t);
  const rec = (rv: number, key: string, value?: string) => encodeRecord({ rv, ops: [{ key, value }] });
  // history: K created@1, updated@2, deleted@3, created@4; J created@5, deleted@6; L created@7
  writeFileSync(join(dir, 'journal-0.log'), Buffer.concat([rec(1, 'K//k', 'k1'), rec(2, 'K//k', 'k2')]), { mode: 0o600 });
  writeFileSync(join(dir, 'journal-2.log'), Buffer.concat([rec(3, 'K//k'), rec(4, 'K//k', 'k4'), rec(5, 'J//j', 'j5'), rec(6, 'J//j'), rec(7, 'L//l', 'l7')]), { mode: 0o600 });
  // a snapshot started at rv 2 that read K after its re-create and J before its delete; the
  // crash came before journal-0.log (wholly ≤ 2) was deleted
  await writeSnapshot({
    dir,
    rv: 2,
    fsync: false,
    chunks: (async function* () {
      yield [['K//k', 4, 'k4'], ['J//j', 5, 'j5']] as Array<[string, number, string]>;
    })(),
  });
  const s = await openStore(t, { dir });
  t.same(
    (await s.list('')).records.sort((a, b) => a.key.localeCompare(b.key)),
    [
      { key: 'K//k', rv: 4, value: 'k4' },
      { key: 'L//l', rv: 7, value: 'l7' },
    ],
    'K at its re-create, J deleted, L created',
  );
  t.equal(await s.currentRv(), 7);
});
