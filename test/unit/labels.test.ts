import t from 'tap';
import { parse, matches, format, fromLabelSelector, mapSelects, parseFields, fieldsMatch } from '../../src/api/labels.js';

t.test('label selector strings parse and match', async (t) => {
  const cases: Array<[string, Record<string, string>, boolean]> = [
    ['', { a: '1' }, true],
    ['app=web', { app: 'web' }, true],
    ['app==web', { app: 'api' }, false],
    ['app!=web', { app: 'api' }, true],
    ['app!=web', {}, true],
    ['app in (web, api)', { app: 'api' }, true],
    ['app notin (web,api)', { app: 'api' }, false],
    ['tier', { tier: 'x' }, true],
    ['!tier', { tier: 'x' }, false],
    ['app=web,tier=fe', { app: 'web', tier: 'fe' }, true],
    ['app=web,tier=fe', { app: 'web', tier: 'be' }, false],
  ];
  for (const [s, labels, want] of cases) t.equal(matches(parse(s), labels), want, `${s} on ${JSON.stringify(labels)}`);
});

t.test('bad selector strings are BadRequest errors', async (t) => {
  t.throws(() => parse('app in web'), { name: 'ApiError', reason: 'BadRequest' });
  t.throws(() => parse('=x'), { name: 'ApiError', reason: 'BadRequest' });
});

t.test('format round-trips', async (t) => {
  const s = fromLabelSelector({ matchLabels: { app: 'web' }, matchExpressions: [{ key: 'x', operator: 'In', values: ['a', 'b'] }] });
  t.equal(format(s), 'app=web,x in (a,b)');
  t.same(parse(format(s)), s);
});

t.test('service map selectors select nothing when empty', async (t) => {
  t.equal(mapSelects({}, { a: '1' }), false);
  t.equal(mapSelects(undefined, { a: '1' }), false);
  t.equal(mapSelects({ a: '1' }, { a: '1', b: '2' }), true);
});

t.test('field selectors', async (t) => {
  const pod = { metadata: { name: 'p' }, spec: { nodeName: 'n1' }, status: { phase: 'Running' } };
  t.equal(fieldsMatch(parseFields('spec.nodeName=n1,status.phase!=Failed'), pod), true);
  t.equal(fieldsMatch(parseFields('metadata.name==q'), pod), false);
  t.throws(() => parseFields('nonsense'), { name: 'ApiError', reason: 'BadRequest' });
});

t.test('gt/lt selectors format and match as labels.Parse', async (t) => {
  const s = parse('n>3,m<10');
  t.equal(format(s), 'n>3,m<10');
  t.equal(matches(s, { n: '4', m: '9' }), true);
  t.equal(matches(s, { n: '3', m: '9' }), false);
  t.equal(matches(s, { n: '04', m: '-1' }), true, 'integers, not strings, are compared');
});

t.test('field values: zero values and event source as upstream field sets', async (t) => {
  t.equal(fieldsMatch(parseFields('spec.hostNetwork=false', 'Pod'), { spec: {} }), true);
  t.equal(fieldsMatch(parseFields('source=kubelet', 'Event'), { source: { component: 'kubelet' } }), true);
  t.equal(fieldsMatch(parseFields('status.podIPs=127.244.0.5', 'Pod'), { status: { podIPs: [{ ip: '127.244.0.5' }] } }), true);
});
