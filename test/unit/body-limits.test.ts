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

t.test('loadYaml: an alias counts wherever it stands, not only after a space (JSON-style ":*a", flow, compact, keys)', async (t) => {
  const limits = { maxDepth: 20, maxBytes: 1000 };
  const s = `"${'y'.repeat(300)}"`;
  const variants: Record<string, string> = {
    'JSON-style ":*a"': `{"a": &a ${s}, "k1":*a, "k2":*a, "k3":*a, "k4":*a}`,
    'compact JSON style': `{"a":&a ${s},"k1":*a,"k2":*a,"k3":*a,"k4":*a}`,
    'quoted key, space before ":"': `{"a" :&a ${s},"k1" :*a,"k2" :*a,"k3" :*a,"k4" :*a}`,
    'flow sequence "[*a,*a]"': `{a: &a ${s}, l: [*a,*a,*a,*a]}`,
    'compact "[&a x,*a]"': `[&a ${s},*a,*a,*a,*a]`,
    'alias after a tab': `{a: &a ${s}, l: [\t*a,\t*a,\t*a,\t*a]}`,
    'block sequence': `- &a ${s}\n- *a\n- *a\n- *a\n- *a\n`,
    'nested compact sequence': `- - &a ${s}\n  - *a\n  - *a\n  - *a\n  - *a\n`,
    'alias as a key': `- {&a ${s}: 1}\n- {*a : 1}\n- {*a : 2}\n- {*a : 3}\n- {*a : 4}\n`,
    'collection alias ":*m"': `{"m": &m {"a": ${s}}, "k1":*m, "k2":*m, "k3":*m}`,
  };
  for (const [name, text] of Object.entries(variants)) {
    t.ok(text.length < 1000, `${name}: ${text.length} bytes of text`);
    t.ok(refused(() => loadYaml(text, limits), /expands to more than 1000 bytes through its YAML aliases/), `${name}: refused`);
  }
  // the reviewer's body: 1 MB anchor, 40 aliases right after ':' in JSON style, 3 MiB limit
  const big = `{"a": &a "${'x'.repeat(1_000_000)}", ${Array.from({ length: 40 }, (_, i) => `"k${i}":*a`).join(', ')}}`;
  const t0 = Date.now();
  t.ok(refused(() => loadYaml(big, { maxDepth: 1000, maxBytes: 3 * 1024 * 1024 }), /expands to more than 3145728 bytes/), 'a 1 MB anchor × 40 ":*a": refused');
  t.ok(Date.now() - t0 < 2000, `refused in ${Date.now() - t0} ms`);
  // a plain flow key followed by ':*' is one plain scalar, not an alias
  t.same(loadYaml('{k:*a}', limits), { 'k:*a': null });
  // within the limit, each variant is a copy
  const small = loadYaml('{"a": &a "v", "k":*a, "l":[*a,*a]}', limits);
  t.same(small, { a: 'v', k: 'v', l: ['v', 'v'] });
});

t.test('loadYaml: aliases are copies held to the limit; plain YAML is not', async (t) => {
  const limits = { maxDepth: 20, maxBytes: 1000 };
  const v = loadYaml('a: &x {k: v}\nb: *x\n', limits) as { a: object; b: object };
  t.same(v, { a: { k: 'v' }, b: { k: 'v' } });
  t.not(v.a, v.b, 'an alias is a copy, not the same object');
  t.ok(refused(() => loadYaml(`a: &x "${'y'.repeat(300)}"\nb: [*x, *x, *x, *x]\n`, limits), /expands to more than 1000 bytes/), 'scalar aliases count');
  const wide = `a: "${'y'.repeat(600)}"\nb: {${Array.from({ length: 60 }, (_, i) => `k${i}`).join(',')}}\n`;
  t.ok(wide.length < 1000 && JSON.stringify(loadYaml(wide, limits)).length > 1000, 'bigger as JSON than the limit, but no alias expands it');
  t.doesNotThrow(() => loadYaml(wide.replace('"\n', ' *x"\n'), limits), 'a " *" inside a string is text, not an alias');
  t.doesNotThrow(() => loadYaml(`z: &x "${'y'.repeat(600)}"\nb: {${Array.from({ length: 60 }, (_, i) => `k${i}`).join(',')}}\n`, limits), 'an anchor never aliased expands nothing');
  t.ok(refused(() => loadYaml('a: &x [*x]\n', limits), /json parse error|refers to itself/), 'an alias inside its anchor');
  t.ok(refused(() => loadYaml(`a: ${'['.repeat(21)}${']'.repeat(21)}`, limits), /exceeded max depth 20/));
  t.doesNotThrow(() => loadYaml(`a: ${'['.repeat(19)}${']'.repeat(19)}`, limits), 'nesting of 20 with the root map');
  t.ok(refused(() => loadYaml(`a:\n${'  '.repeat(1)}${'- '.repeat(30)}x\n`, limits), /exceeded max depth 20/), 'compact block sequences');
  t.same(loadYaml('t: 2024-01-01T00:00:00Z\nn: 010\n', limits), { t: '2024-01-01T00:00:00Z', n: 10 }, 'core schema: timestamps stay strings');
  t.ok(refused(() => loadYaml('a: 1\na: 2\n', limits), /duplicated mapping key/));
});
