/** server/patch/json-patch.ts alone: what a small patch may make the daemon build and hold. */
import t from 'tap';
import { isApiError } from '../../src/api/errors.js';
import { MAX_DEPTH } from '../../src/server/body-limits.js';
import { JSON_PATCH_MAX_COPY_BYTES, MAX_JSON_PATCH_OPERATIONS, applyJsonPatch } from '../../src/server/patch/json-patch.js';

const thrown = (fn: () => unknown): unknown => {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
};
const cm = () => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'p', annotations: {} as Record<string, unknown> } });
const x = '/metadata/annotations/x';

t.test('copies of a value into its own child stop at the accumulated copy limit, before cloning', async (t) => {
  // the reviewer's patch: a 1 KB object copied 17 times into itself doubles 17 times (128 MB);
  // 40 copies would be 2^40 KB
  const ops: unknown[] = [{ op: 'add', path: x, value: { k: 'y'.repeat(1000) } }];
  for (let i = 0; i < 40; i++) ops.push({ op: 'copy', from: x, path: `${x}/c${i}` });
  t.ok(JSON.stringify(ops).length < 8192, `a ${JSON.stringify(ops).length}-byte body`);
  const rss0 = process.memoryUsage().rss;
  const t0 = Date.now();
  let err: unknown;
  try {
    applyJsonPatch(cm(), ops);
  } catch (e) {
    err = e;
  }
  const ms = Date.now() - t0;
  t.ok(isApiError(err, 'Invalid'), 'a 422 Invalid, as upstream answers a patch that does not apply');
  t.equal((err as { code?: number }).code, 422);
  t.match(String((err as Error).message), /Unable to complete the copy, the accumulated size increase of copy is \d+, exceeding the limit 3145728/);
  t.ok(ms < 1000, `refused in ${ms} ms`);
  const grown = (process.memoryUsage().rss - rss0) / 2 ** 20;
  t.ok(grown < 64, `RSS grew ${grown.toFixed(1)} MiB (the limit is 3 MiB of copies)`);
});

t.test('the limit is on the sum of all copies; copies within it apply', async (t) => {
  const doc = { a: 'z'.repeat(1000), l: [] as unknown[] };
  const copies = (n: number) => Array.from({ length: n }, () => ({ op: 'copy', from: '/a', path: '/l/-' }));
  const out = applyJsonPatch(doc, copies(9), 10_100) as { l: string[] };
  t.equal(out.l.length, 9, '9 copies of 1002 bytes within 10,100');
  t.equal(doc.l.length, 0, 'the input is not changed');
  t.throws(() => applyJsonPatch(doc, copies(11), 10_100), /accumulated size increase of copy is 11022, exceeding the limit 10100/);
  t.equal(JSON_PATCH_MAX_COPY_BYTES, 3 * 1024 * 1024, "the apiserver's JSONPatchMaxCopyBytes");
  // a copied value is a copy: changing it later does not change its source
  const o = applyJsonPatch({ a: { k: 1 } }, [{ op: 'copy', from: '/a', path: '/b' }, { op: 'replace', path: '/b/k', value: 2 }]);
  t.same(o, { a: { k: 1 }, b: { k: 2 } });
});

t.test('add, replace and move cannot amplify; operation count and depth are bounded', async (t) => {
  // move back and forth re-links the value: 5,000 moves of a 2 MB value take no copies
  const big = { v: Array.from({ length: 20_000 }, (_, i) => `item-${i}-${'q'.repeat(90)}`) };
  const moves = Array.from({ length: 5000 }, (_, i) => (i % 2 ? { op: 'move', from: '/b', path: '/a' } : { op: 'move', from: '/a', path: '/b' }));
  const rss0 = process.memoryUsage().rss;
  const t0 = Date.now();
  const out = applyJsonPatch({ a: big }, moves) as Record<string, unknown>;
  t.ok(Date.now() - t0 < 1000, `5,000 moves of a 2 MB value in ${Date.now() - t0} ms`);
  t.ok((process.memoryUsage().rss - rss0) / 2 ** 20 < 64, 'moves held nothing extra');
  t.same(Object.keys(out), ['a']);
  // add/replace insert the body's own values: bounded by the body
  const v = { k: 'w'.repeat(1000) };
  const o = applyJsonPatch({}, [{ op: 'add', path: '/a', value: v }, { op: 'replace', path: '/a', value: v }, { op: 'add', path: '/b', value: v }]) as Record<string, object>;
  t.not(o.a, o.b, 'each insert is its own value');
  const tooMany = Array.from({ length: MAX_JSON_PATCH_OPERATIONS + 1 }, () => ({ op: 'test', path: '/a', value: 1 }));
  const e = thrown(() => applyJsonPatch({ a: 1 }, tooMany));
  t.ok(isApiError(e, 'RequestEntityTooLarge') && e.code === 413, '413, as upstream');
  t.match(String((e as Error).message), /maximum operations in a JSON patch is 10000, got 10001/);
  t.doesNotThrow(() => applyJsonPatch({ a: 1 }, tooMany.slice(1)), '10,000 operations are fine');
  // a value nesting past the limit is refused before it is cloned or stringified
  let deep: unknown = 'x';
  for (let i = 0; i < MAX_DEPTH + 5; i++) deep = { a: deep };
  t.throws(() => applyJsonPatch({ d: deep }, [{ op: 'copy', from: '/d', path: '/e' }]), /exceeded max depth/);
  t.throws(() => applyJsonPatch({ d: deep }, [{ op: 'test', path: '/d', value: 1 }]), /exceeded max depth/);
});
