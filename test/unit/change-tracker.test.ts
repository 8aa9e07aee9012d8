// ChangeTracker.restore: a sync that failed gives its batch back without losing or reordering changes.
import t from 'tap';
import { ChangeTracker } from '../../src/agent/proxy/change-tracker.js';

interface V {
  key: string;
  v: number;
}
const v = (key: string, n: number): V => ({ key, v: n });

t.test('a batch given back is pending again', async (t) => {
  const ct = new ChangeTracker<V>();
  ct.update(undefined, v('a', 1));
  ct.update(v('b', 1), undefined);
  const taken = ct.take();
  t.equal(ct.size, 0);
  ct.restore(taken);
  t.same(Object.fromEntries(ct.take()), { a: { prev: undefined, cur: v('a', 1) }, b: { prev: v('b', 1), cur: undefined } });
});

t.test('changes recorded since the take stay newest; the given-back prev stays first', async (t) => {
  const ct = new ChangeTracker<V>();
  ct.update(v('a', 1), v('a', 2));
  ct.update(undefined, v('b', 1));
  const taken = ct.take();
  ct.update(v('a', 2), v('a', 3)); // newer change of a
  ct.update(v('b', 1), undefined); // b deleted again before the retry: add + delete cancel out
  ct.restore(taken);
  t.same(Object.fromEntries(ct.take()), { a: { prev: v('a', 1), cur: v('a', 3) } });
});

t.test('a newer change that returns to the given-back prev cancels out', async (t) => {
  const ct = new ChangeTracker<V>();
  ct.update(v('a', 1), v('a', 2));
  const taken = ct.take();
  ct.update(v('a', 2), v('a', 1));
  ct.restore(taken);
  t.equal(ct.size, 0);
});
