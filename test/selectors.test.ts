/**
 * Label and field selectors as the kube-apiserver parses them (issue 14, finding 5): the grammar
 * and messages of apimachinery's labels.Parse / fields.ParseSelector, and over HTTP: a bad
 * selector on list, watch and deletecollection is a 400 Status that deletes nothing.
 */
import t from 'tap';
import { matches, parse, parseFields } from '../src/api/labels.js';
import { inProcessApi } from './helpers/api.js';

const QNAME =
  "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
const LABEL_VALUE =
  "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const LONG = 'x'.repeat(64);

/** [selector, upstream's error message] */
const BAD: Array<[string, string]> = [
  ['a,', "found '', expected: identifier after ','"],
  ['a,,b', "found ',', expected: identifier after ','"],
  [',a', "found ',', expected: !, identifier, or 'end of string'"],
  ['=x', "found '=', expected: !, identifier, or 'end of string'"],
  ['()', "found '(', expected: !, identifier, or 'end of string'"],
  ['x/y/z', `unable to parse requirement: <nil>: Invalid value: "x/y/z": ${QNAME}`],
  ['x/y/z=a', `unable to parse requirement: <nil>: Invalid value: "x/y/z": ${QNAME}`],
  [`a=${LONG}`, `unable to parse requirement: values[0][a]: Invalid value: "${LONG}": must be no more than 63 characters`],
  [`a in (b,${LONG})`, `unable to parse requirement: values[1][a]: Invalid value: "${LONG}": must be no more than 63 characters`],
  ['a in x', "unable to parse requirement: found 'x' expected: '('"],
  ['a in (x', "unable to parse requirement: found '', expected: ',' or ')'"],
  ['a in (x y)', "unable to parse requirement: found 'y', expected: ',' or ')'"],
  ['a in (=)', "unable to parse requirement: found '=', expected: ',', ')' or identifier"],
  ['a b', "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"],
  ['a=(', "unable to parse requirement: found '(', expected: identifier"],
  ['a>x', `unable to parse requirement: values[0]: Invalid value: "x": for 'Gt', 'Lt' operators, the value must be an integer`],
  ['a<99999999999999999999', `unable to parse requirement: values[0]: Invalid value: "99999999999999999999": for 'Gt', 'Lt' operators, the value must be an integer`],
  ['x=a||y=b', `unable to parse requirement: values[0][x]: Invalid value: "a||y": ${LABEL_VALUE}`],
  ['x<-1', `unable to parse requirement: values[0][x]: Invalid value: "-1": ${LABEL_VALUE}`],
  ['x==a==b', "found '==', expected: ',' or 'end of string'"],
  ['!x=a', "found '=', expected: ',' or 'end of string'"],
  ['a=b c', "found 'c', expected: ',' or 'end of string'"],
  ['a=b%zz', `unable to parse requirement: values[0][a]: Invalid value: "b%zz": ${LABEL_VALUE}`],
];

/** [selector, labels, matches?] — accepted by upstream, with upstream's semantics */
const GOOD: Array<[string, Record<string, string>, boolean]> = [
  ['', { a: '1' }, true],
  ['x=a,y=b,z=c', { x: 'a', y: 'b', z: 'c' }, true],
  ['x!=a,y=b', { y: 'b' }, true],
  ['x=', { x: '' }, true],
  ['x= ', { x: 'a' }, false],
  ['x=,z= ', { x: '', z: '' }, true],
  ['!x', { x: '1' }, false],
  ['!x', {}, true],
  ['x>1', { x: '2' }, true],
  ['x>1', { x: '1' }, false],
  ['x>1', { x: 'two' }, false],
  ['x>1', {}, false],
  ['x>1,z<5', { x: '3', z: '-7' }, true],
  ['x<1', { x: '-2' }, true],
  ['x in (foo,,baz),y,z notin ()', { x: 'foo', y: 'q' }, true],
  ['x in (foo,,baz),y,z notin ()', { x: '', y: 'q', z: 'w' }, true],
  ['x in (foo,,baz),y,z notin ()', { x: 'foo', y: 'q', z: '' }, false],
  // `()` is the empty value upstream: `a in ()` selects a="", `a notin ()` everything else
  ['a in ()', { a: '' }, true],
  ['a in ()', { a: 'x' }, false],
  ['a in ()', {}, false],
  ['a notin ()', { a: '' }, false],
  ['a notin ()', { a: 'x' }, true],
  ['a notin ()', {}, true],
  ['in in (in, notin)', { in: 'notin' }, true],
  ['  a  ==  b  ', { a: 'b' }, true],
  ['example.com/a=b', { 'example.com/a': 'b' }, true],
  ['a=b\u0000,c', { a: 'b' }, true],
];

t.test('label selectors: upstream grammar and messages', async (t) => {
  for (const [s, msg] of BAD) {
    t.throws(() => parse(s), { name: 'ApiError', reason: 'BadRequest', message: msg }, `rejects ${JSON.stringify(s)}`);
  }
  for (const [s, labels, want] of GOOD) {
    t.equal(matches(parse(s), labels), want, `${JSON.stringify(s)} on ${JSON.stringify(labels)}`);
  }
});

t.test('label selectors: a 100k-term selector parses without recursion', async (t) => {
  const s = Array.from({ length: 100_000 }, (_, i) => `k${i % 50}`).join(',');
  t.equal(parse(s).length, 100_000);
  t.throws(() => parse('('.repeat(100_000)), { name: 'ApiError', reason: 'BadRequest' }, 'a 100k-deep nonsense selector is a 400');
});

t.test('field selectors: upstream grammar, escapes and per-kind fields', async (t) => {
  t.same(parseFields('metadata.name=a\\,b', 'ConfigMap'), [{ field: 'metadata.name', op: '=', value: 'a,b' }]);
  t.same(parseFields('spec.nodeName==n1,status.phase!=Failed', 'Pod'), [
    { field: 'spec.nodeName', op: '=', value: 'n1' },
    { field: 'status.phase', op: '!=', value: 'Failed' },
  ]);
  t.same(parseFields('type=Opaque,', 'Secret'), [{ field: 'type', op: '=', value: 'Opaque' }]);
  const bad: Array<[string, string, string]> = [
    ['nonsense', 'Pod', "invalid selector: 'nonsense'; can't understand 'nonsense'"],
    ['spec.typo!=x', 'Pod', 'field label not supported: spec.typo'],
    ['metadata.name =x', 'Pod', 'field label not supported: metadata.name '],
    ['data.k=v', 'ConfigMap', '"data.k" is not a known field selector: only "metadata.name", "metadata.namespace"'],
    ['metadata.name=a\\b', 'ConfigMap', 'invalid field selector: invalid escape sequence: \\b'],
    ['metadata.name=a\\', 'ConfigMap', 'invalid field selector: invalid escape sequence: \\'],
    ['metadata.name=a=b', 'ConfigMap', 'invalid field selector: unescaped character in value: ='],
  ];
  for (const [s, kind, msg] of bad) t.throws(() => parseFields(s, kind), { reason: 'BadRequest', message: msg }, `${kind}: ${s}`);
});

async function api(t: { teardown(fn: () => unknown): void }) {
  const server = await inProcessApi(t, { dirPrefix: 'kubeloop-sel-' });
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${server.url}${path}`, {
      method,
      headers: { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };
  return { call };
}

t.test('over HTTP: bad selectors are 400 and delete nothing; `notin ()` selects as upstream', async (t) => {
  const { call } = await api(t);
  const base = '/api/v1/namespaces/default/configmaps';
  const cms: Array<[string, Record<string, string>]> = [
    ['plain', {}],
    ['empty-a', { a: '' }],
    ['a-x', { a: 'x' }],
    ['n7', { n: '7' }],
  ];
  for (const [name, labels] of cms) {
    t.equal((await call('POST', base, { metadata: { name, labels }, data: { k: 'v' } })).status, 201, `create ${name}`);
  }
  const names = async () => ((await call('GET', base)).json.items as { metadata: { name: string } }[]).map((o) => o.metadata.name).sort();
  for (const [s, msg] of BAD) {
    const q = `?labelSelector=${encodeURIComponent(s)}`;
    for (const method of ['GET', 'DELETE']) {
      const r = await call(method, base + q);
      t.equal(r.status, 400, `${method} ${s}`);
      t.match(r.json, { kind: 'Status', status: 'Failure', reason: 'BadRequest', code: 400, message: msg });
    }
    const w = await call('GET', `${base}?watch=true&labelSelector=${encodeURIComponent(s)}`);
    t.equal(w.status, 400, `watch ${s}`);
  }
  for (const fs of ['spec.typo!=x', 'data.k!=nope', 'nonsense']) {
    const r = await call('DELETE', `${base}?fieldSelector=${encodeURIComponent(fs)}`);
    t.equal(r.status, 400, `fieldSelector ${fs}`);
  }
  t.same(await names(), ['a-x', 'empty-a', 'n7', 'plain'], 'no bad selector deleted anything');

  const sel = async (s: string) =>
    ((await call('GET', `${base}?labelSelector=${encodeURIComponent(s)}`)).json.items as { metadata: { name: string } }[]).map((o) => o.metadata.name).sort();
  t.same(await sel('a in ()'), ['empty-a']);
  t.same(await sel('n>6'), ['n7']);
  t.same(await sel('n<7'), []);
  const del = await call('DELETE', `${base}?labelSelector=${encodeURIComponent('a notin ()')}`);
  t.equal(del.status, 200);
  t.same(await names(), ['empty-a'], '`a notin ()` deletes what upstream deletes: everything but a=""');
});
