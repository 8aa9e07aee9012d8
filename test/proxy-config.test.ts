// The narrowing adapter and change tracker that sit in front of the proxier.
import t from 'tap';
import type { Endpoints, Service } from '../src/api/types.js';
import { ChangeTracker } from '../src/agent/proxy/change-tracker.js';
import { narrowEndpoints, narrowService, type ProxyService } from '../src/agent/proxy/config.js';

const svc = (spec: Service['spec'], status?: Service['status']): Service => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: 'web', namespace: 'ns' },
  spec,
  status,
});

t.test('services: what decides listeners, in plain data', async (t) => {
  const cases: Array<[string, Service, Partial<ProxyService>]> = [
    ['headless', svc({ clusterIP: 'None', ports: [{ port: 80 }] }), { ports: [], clusterIPs: [] }],
    ['no clusterIP', svc({ ports: [{ port: 80 }] }), { ports: [] }],
    ['ExternalName', svc({ type: 'ExternalName', clusterIP: '127.96.0.9', externalName: 'x.example' }), { ports: [] }],
    [
      'ClusterIP ignores nodePort',
      svc({ clusterIP: '127.96.0.9', ports: [{ name: 'http', port: 80, nodePort: 30001 }] }),
      { clusterIPs: ['127.96.0.9'], ports: [{ name: 'http', protocol: 'TCP', port: 80, nodePort: 0 }] },
    ],
    [
      'NodePort, UDP, unnamed, SCTP reported',
      svc({
        type: 'NodePort',
        clusterIP: '127.96.0.9',
        ports: [
          { port: 53, protocol: 'UDP', nodePort: 30053 },
          { port: 99, protocol: 'SCTP' },
        ],
      }),
      { ports: [{ name: '', protocol: 'UDP', port: 53, nodePort: 30053 }], unsupportedPorts: ['SCTP/99'] },
    ],
    [
      'LB ingress IPs only (hostnames ignored), affinity',
      svc(
        {
          type: 'LoadBalancer',
          clusterIP: '127.96.0.9',
          ports: [{ port: 80, nodePort: 30080 }],
          sessionAffinity: 'ClientIP',
          sessionAffinityConfig: { clientIP: { timeoutSeconds: 30 } },
        },
        { loadBalancer: { ingress: [{ ip: '127.0.0.50' }, { hostname: 'lb.example' }] } },
      ),
      { loadBalancerIPs: ['127.0.0.50'], affinity: { type: 'ClientIP', timeoutSeconds: 30 } },
    ],
  ];
  for (const [name, s, want] of cases) t.match(narrowService(s), { key: 'ns/web', ...want }, name);
});

t.test('endpoints: ready addresses only, by port name, sorted and deduplicated', async (t) => {
  const ep: Endpoints = {
    metadata: { name: 'web', namespace: 'ns' },
    subsets: [
      {
        addresses: [{ ip: '127.244.0.3' }, { ip: '127.244.0.1' }],
        notReadyAddresses: [{ ip: '127.244.0.9' }],
        ports: [
          { name: 'http', port: 8080 },
          { name: 'metrics', port: 9090 },
        ],
      },
      { addresses: [{ ip: '127.244.0.1' }], ports: [{ name: 'http', port: 8080 }] },
      { addresses: [{ ip: '::1' }], ports: [{ name: 'http', port: 8080 }] },
    ],
  };
  const n = narrowEndpoints(ep);
  t.same(
    Object.fromEntries(Object.entries(n.ports).map(([k, v]) => [k, v.map((e) => e.id)])),
    { http: ['127.244.0.1:8080', '127.244.0.3:8080', '[::1]:8080'], metrics: ['127.244.0.1:9090', '127.244.0.3:9090'] },
  );
});

t.test('change tracker keeps the first prev and the latest cur, and drops no-ops', async (t) => {
  const a = (v: number) => ({ key: 'ns/a', v });
  const tr = new ChangeTracker<{ key: string; v: number }>();
  t.ok(tr.update(a(1), a(2)));
  t.ok(tr.update(a(2), a(3)));
  t.same([...tr.take()], [['ns/a', { prev: a(1), cur: a(3) }]]);
  t.equal(tr.size, 0, 'take empties it');

  tr.update(a(1), a(2));
  t.notOk(tr.update(a(2), a(1)), 'back where it started: dropped');
  t.equal(tr.size, 0);

  tr.update(undefined, a(1));
  t.notOk(tr.update(a(1), undefined), 'add then delete: nothing to do');
  t.equal(tr.size, 0);

  tr.update(a(1), undefined);
  tr.update(undefined, a(5));
  t.same([...tr.take()], [['ns/a', { prev: a(1), cur: a(5) }]], 'delete then re-add is an update');

  t.notOk(tr.update(a(4), { key: 'ns/a', v: 4 }), 'equal values are a no-op');
});
