import t from 'tap';
import { IndexIntervals } from '../../src/controllers/index-intervals.js';

t.test('parse, format, has, size: runs, never one entry per index', async (t) => {
  const s = IndexIntervals.parse('0-2,4, 7-9,x,5-3,12', 10);
  t.equal(s.format(), '0-2,4,7-9', 'bad parts skipped, indexes past the limit dropped');
  t.equal(s.size, 7);
  t.ok(s.has(0) && s.has(2) && s.has(4) && s.has(9));
  t.notOk(s.has(3) || s.has(5) || s.has(10) || s.has(-1));
  const big = IndexIntervals.parse('1-999999998', 1_000_000_000);
  t.equal(big.size, 999_999_998);
  t.equal(big.format(), '1-999999998');
});

t.test('add merges touching and overlapping runs', async (t) => {
  const s = new IndexIntervals();
  for (const i of [5, 3, 4, 9, 0, 1, 7]) s.add(i);
  t.equal(s.format(), '0-1,3-5,7,9');
  s.add(8);
  t.equal(s.format(), '0-1,3-5,7-9');
  s.add(2);
  t.equal(s.format(), '0-5,7-9');
  s.addRange(4, 20);
  t.equal(s.format(), '0-20');
  s.add(20);
  t.equal(s.format(), '0-20', 'adding a member changes nothing');
});

t.test('missing jumps over runs and skips the given indexes', async (t) => {
  const s = IndexIntervals.parse('1-999999998', 1_000_000_000);
  const started = Date.now();
  t.same(s.missing(1_000_000_000, 500), [0, 999_999_999]);
  t.same(s.missing(1_000_000_000, 500, new Set([0])), [999_999_999]);
  t.same(new IndexIntervals().missing(1_000_000_000, 3, new Set([1])), [0, 2, 3], 'stops at max');
  t.same(IndexIntervals.parse('0-4').missing(5, 10), []);
  t.ok(Date.now() - started < 100, 'no walk over a billion indexes');
});
