/**
 * internalTrafficPolicy (upstream semantics): Local sends ClusterIP traffic only to endpoints
 * whose `nodeName` is one of the proxy's nodes, and drops it when there are none; NodePort
 * traffic is external and keeps using every endpoint; switching the policy back to Cluster
 * serves every endpoint again on the ClusterIP.
 */
import t from 'tap';
import { createService, harness, setEndpoints, tcpBackend, waitFor, whoAnswers, connect } from './proxy-helpers.js';

const CIDR = '127.96.66.0/24';
const NODE = '127.0.66.254';
const B = (i: number): string => `127.0.66.${i}`;

t.test('internalTrafficPolicy Local: this node’s endpoints on the ClusterIP, every endpoint on the NodePort', async (t) => {
  const h = await harness(t, { serviceCidr: CIDR, nodeAddress: NODE, nodeNames: ['node-a'] });
  const [a, b] = await Promise.all([tcpBackend(t, B(1), 'on-a'), tcpBackend(t, B(2), 'on-b')]);
  const svc = await createService(h.store, 'web', { type: 'NodePort', internalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 8080, protocol: 'TCP', targetPort: 8080 }] });
  await setEndpoints(h.store, 'web', [
    { addresses: [{ ip: a.host, nodeName: 'node-a' }], ports: [{ name: 'http', port: a.port, protocol: 'TCP' }] },
    { addresses: [{ ip: b.host, nodeName: 'node-b' }], ports: [{ name: 'http', port: b.port, protocol: 'TCP' }] },
  ]);
  await h.proxy.synced();
  const ip = svc.spec!.clusterIP!;
  const nodePort = svc.spec!.ports![0]!.nodePort!;

  const cluster = new Set<string>();
  for (let i = 0; i < 6; i++) cluster.add(await whoAnswers(ip, 8080));
  t.same([...cluster], ['on-a'], 'the ClusterIP: only the endpoint on this node');
  const node = new Set<string>();
  for (let i = 0; i < 6; i++) node.add(await whoAnswers(NODE, nodePort));
  t.same([...node].sort(), ['on-a', 'on-b'], 'the NodePort (external traffic): every endpoint');

  // no endpoint on this node: the ClusterIP drops the connection (upstream: no local endpoints, no traffic)
  await setEndpoints(h.store, 'web', [{ addresses: [{ ip: b.host, nodeName: 'node-b' }], ports: [{ name: 'http', port: b.port, protocol: 'TCP' }] }]);
  await h.proxy.synced();
  const c = connect(ip, 8080);
  const done = await c.done;
  t.notMatch(done.data, /on-b/, 'nothing local: the ClusterIP connection gets no endpoint');
  t.equal(await whoAnswers(NODE, nodePort), 'on-b', 'the NodePort still reaches the other node’s endpoint');

  // back to Cluster: the ClusterIP portal is reopened on the service port's balancer
  const cur = await h.store.get<typeof svc>('Service', 'default', 'web');
  await h.store.update({ ...cur, spec: { ...cur.spec, internalTrafficPolicy: 'Cluster' } });
  await waitFor(async () => (await whoAnswers(ip, 8080)) === 'on-b', 'the ClusterIP to use every endpoint again');
  t.pass('internalTrafficPolicy Cluster: the other node’s endpoint answers on the ClusterIP');
});
