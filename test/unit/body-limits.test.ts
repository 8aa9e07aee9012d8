/** server/body-limits.ts alone: the depth scan, measure() over shared values, bounded YAML. */
import t from 'tap';
import { isApiError } from '../../src/api/errors.js';
import { checkDepth, checkJsonDepth, loadYaml, measure } from '../../src/server/body-limits.js';

const refused = (fn: () => unknown, re: RegExp) => {
  try {
    fn();
  } catch (e) {
    return isApiError(e, 'BadRequest') && re.test(e.message);
  }
  return false;
};

t.test('checkJsonDepth counts brackets outside strings only', async (t) => {
  const cases: Array<[string, number, boolean]> = [
    ['{"a":[1,{"b":2}]}', 3, true],
    ['{"a":[1,{"b":2}]}', 2, false],
    ['{"a":"[[[[[[[[[["}', 1, true],
    ['{"a":"\\"[[[[[["}', 1, true],
    ['{"a":"\\\\","b":[[[]]]}', 3, false],
    ['{"a":"\\\\","b":[[[]]]}', 4, true],
    ['[]', 1, true],
    ['"[[["', 0, true],
  ];
  for (const [text, max, ok] of cases) {
    t.equal(!refused(() => checkJsonDepth(text, max), /exceeded max depth/), ok, `${text} within ${max}: ${ok}`);
  }
});

t.test('measure counts a shared value each time it appears, in linear time, and refuses cycles', async (t) => {
  const leaf = { s: 'x'.repeat(1000) };
  const doc = { a: leaf, b: leaf, c: [leaf, leaf] };
  const m = measure(doc, { maxDepth: 10 });
  t.equal(m.shared, true);
  t.ok(m.bytes >= 4 * 1000, `4 copies counted: ${m.bytes}`);
  t.equal(m.depth, 3);
  t.ok(Math.abs(m.bytes - JSON.stringify(doc).length) < 64, 'about the JSON length');
  // 2^60 copies by reference: measured, not expanded
  let v: unknown = ['lol'];
  for (let i = 0; i < 60; i++) v = [v, v];
  const t0 = Date.now();
  t.ok(measure(v, { maxDepth: 100 }).bytes > 2 ** 60);
  t.ok(Date.now() - t0 < 1000, 'linear in distinct values');
  const loop: Record<string, unknown> = {};
  loop.self = [loop];
  t.ok(refused(() => measure(loop, { maxDepth: 10 }), /refers to itself/));
  t.ok(refused(() => checkDepth({ a: { b: { c: {} } } }, 3), /exceeded max depth 3/));
  t.doesNotThrow(() => checkDepth({ a: { b: { c: 1 } } }, 3));
});

t.test('loadYaml: aliases are copies held to the limit; plain YAML is not', async (t) => {
  const limits = { maxDepth: 20, maxBytes: 1000 };
  const v = loadYaml('a: &x {k: v}\nb: *x\n', limits) as { a: object; b: object };
  t.same(v, { a: { k: 'v' }, b: { k: 'v' } });
  t.not(v.a, v.b, 'an alias is a copy, not the same object');
  t.ok(refused(() => loadYaml(`a: &x "${'y'.repeat(300)}"\nb: [*x, *x, *x, *x]\n`, limits), /expands to more than 1000 bytes/), 'scalar aliases count');
  const wide = `a: "${'y'.repeat(600)}"\nb: {${Array.from({ length: 60 }, (_, i) => `k${i}`).join(',')}}\n`;
  t.ok(wide.length < 1000 && JSON.stringify(loadYaml(wide, limits)).length > 1000, 'bigger as JSON than the limit, but no alias expands it');
  // the alias test is a superset: a " *" inside a string makes such a body count as aliased
  t.ok(refused(() => loadYaml(wide.replace('"\n', ' *x"\n'), limits), /expands to more than 1000 bytes/));
  t.ok(refused(() => loadYaml('a: &x [*x]\n', limits), /json parse error|refers to itself/), 'an alias inside its anchor');
  t.ok(refused(() => loadYaml(`a: ${'['.repeat(21)}${']'.repeat(21)}`, limits), /exceeded max depth 20/));
  t.doesNotThrow(() => loadYaml(`a: ${'['.repeat(19)}${']'.repeat(19)}`, limits), 'nesting of 20 with the root map');
  t.ok(refused(() => loadYaml(`a:\n${'  '.repeat(1)}${'- '.repeat(30)}x\n`, limits), /exceeded max depth 20/), 'compact block sequences');
  t.same(loadYaml('t: 2024-01-01T00:00:00Z\nn: 010\n', limits), { t: '2024-01-01T00:00:00Z', n: 10 }, 'core schema: timestamps stay strings');
  t.ok(refused(() => loadYaml('a: 1\na: 2\n', limits), /duplicated mapping key/));
});
