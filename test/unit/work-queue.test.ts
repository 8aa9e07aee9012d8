import t from 'tap';
import pino from 'pino';
import { ExponentialBackoff, WorkQueue } from '../../src/util/work-queue.js';
import { Runner } from '../../src/controllers/runner.js';
import { waitFor } from '../helpers/wait.js';

const silent = pino({ level: 'silent' });

t.test('a key is queued once however often it is added', async (t) => {
  const q = new WorkQueue<string>();
  t.teardown(() => q.shutDown());
  q.add('a');
  q.add('b');
  q.add('a');
  t.equal(q.length, 2);
  t.equal(await q.get(), 'a');
  t.equal(await q.get(), 'b');
  t.equal(q.length, 0);
});

t.test('a key added while processing is handed out again only after done()', async (t) => {
  const q = new WorkQueue<string>();
  t.teardown(() => q.shutDown());
  q.add('a');
  const k = await q.get();
  q.add('a');
  t.equal(q.length, 0, 'not queued while processing');
  let second: string | undefined;
  void q.get().then((v) => (second = v));
  await new Promise((r) => setImmediate(r));
  t.equal(second, undefined, 'no concurrent hand-out');
  q.done(k!);
  await new Promise((r) => setImmediate(r));
  t.equal(second, 'a', 'processed again after done');
});

t.test('delayed adds: the earliest wins, shutDown cancels them', async (t) => {
  const q = new WorkQueue<string>();
  q.addAfter('a', 10_000);
  q.addAfter('a', 5);
  t.equal(q.delayed, 1);
  t.equal(await q.get(), 'a');
  q.addAfter('b', 10_000);
  q.shutDown();
  t.equal(q.delayed, 0, 'timers cleared');
  t.equal(await q.get(), undefined, 'get after shutdown resolves undefined');
  q.add('c');
  t.equal(q.length, 0, 'adds after shutdown are ignored');
});

t.test('back-off doubles from 5 ms to the cap and resets on forget', async (t) => {
  const b = new ExponentialBackoff<string>({ maxMs: 1000 });
  const seq = Array.from({ length: 10 }, () => b.when('k'));
  t.same(seq, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
  t.equal(new ExponentialBackoff<string>().maxMs, 1_000_000, 'default cap is 1000 s');
  b.forget('k');
  t.equal(b.when('k'), 5);
  t.throws(() => new ExponentialBackoff({ baseMs: 0 }), /baseMs/);
});

const synced = { start: async () => {}, hasSynced: () => true };

t.test('runner: one key never runs twice at once; an add during a run makes one more run', async (t) => {
  let running = 0;
  let maxRunning = 0;
  let runs = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const runner = new Runner({
    name: 'test',
    log: silent,
    informers: [synced],
    workers: 4,
    reconciler: {
      async reconcile() {
        running++;
        maxRunning = Math.max(maxRunning, running);
        runs++;
        if (runs === 1) await gate;
        running--;
      },
    },
  });
  t.teardown(() => runner.stop());
  await runner.start();
  runner.enqueue('k');
  await waitFor(() => runs === 1);
  runner.enqueue('k');
  runner.enqueue('k');
  await new Promise((r) => setTimeout(r, 20));
  t.equal(runs, 1, 'not started again while running');
  release();
  await waitFor(() => runs === 2 && runner.pending === 0);
  await new Promise((r) => setTimeout(r, 20));
  t.equal(runs, 2, 'exactly one more run');
  t.equal(maxRunning, 1);
});

t.test('runner: errors retry with back-off, success forgets; requeueAfterMs comes back', async (t) => {
  const calls: number[] = [];
  let requeued = 0;
  const runner = new Runner({
    name: 'test',
    log: silent,
    informers: [synced],
    backoff: { baseMs: 5, maxMs: 50 },
    reconciler: {
      async reconcile(key) {
        if (key === 'fail') {
          calls.push(Date.now());
          if (calls.length < 4) throw new Error('boom');
          return;
        }
        requeued++;
        return requeued < 3 ? { requeueAfterMs: 5 } : undefined;
      },
    },
  });
  t.teardown(() => runner.stop());
  await runner.start();
  runner.enqueue('fail');
  runner.enqueue('again');
  await waitFor(() => calls.length === 4 && requeued === 3, { timeoutMs: 2000 });
  t.equal(calls.length, 4, 'retried until it succeeded');
  t.equal(requeued, 3, 'requeueAfterMs ran it again, twice');
});

t.test('runner: nothing runs before the informers have synced', async (t) => {
  let synced = false;
  let release!: () => void;
  const inf = { start: () => new Promise<void>((r) => (release = () => { synced = true; r(); })), hasSynced: () => synced };
  const seen: boolean[] = [];
  const runner = new Runner({
    name: 'test',
    log: silent,
    informers: [inf],
    reconciler: { async reconcile() { seen.push(synced); } },
  });
  t.teardown(() => runner.stop());
  const started = runner.start();
  runner.enqueue('a');
  await new Promise((r) => setTimeout(r, 20));
  t.same(seen, [], 'waits for sync');
  release();
  await started;
  await waitFor(() => seen.length === 1);
  t.same(seen, [true]);
});

t.test('runner: a reconcile past its timeout is aborted, retried after it settles, and frees its worker', async (t) => {
  let hangs = 0;
  const others: string[] = [];
  let aborted = false;
  const runner = new Runner({
    name: 'test',
    log: silent,
    informers: [synced],
    workers: 1,
    timeoutMs: 30,
    backoff: { baseMs: 5, maxMs: 5 },
    reconciler: {
      async reconcile(key, { signal }) {
        if (key !== 'slow') {
          others.push(key);
          return;
        }
        hangs++;
        if (hangs === 1) {
          await new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
          aborted = true;
          await new Promise((r) => setTimeout(r, 30));
        }
      },
    },
  });
  t.teardown(() => runner.stop());
  await runner.start();
  runner.enqueue('slow');
  runner.enqueue('next');
  await waitFor(() => others.includes('next'), { timeoutMs: 1000 });
  t.ok(aborted, 'the signal was aborted at the timeout');
  await waitFor(() => hangs === 2, { timeoutMs: 1000 });
  t.pass('the timed-out key ran again once its first run settled');
});

t.test('runner: stop() is idempotent, aborts running reconciles and ignores later enqueues', async (t) => {
  let sawAbort = false;
  let runs = 0;
  const runner = new Runner({
    name: 'test',
    log: silent,
    informers: [synced],
    reconciler: {
      async reconcile(_k, { signal }) {
        runs++;
        await new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
        sawAbort = true;
      },
    },
  });
  await runner.start();
  runner.enqueue('a');
  await waitFor(() => runs === 1);
  await Promise.all([runner.stop(), runner.stop()]);
  t.ok(sawAbort);
  runner.enqueue('b');
  await new Promise((r) => setTimeout(r, 20));
  t.equal(runs, 1);
  t.equal(runner.pending, 0);
});
