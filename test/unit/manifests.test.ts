import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyManifests, expandPaths, readManifests } from '../../src/cli/manifests.js';
import { createEmbeddedStore } from '../../src/store/embedded.js';

t.test('a bad document is reported per problem; good documents still apply', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-man-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(
    join(dir, 'a.yaml'),
    `apiVersion: v1
kind: Service
metadata: { name: good }
spec:
  ports: [{ port: 80 }]
---
apiVersion: v1
kind: Service
metadata: { name: bad }
spec:
  type: NodePort
  ports:
  - { name: http, port: 80 }
  - { name: http2, port: 81, nodePort: 99 }
---
kind: Widget
metadata: { name: w }
---
`,
  );
  await writeFile(join(dir, 'b.yml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: "1"}\n: bad: [\n');
  await writeFile(join(dir, 'notes.txt'), 'ignored');
  const { files } = expandPaths([dir]);
  t.same(files.map((f) => f.slice(dir.length + 1)), ['a.yaml', 'b.yml']);
  const store = await createEmbeddedStore();
  t.teardown(() => store.close());
  const res = await applyManifests(store, readManifests(files, dir));
  t.same(res.applied, [{ ref: 'service/default/good', action: 'created' }]);
  const text = res.problems.join('\n');
  t.match(text, /a\.yaml \[doc 2\] Service\/bad: spec\.ports\[1\]\.nodePort: Invalid value: 99: provided port is not in the valid range/);
  t.match(text, /a\.yaml \[doc 3\]: apiVersion: Required value/);
  t.match(text, /a\.yaml \[doc 3\]: kind: Unsupported value: "Widget"/);
  t.match(text, /b\.yml \[doc 1\]: invalid YAML/);
  t.equal(await store.tryGet('Service', 'default', 'bad'), undefined, 'nothing of the bad document applied');

  const again = await applyManifests(store, readManifests([join(dir, 'a.yaml')], dir));
  t.same(again.applied, [{ ref: 'service/default/good', action: 'unchanged' }], 're-apply is a no-op');
  // what `kubectl apply` records, so `kubectl apply -f` of the same files later merges without a warning
  const good = await store.get<{ kind?: string; metadata: { name: string; annotations?: Record<string, string> } }>('Service', 'default', 'good');
  const last = good.metadata.annotations?.['kubectl.kubernetes.io/last-applied-configuration'];
  t.ok(last?.endsWith('}\n'), 'the last-applied annotation is set, JSON plus a newline as kubectl writes it');
  const recorded = JSON.parse(last ?? '{}') as { kind?: string; metadata?: { name?: string; annotations?: unknown } };
  t.same([Object.keys(recorded), Object.keys(recorded.metadata ?? {})], [['apiVersion', 'kind', 'metadata', 'spec'], ['annotations', 'name', 'namespace']], 'keys sorted and the namespace filled in, as kubectl writes them');
  t.same([recorded.kind, recorded.metadata?.name, recorded.metadata?.annotations], ['Service', 'good', {}], 'it holds the manifest, not itself');
});

t.test('missing paths are reported', async (t) => {
  t.match(expandPaths(['/nonexistent/x.yaml']).problems[0], /no such file or directory/);
});
