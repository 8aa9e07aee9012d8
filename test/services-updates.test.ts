/**
 * Service updates end to end through the real daemon: type changes in every direction
 * (ClusterIP ↔ NodePort ↔ LoadBalancer ↔ ExternalName) allocate and release addresses and open
 * and close listeners accordingly; clusterIP is immutable; port changes; delete closes the
 * listeners while an open TCP connection drains.
 */
import http from 'node:http';
import t from 'tap';
import type { Service } from '../src/api/types.js';
import { ask } from './dns-helpers.js';
import { waitFor } from './helpers/wait.js';
import { type Cluster, echoPod, ingressIP, probe, readyEndpoints, service, startCluster, whoServes } from './services-helpers.js';

// addresses private to this file: tap runs test files in parallel
const NODE = '127.0.63.1';

let c: Cluster;

t.before(async () => {
  c = await startCluster(t, [
    '--service-cidr', '127.163.0.0/16',
    '--pod-cidr', '127.173.0.0/16',
    '--node-ip', NODE,
    '--nodeport-addresses', NODE,
    '--lb-pool', '127.183.0.0/24',
  ]);
  await c.api.create(echoPod('web-1', { app: 'web' }, { http: 8080 }));
  await c.api.create(echoPod('web-2', { app: 'web' }, { http: 8080 }));
});

const web = { app: 'web' };
const refused = async (host: string, port: number): Promise<boolean> => (await probe(host, port)) === 'refused';
const answers = async (host: string, port: number): Promise<boolean> => /^web-[12]$/.test(await whoServes(host, port).catch(() => ''));
const setType = (name: string, type: string, extra: (s: Service) => void = () => undefined) =>
  c.api.editService(name, (s) => {
    s.spec!.type = type as 'ClusterIP';
    extra(s);
  });

t.test('ClusterIP → NodePort → LoadBalancer → NodePort → ClusterIP → ExternalName → ClusterIP', async (t) => {
  const created = await c.api.create(service('cycle', { selector: web, ports: [{ name: 'http', port: 8080, targetPort: 'http' }] }));
  const ip = created.spec!.clusterIP!;
  await readyEndpoints(c.api, 'cycle', 2);
  t.ok(await answers(ip, 8080), 'ClusterIP: the clusterIP answers');

  const np = await setType('cycle', 'NodePort');
  const nodePort = np.spec!.ports![0]!.nodePort!;
  t.ok(nodePort >= 30000, `NodePort: a nodePort is allocated (${nodePort})`);
  t.equal(np.spec!.clusterIP, ip, 'the clusterIP is kept');
  t.equal(np.spec!.externalTrafficPolicy, 'Cluster', 'externalTrafficPolicy defaulted');
  await waitFor(() => answers(NODE, nodePort), { what: 'the nodePort answers' });
  t.ok(await answers(ip, 8080), 'the clusterIP still answers');

  const lb = await setType('cycle', 'LoadBalancer');
  t.equal(lb.spec!.ports![0]!.nodePort, nodePort, 'LoadBalancer: the nodePort is kept');
  t.equal(lb.spec!.allocateLoadBalancerNodePorts, true);
  const ingress = await ingressIP(c.api, 'cycle');
  await waitFor(() => answers(ingress, 8080), { what: 'the ingress IP answers' });
  t.ok(await answers(NODE, nodePort), 'the nodePort still answers');

  const back = await setType('cycle', 'NodePort');
  t.same(back.status?.loadBalancer ?? {}, {}, 'NodePort again: the ingress is cleared with the type');
  t.equal(back.spec!.allocateLoadBalancerNodePorts, undefined, 'allocateLoadBalancerNodePorts dropped');
  await waitFor(() => refused(ingress, 8080), { what: 'the ingress IP to refuse' });
  t.ok(await answers(NODE, nodePort), 'the nodePort still answers');

  const cip = await setType('cycle', 'ClusterIP');
  t.equal(cip.spec!.ports![0]!.nodePort, undefined, 'ClusterIP again: the nodePort is dropped');
  t.equal(cip.spec!.externalTrafficPolicy, undefined, 'externalTrafficPolicy dropped');
  await waitFor(() => refused(NODE, nodePort), { what: 'the nodePort to refuse' });
  t.ok(await answers(ip, 8080), 'the clusterIP still answers');
  // the released nodePort can be requested by another Service at once
  const reuse = await c.api.create(service('reuse', { type: 'NodePort', selector: web, ports: [{ port: 8080, nodePort }] }));
  t.equal(reuse.spec!.ports![0]!.nodePort, nodePort, 'the released nodePort is free again');
  await c.api.delete('Service', 'reuse');

  const en = await setType('cycle', 'ExternalName', (s) => {
    s.spec!.externalName = 'db.example.com';
  });
  t.equal(en.spec!.clusterIP, undefined, 'ExternalName: clusterIP cleared');
  t.equal(en.spec!.clusterIPs, undefined, 'clusterIPs cleared');
  t.equal(en.spec!.ipFamilies, undefined, 'ipFamilies cleared');
  await waitFor(() => refused(ip, 8080), { what: 'the old clusterIP to refuse' });
  const cname = await waitFor(async () => (await ask(c.dnsPort, 'cycle.default.svc.cluster.local', 'CNAME')).answer[0], { what: 'CNAME' });
  t.match(cname, /CNAME db\.example\.com$/);

  const again = await setType('cycle', 'ClusterIP', (s) => {
    delete s.spec!.externalName;
  });
  t.match(again.spec!.clusterIP, /^127\.163\./, 'ClusterIP from ExternalName: a clusterIP is allocated');
  await waitFor(() => answers(again.spec!.clusterIP!, 8080), { what: 'the new clusterIP answers' });
});

t.test('LoadBalancer → ExternalName → LoadBalancer releases and re-allocates everything', async (t) => {
  const created = await c.api.create(service('lb-en', { type: 'LoadBalancer', selector: web, ports: [{ port: 8080 }] }));
  const ingress = await ingressIP(c.api, 'lb-en');
  const nodePort = created.spec!.ports![0]!.nodePort!;
  await readyEndpoints(c.api, 'lb-en', 2);
  await waitFor(() => answers(ingress, 8080), { what: 'ingress answers' });
  const en = await setType('lb-en', 'ExternalName', (s) => {
    s.spec!.externalName = 'lb.example.com';
  });
  t.same([en.spec!.clusterIP, en.spec!.ports?.[0]?.nodePort, en.status?.loadBalancer?.ingress], [undefined, undefined, undefined], 'all released');
  await waitFor(async () => (await refused(ingress, 8080)) && (await refused(NODE, nodePort)) && (await refused(created.spec!.clusterIP!, 8080)), {
    what: 'ingress, nodePort and clusterIP to refuse',
  });
  await setType('lb-en', 'LoadBalancer', (s) => {
    delete s.spec!.externalName;
  });
  const ingress2 = await ingressIP(c.api, 'lb-en');
  await waitFor(() => answers(ingress2, 8080), { what: 'a new ingress answers' });
  t.pass(`served again on ${ingress2}`);
});

t.test('clusterIP is immutable once set', async (t) => {
  const svc = await c.api.create(service('fixed', { selector: web, ports: [{ port: 8080 }] }));
  await t.rejects(
    c.api.editService('fixed', (s) => {
      s.spec!.clusterIP = '127.163.250.250';
    }),
    { code: 422, message: /spec\.clusterIPs\[0\]: Invalid value: \["127\.163\.250\.250"\]: may not change once set/ },
  );
  t.equal((await c.api.get<Service>('Service', 'fixed')).spec!.clusterIP, svc.spec!.clusterIP, 'unchanged');
});

t.test('changing, adding and removing ports opens and closes exactly those listeners', async (t) => {
  const svc = await c.api.create(service('ports', { selector: web, ports: [{ name: 'a', port: 8080, targetPort: 8080 }] }));
  const ip = svc.spec!.clusterIP!;
  await readyEndpoints(c.api, 'ports', 2);
  await waitFor(() => answers(ip, 8080), { what: ':8080' });
  await c.api.editService('ports', (s) => {
    s.spec!.ports = [...s.spec!.ports!, { name: 'b', port: 8081, targetPort: 8080 }];
  });
  await waitFor(() => answers(ip, 8081), { what: 'the added port' });
  t.ok(await answers(ip, 8080), 'the first port still answers');
  await c.api.editService('ports', (s) => {
    s.spec!.ports = [{ name: 'b', port: 8081, targetPort: 8080 }];
  });
  await waitFor(() => refused(ip, 8080), { what: 'the removed port to refuse' });
  t.ok(await answers(ip, 8081), 'the remaining port answers');
  await c.api.editService('ports', (s) => {
    s.spec!.ports = [{ name: 'b', port: 8082, targetPort: 8080 }];
  });
  await waitFor(() => answers(ip, 8082), { what: 'the moved port' });
  t.ok(await refused(ip, 8081), 'the old port number refuses');
});

t.test('deleting a Service closes its listeners; an open TCP connection drains', async (t) => {
  const svc = await c.api.create(service('gone', { type: 'NodePort', selector: web, ports: [{ port: 8080 }] }));
  const ip = svc.spec!.clusterIP!;
  const nodePort = svc.spec!.ports![0]!.nodePort!;
  await readyEndpoints(c.api, 'gone', 2);
  await waitFor(() => answers(ip, 8080), { what: 'answers' });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const getOn = (): Promise<{ body: string; reused: boolean; port: number }> =>
    new Promise((resolve, reject) => {
      const req = http.get(`http://${ip}:8080/`, { agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ body, reused: req.reusedSocket, port: res.socket?.localPort ?? 0 }));
      });
      req.on('error', reject);
      req.setTimeout(3000, () => req.destroy(new Error('timeout')));
    });
  const first = await getOn();
  t.match(first.body, /pod=web-/);
  await c.api.delete('Service', 'gone');
  await waitFor(async () => (await refused(ip, 8080)) && (await refused(NODE, nodePort)), { what: 'new connections refused' });
  const second = await getOn();
  t.ok(second.reused, 'the second request went over the connection opened before the delete');
  t.equal(second.port, first.port, 'the same connection');
  t.match(second.body, /pod=web-/, 'and was answered: it drains');
});
