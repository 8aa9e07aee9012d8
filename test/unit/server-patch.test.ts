/**
 * Patch semantics of the API server, as tables: strategic merge patch (merge keys and the
 * directives kubectl sends), JSON merge patch, JSON patch; field sets of server-side apply;
 * kubectl's duration format.
 */
import t from 'tap';
import { isApiError } from '../../src/api/errors.js';
import type { KObject } from '../../src/api/types.js';
import { FieldManager, fromTrie, renderPath, toTrie } from '../../src/server/managed-fields.js';
import { applyJsonPatch } from '../../src/server/patch/json-patch.js';
import { applyMergePatch } from '../../src/server/patch/merge-patch.js';
import { StrategicMerge } from '../../src/server/patch/strategic.js';
import { humanDuration } from '../../src/server/printers.js';
import { Schemas } from '../../src/server/schema.js';

const schemas = new Schemas();

const deployment = () => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'web', labels: { app: 'web', tier: 'front' }, finalizers: ['a'] },
  spec: {
    replicas: 2,
    strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1 } },
    template: {
      spec: {
        containers: [
          { name: 'web', image: 'web:1', ports: [{ containerPort: 8080 }, { containerPort: 9090 }], env: [{ name: 'A', value: '1' }] },
          { name: 'side', image: 'side:1' },
        ],
      },
    },
  },
});

t.before(() => schemas.load());

t.test('strategic merge patch', async (t) => {
  const smp = new StrategicMerge(schemas);
  const cases: { name: string; patch: unknown; check: (o: ReturnType<typeof deployment>) => void }[] = [
    {
      name: 'containers merge by name; other containers stay',
      patch: { spec: { template: { spec: { containers: [{ name: 'web', image: 'web:2' }] } } } },
      check: (o) => {
        const cs = o.spec.template.spec.containers;
        t.same(cs.map((c) => `${c.name}=${c.image}`), ['web=web:2', 'side=side:1']);
        t.equal(cs[0].ports?.length, 2, 'unpatched fields of the merged container stay');
      },
    },
    {
      name: '$setElementOrder orders the merged list',
      patch: { spec: { template: { spec: { '$setElementOrder/containers': [{ name: 'side' }, { name: 'web' }], containers: [{ name: 'web', image: 'web:3' }] } } } },
      check: (o) => t.same(o.spec.template.spec.containers.map((c) => c.name), ['side', 'web']),
    },
    {
      name: '$patch: delete removes a list element by merge key',
      patch: { spec: { template: { spec: { containers: [{ name: 'side', $patch: 'delete' }] } } } },
      check: (o) => t.same(o.spec.template.spec.containers.map((c) => c.name), ['web']),
    },
    {
      name: 'ports merge by containerPort, env by name',
      patch: { spec: { template: { spec: { containers: [{ name: 'web', ports: [{ containerPort: 7070 }], env: [{ name: 'A', value: '2' }, { name: 'B', value: 'x' }] }] } } } },
      check: (o) => {
        const c = o.spec.template.spec.containers[0];
        t.same(c.ports?.map((p) => p.containerPort), [8080, 9090, 7070]);
        t.same(c.env, [{ name: 'A', value: '2' }, { name: 'B', value: 'x' }]);
      },
    },
    {
      name: '$retainKeys drops the keys it does not list (deployment strategy)',
      patch: { spec: { strategy: { $retainKeys: ['type'], type: 'Recreate', rollingUpdate: null } } },
      check: (o) => t.same(o.spec.strategy, { type: 'Recreate' }),
    },
    {
      name: 'null deletes a map key; maps merge',
      patch: { metadata: { labels: { tier: null, extra: 'y' } } },
      check: (o) => t.same(o.metadata.labels, { app: 'web', extra: 'y' }),
    },
    {
      name: '$patch: replace on a map replaces it',
      patch: { metadata: { labels: { $patch: 'replace', only: 'this' } } },
      check: (o) => t.same(o.metadata.labels, { only: 'this' }),
    },
    {
      name: 'finalizers (a set) union; $deleteFromPrimitiveList removes',
      patch: { metadata: { finalizers: ['b'], '$deleteFromPrimitiveList/finalizers': ['a'] } },
      check: (o) => t.same(o.metadata.finalizers, ['b']),
    },
    {
      name: 'a list element {"$patch":"replace"} replaces the whole list',
      patch: { spec: { template: { spec: { containers: [{ $patch: 'replace' }, { name: 'only', image: 'o:1' }] } } } },
      check: (o) => t.same(o.spec.template.spec.containers, [{ name: 'only', image: 'o:1' }]),
    },
  ];
  for (const c of cases) {
    await t.test(c.name, async () => {
      const before = deployment();
      const out = smp.apply(before, c.patch, 'V1Deployment') as ReturnType<typeof deployment>;
      c.check(out);
      t.same(before, deployment(), 'the original is not changed');
    });
  }
  t.test('Service ports merge by port; Endpoints subsets (no merge key) are replaced', async (t) => {
    const svc = { spec: { ports: [{ port: 80, name: 'http' }, { port: 443, name: 'https' }] } };
    const out = smp.apply(svc, { spec: { ports: [{ port: 80, targetPort: 8080 }] } }, 'V1Service') as typeof svc;
    t.same(out.spec.ports, [{ port: 80, name: 'http', targetPort: 8080 }, { port: 443, name: 'https' }]);
    const ep = { subsets: [{ addresses: [{ ip: '127.244.0.1' }] }, { addresses: [{ ip: '127.244.0.2' }] }] };
    const out2 = smp.apply(ep, { subsets: [{ addresses: [{ ip: '127.244.0.3' }] }] }, 'V1Endpoints') as typeof ep;
    t.same(out2.subsets, [{ addresses: [{ ip: '127.244.0.3' }] }]);
  });
  t.test('an element without its merge key is a 400', async (t) => {
    try {
      smp.apply(deployment(), { spec: { template: { spec: { containers: [{ image: 'x' }] } } } }, 'V1Deployment');
      t.fail('should throw');
    } catch (e) {
      t.ok(isApiError(e, 'BadRequest'));
      t.match((e as Error).message, /does not contain declared merge key: name/);
    }
  });
});

t.test('JSON merge patch (RFC 7386)', async (t) => {
  t.same(applyMergePatch({ a: 1, b: { c: 2, d: 3 }, l: [1, 2] }, { b: { c: null, e: 4 }, l: [3] }), { a: 1, b: { d: 3, e: 4 }, l: [3] });
  t.same(applyMergePatch({ a: 1 }, { spec: { replicas: 3 } }), { a: 1, spec: { replicas: 3 } });
});

t.test('JSON patch (RFC 6902)', async (t) => {
  const doc = { spec: { template: { a: 1 } }, metadata: { annotations: { x: 'y' } }, list: [1, 2, 3] };
  const out = applyJsonPatch(doc, [
    { op: 'replace', path: '/spec/template', value: { b: 2 } },
    { op: 'add', path: '/list/-', value: 4 },
    { op: 'remove', path: '/list/0' },
    { op: 'add', path: '/metadata/annotations/a~1b', value: 'slash' },
    { op: 'test', path: '/spec/template/b', value: 2 },
    { op: 'copy', from: '/spec/template', path: '/copied' },
    { op: 'move', from: '/copied', path: '/moved' },
  ]);
  t.same(out, { spec: { template: { b: 2 } }, metadata: { annotations: { x: 'y', 'a/b': 'slash' } }, list: [2, 3, 4], moved: { b: 2 } });
  t.same(doc.list, [1, 2, 3], 'the input is not changed');
  t.throws(() => applyJsonPatch(doc, [{ op: 'test', path: '/list/0', value: 9 }]), /test failed/);
  t.throws(() => applyJsonPatch(doc, [{ op: 'remove', path: '/nope/x' }]), /missing/);
});

t.test('managed fields: FieldsV1 tries and field sets', async (t) => {
  const fm = new FieldManager(schemas);
  const set = fm.fieldSet(deployment(), 'V1Deployment');
  const trie = toTrie(set);
  const web = (((trie['f:spec'] as Record<string, unknown>)['f:template'] as Record<string, unknown>)['f:spec'] as Record<string, Record<string, unknown>>)['f:containers']['k:{"name":"web"}'] as Record<string, unknown>;
  t.same(web['.'], {}, 'a list-map element is itself a member');
  // structured-merge-diff keys an item that omits a defaulted key field by its default
  t.ok((web['f:ports'] as Record<string, unknown>)['k:{"containerPort":8080,"protocol":"TCP"}'], 'ports keyed by containerPort + protocol, TCP when omitted');
  t.ok(((trie['f:metadata'] as Record<string, unknown>)['f:finalizers'] as Record<string, unknown>)['v:"a"'], 'finalizers are a set');
  t.same(fromTrie(trie), set, 'FieldsV1 round-trips');
  t.equal(renderPath(JSON.stringify(['f:spec', 'f:template', 'f:spec', 'f:containers', 'k:{"name":"web"}', 'f:image'])), '.spec.template.spec.containers[name="web"].image');
});

t.test('server-side apply: ownership, conflicts, force, removal', async (t) => {
  const fm = new FieldManager(schemas);
  type CM = KObject & { data: Record<string, string> };
  const base: CM = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c', namespace: 'default' }, data: { a: '1', b: '2' } };
  const created = fm.apply({ config: base, manager: 'alice', cls: 'V1ConfigMap', apiVersion: 'v1', force: false }) as CM;
  t.equal(created.metadata?.managedFields?.length, 1);
  // bob changes data.a with an Update: he owns it now
  const changed = structuredClone(created);
  changed.data.a = 'bob';
  changed.metadata!.managedFields = fm.update({ old: created, next: changed, manager: 'bob', cls: 'V1ConfigMap', apiVersion: 'v1' }) as never;
  // alice re-applies a=1: conflict with bob
  try {
    fm.apply({ live: changed, config: base, manager: 'alice', cls: 'V1ConfigMap', apiVersion: 'v1', force: false });
    t.fail('should conflict');
  } catch (e) {
    t.ok(isApiError(e, 'Conflict'));
    t.equal((e as Error).message, 'Apply failed with 1 conflict: conflict with "bob" using v1: .data.a');
  }
  const forced = fm.apply({ live: changed, config: base, manager: 'alice', cls: 'V1ConfigMap', apiVersion: 'v1', force: true }) as CM;
  t.equal(forced.data.a, '1', 'force takes the field');
  // alice stops applying b: it goes (nobody else owns it)
  const dropped = fm.apply({ live: forced, config: { ...base, data: { a: '1' } } as CM, manager: 'alice', cls: 'V1ConfigMap', apiVersion: 'v1', force: false }) as CM;
  t.same(dropped.data, { a: '1' });
  // same value as another manager: shared, no conflict
  t.doesNotThrow(() => fm.apply({ live: changed, config: { ...base, data: { a: 'bob' } } as CM, manager: 'carol', cls: 'V1ConfigMap', apiVersion: 'v1', force: false }));
});

t.test('humanDuration, as kubectl prints ages', async (t) => {
  const s = 1000;
  const cases: [number, string][] = [
    [0, '0s'],
    [59 * s, '59s'],
    [119 * s, '119s'],
    [125 * s, '2m5s'],
    [600 * s, '10m'],
    [3 * 3600 * s, '3h'],
    [3 * 3600 * s + 25 * 60 * s, '3h25m'],
    [30 * 3600 * s, '30h'],
    [3 * 86400 * s + 4 * 3600 * s, '3d4h'],
    [20 * 86400 * s, '20d'],
  ];
  for (const [ms, want] of cases) t.equal(humanDuration(ms), want, `${ms} ms`);
});
