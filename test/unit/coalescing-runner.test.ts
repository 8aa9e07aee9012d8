import t from 'tap';
import { CoalescingRunner } from '../../src/util/coalescing-runner.js';

const tick = (ms = 0): Promise<void> => new Promise((r) => setTimeout(r, ms));

t.test('concurrent run() calls collapse into one run', async (t) => {
  let runs = 0;
  const r = new CoalescingRunner({ fn: () => void runs++, onError: (e) => t.fail(String(e)) });
  t.teardown(() => r.stop());
  await Promise.all([r.run(), r.run(), r.run()]);
  t.equal(runs, 1);
});

t.test('calls made during a run are served by exactly one more run, which starts after it', async (t) => {
  let active = 0;
  let maxActive = 0;
  const seen: number[] = [];
  let value = 0;
  let release!: () => void;
  const r = new CoalescingRunner({
    fn: async () => {
      active++;
      maxActive = Math.max(maxActive, active);
      seen.push(value);
      if (seen.length === 1) await new Promise<void>((res) => (release = res));
      active--;
    },
    onError: (e) => t.fail(String(e)),
  });
  t.teardown(() => r.stop());
  const first = r.run();
  await tick();
  value = 1; // changed while run #1 is in progress
  const second = [r.run(), r.run()];
  release();
  await first;
  await Promise.all(second);
  t.same(seen, [0, 1], 'the second run saw the change made after the first started');
  t.equal(maxActive, 1, 'never concurrent');
});

t.test('a failing run reports the error, resolves its callers, and the runner keeps working', async (t) => {
  const errors: unknown[] = [];
  let n = 0;
  const r = new CoalescingRunner({
    fn: () => {
      if (++n === 1) throw new Error('boom');
    },
    onError: (e) => errors.push(e),
  });
  t.teardown(() => r.stop());
  await r.run();
  t.match(errors, [{ message: 'boom' }]);
  await r.run();
  t.equal(n, 2);
  t.equal(errors.length, 1);
});

t.test('minIntervalMs spaces run starts', async (t) => {
  const starts: number[] = [];
  const r = new CoalescingRunner({ fn: () => void starts.push(Date.now()), minIntervalMs: 60, onError: () => {} });
  t.teardown(() => r.stop());
  await r.run();
  await r.run();
  t.equal(starts.length, 2);
  t.ok(starts[1]! - starts[0]! >= 55, 'the second run waited for the interval');
});

t.test('stop() waits for the run in progress, releases waiters, and prevents further runs', async (t) => {
  let runs = 0;
  let finished = false;
  const r = new CoalescingRunner({
    fn: async () => {
      runs++;
      await tick(20);
      finished = true;
    },
    onError: () => {},
  });
  const inFlight = r.run();
  await tick();
  const queued = r.run();
  await r.stop();
  t.ok(finished, 'the run in progress completed before stop resolved');
  await inFlight;
  await queued;
  await r.run();
  t.equal(runs, 1, 'nothing ran after stop');
  await r.stop();
  t.pass('stop is idempotent');
});
