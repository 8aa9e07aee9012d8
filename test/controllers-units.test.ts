import t from 'tap';
import type { Pod, Stored } from '../src/api/types.js';
import { equalIgnoreHash, maxSurge, maxUnavailable, scaledValue, templateHash } from '../src/controllers/deployment.js';
import { canonicalJson, generateName, safeEncode, SAFE_ALPHABET } from '../src/controllers/names.js';
import { podsToDelete } from '../src/controllers/replicaset.js';
import { resolvePort } from '../src/controllers/endpoints.js';

t.test('pod-template-hash: stable, short, safe, blind to the hash label and to empty fields', async (t) => {
  const a = { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'echo' }] } };
  const b = { metadata: { labels: { app: 'web', 'pod-template-hash': 'xyz' }, annotations: {} }, spec: { containers: [{ image: 'echo', name: 'c', env: [] }] } };
  const h = templateHash(a);
  t.match(h, new RegExp(`^[${SAFE_ALPHABET}]{1,10}$`));
  t.equal(templateHash(b), h, 'key order, empty fields and the hash label do not change it');
  t.ok(equalIgnoreHash(a, b));
  t.not(templateHash(a, 1), h, 'a collision count changes it');
  t.not(templateHash({ ...a, spec: { containers: [{ name: 'c', image: 'nginx' }] } }), h);
  t.equal(safeEncode('0123456789'), '456789bcdf', 'decimal digits map as upstream SafeEncodeString maps them');
  t.equal(canonicalJson({ b: 1, a: { z: [], y: null } }), '{"b":1}');
});

t.test('generated names: prefix + 5 safe characters, prefix cut at 58', async (t) => {
  t.match(generateName('web-'), new RegExp(`^web-[${SAFE_ALPHABET}]{5}$`));
  t.equal(generateName('x'.repeat(80)).length, 63);
});

t.test('maxSurge / maxUnavailable resolve like upstream fenceposts', async (t) => {
  const d = (replicas: number, surge?: number | string, unavail?: number | string, type = 'RollingUpdate') => ({
    spec: { replicas, strategy: { type, rollingUpdate: { maxSurge: surge, maxUnavailable: unavail } }, selector: {}, template: {} },
  });
  const cases: Array<[ReturnType<typeof d>, number, number]> = [
    [d(4), 1, 1],
    [d(3), 1, 0],
    [d(10, '30%', '30%'), 3, 3],
    [d(3, 0, 0), 0, 1],
    [d(3, 2, '100%'), 2, 3],
    [d(0), 0, 0],
    [d(5, 1, 1, 'Recreate'), 0, 0],
  ];
  for (const [dep, s, u] of cases) {
    t.equal(maxSurge(dep), s, `surge ${JSON.stringify(dep.spec.strategy)} x${dep.spec.replicas}`);
    t.equal(maxUnavailable(dep), u, `unavailable ${JSON.stringify(dep.spec.strategy)} x${dep.spec.replicas}`);
  }
  t.throws(() => scaledValue('abc', 3, true, '25%'), /use a number or a percentage/);
});

t.test('scale-down order: unscheduled, pending, not ready, doubled-up, recently ready, restarts, newest', async (t) => {
  let n = 0;
  const p = (name: string, o: { node?: string; phase?: string; ready?: boolean; readySince?: string; restarts?: number; created?: string }): Stored<Pod> => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, uid: String(n++), resourceVersion: '1', creationTimestamp: o.created ?? '2024-01-01T00:00:00Z' },
    spec: { containers: [], nodeName: o.node },
    status: {
      phase: o.phase ?? 'Running',
      conditions: o.ready === false ? [{ type: 'Ready', status: 'False' }] : [{ type: 'Ready', status: 'True', lastTransitionTime: o.readySince ?? '2024-01-01T00:00:00Z' }],
      containerStatuses: [{ name: 'c', image: 'i', imageID: '', ready: true, restartCount: o.restarts ?? 0 }],
    },
  });
  const pods = [
    p('old', { node: 'n1' }),
    p('newer', { node: 'n1', created: '2024-02-01T00:00:00Z' }),
    p('restarts', { node: 'n2', restarts: 3 }),
    p('fresh-ready', { node: 'n2', readySince: '2024-03-01T00:00:00Z' }),
    p('not-ready', { node: 'n2', ready: false }),
    p('pending', { node: 'n3', phase: 'Pending', ready: false }),
    p('unscheduled', { phase: 'Pending', ready: false }),
  ];
  t.same(
    podsToDelete(pods, pods.length).map((x) => x.metadata.name),
    ['unscheduled', 'pending', 'not-ready', 'fresh-ready', 'restarts', 'newer', 'old'],
  );
  t.same(podsToDelete(pods, 2).map((x) => x.metadata.name), ['unscheduled', 'pending']);
});

t.test('targetPort resolution: numbers as is, names per pod and protocol', async (t) => {
  const pod: Pod = { spec: { containers: [{ name: 'c', ports: [{ name: 'dns', containerPort: 5353, protocol: 'UDP' }, { name: 'http', containerPort: 8080 }] }] } };
  t.equal(resolvePort(pod, { port: 80, targetPort: 9000 }), 9000);
  t.equal(resolvePort(pod, { port: 80 }), 80, 'no targetPort: the port');
  t.equal(resolvePort(pod, { port: 80, targetPort: 'http' }), 8080);
  t.equal(resolvePort(pod, { port: 53, targetPort: 'dns', protocol: 'UDP' }), 5353);
  t.equal(resolvePort(pod, { port: 53, targetPort: 'dns', protocol: 'TCP' }), undefined, 'protocol must match');
  t.equal(resolvePort(pod, { port: 80, targetPort: 'nope' }), undefined);
});
