/**
 * What goes wrong, end to end through the real daemon with default flags (plus
 * --disable-load-balancer): the answer is always a clear error or event, and the daemon keeps
 * serving everything else.
 */
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import type { Endpoints, KObject, Service } from '../src/api/types.js';
import { connect } from './proxy-helpers.js';
import { ROOT } from './helpers/daemon.js';
import { waitFor } from './helpers/wait.js';
import { type Cluster, echoPod, probe, readyEndpoints, service, startCluster, whoServes } from './services-helpers.js';

// addresses private to this file: tap runs test files in parallel
const NODE = '127.0.64.1';

let c: Cluster;

t.before(async () => {
  c = await startCluster(t, [
    '--service-cidr', '127.164.0.0/16',
    '--pod-cidr', '127.174.0.0/16',
    '--node-ip', NODE,
    '--nodeport-addresses', NODE,
    '--disable-load-balancer',
  ]);
  await c.api.create(echoPod('web-1', { app: 'web' }, { http: 8080 }));
});

const web = { app: 'web' };

async function example(file: string): Promise<KObject[]> {
  const text = await readFile(join(ROOT, 'config', 'examples', file), 'utf8');
  return parseAllDocuments(text).map((d) => d.toJS() as KObject);
}

t.test('a Service whose endpoints all refuse: the client is closed promptly, the daemon keeps serving', async (t) => {
  // the pod listens on 8080 only: every dial to 9999 is refused
  const dead = await c.api.create(service('dead', { selector: web, ports: [{ port: 8080, targetPort: 9999 }] }));
  const ok = await c.api.create(service('alive', { selector: web, ports: [{ port: 8080 }] }));
  await readyEndpoints(c.api, 'dead', 1);
  await readyEndpoints(c.api, 'alive', 1);
  await waitFor(async () => (await probe(dead.spec!.clusterIP!, 8080)) !== 'refused', { what: 'the listener' });
  for (let i = 0; i < 3; i++) {
    const started = Date.now();
    const r = await connect(dead.spec!.clusterIP!, 8080).done;
    t.equal(r.error, 'ECONNRESET', 'reset after the dial attempts');
    t.equal(r.data, '', 'nothing received');
    t.comment(`closed after ${Date.now() - started} ms`);
  }
  t.equal(await whoServes(ok.spec!.clusterIP!, 8080), 'web-1', 'another Service is unaffected');
  t.equal(c.daemon.proc.exitCode, null, 'the daemon is running');
});

t.test('a taken port: FailedToBind Warning event naming the address and the fix; other listeners open', async (t) => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(30640, NODE, () => r()));
  t.teardown(() => new Promise<void>((r) => blocker.close(() => r())));
  const svc = await c.api.create(service('clash', { type: 'NodePort', selector: web, ports: [{ port: 8080, nodePort: 30640 }] }));
  const ev = await c.api.event('clash', 'FailedToBind');
  t.equal(ev.type, 'Warning');
  t.match(ev.message, /127\.0\.64\.1:30640/, 'names the address');
  t.match(ev.message, /port in use: stop the other process or choose another port/, 'and the fix');
  await readyEndpoints(c.api, 'clash', 1);
  t.equal(await waitFor(() => whoServes(svc.spec!.clusterIP!, 8080), { what: 'clusterIP' }), 'web-1', 'the ClusterIP listener opened anyway');
});

t.test('provider off (--disable-load-balancer): a LoadBalancer Service works as a NodePort, status stays empty', async (t) => {
  const svc = await c.api.create(service('lb-off', { type: 'LoadBalancer', selector: web, ports: [{ port: 8080 }] }));
  const nodePort = svc.spec!.ports![0]!.nodePort!;
  t.ok(nodePort >= 30000, 'a nodePort');
  await readyEndpoints(c.api, 'lb-off', 1);
  t.equal(await waitFor(() => whoServes(NODE, nodePort), { what: 'nodePort' }), 'web-1', 'served on the nodePort');
  await new Promise((r) => setTimeout(r, 300));
  t.same((await c.api.get<Service>('Service', 'lb-off')).status?.loadBalancer ?? {}, {}, 'no ingress: pending, as without a cloud');
  t.same((await c.api.events('lb-off')).filter((e) => e.reason === 'EnsuredLoadBalancer'), []);
});

t.test('loopback Endpoints (other than pod and node addresses) and externalIPs are refused by default, naming the flag', async (t) => {
  await c.api.create(service('local-app', { ports: [{ name: 'http', port: 80, targetPort: 8000 }] }));
  const endpoints = (ips: string[]): Endpoints => ({
    apiVersion: 'v1',
    kind: 'Endpoints',
    metadata: { name: 'local-app', namespace: 'default' },
    subsets: [{ addresses: ips.map((ip) => ({ ip })), ports: [{ name: 'http', port: 8000 }] }],
  });
  await t.rejects(c.api.create(endpoints(['127.0.64.77'])), {
    code: 422,
    message:
      'Endpoints "local-app" is invalid: subsets[0].addresses[0].ip: Invalid value: "127.0.64.77": may not be in the loopback range (127.0.0.0/8, ::1/128) (kubeloop: start the daemon with --allow-loopback-endpoints to allow this)',
  });
  await t.rejects(c.api.create(endpoints(['169.254.1.1', '224.0.0.5'])), { code: 422, message: /link-local range.*link-local multicast range/ });
  const ok = await c.api.create(endpoints([NODE]));
  t.equal(ok.subsets?.[0]?.addresses?.[0]?.ip, NODE, "the node's own address is accepted (host-network style)");
  await t.rejects(c.api.create(service('ext-lo', { selector: web, ports: [{ port: 8080 }], externalIPs: ['127.0.64.60'] })), {
    code: 422,
    message: /spec\.externalIPs\[0\]: Invalid value: "127\.0\.64\.60": may not be in the loopback range .*--allow-loopback-endpoints/,
  });
});

t.test("the documentation's selector-less example applies; its 192.0.2.42 endpoint is never dialled", async (t) => {
  const [svc, ep] = await example('service-without-selector.yaml');
  const created = (await c.api.create(svc!)) as Service;
  await c.api.create(ep!);
  const ev = await c.api.event('my-service', 'EndpointsNotLocal');
  t.match(ev.message, /endpoint addresses 192\.0\.2\.42 are not on this machine/);
  // with no endpoint the proxy has nothing to dial: the connection is reset at once
  const r = await waitFor(async () => {
    const x = await connect(created.spec!.clusterIP!, 80).done;
    return x.error === 'ECONNRESET' ? x : undefined;
  }, { what: 'a reset' });
  t.equal(r.data, '');
  await c.api.delete('Service', 'my-service');
});

t.test("the documentation's LoadBalancer example fails on its pinned clusterIP, saying how to choose", async (t) => {
  const [svc] = await example('service-loadbalancer.yaml');
  const err = await c.api.create(svc!).catch((e: Error) => e);
  t.match(err, {
    code: 422,
    message:
      'Service "my-service" is invalid: spec.clusterIPs: Invalid value: ["10.0.171.239"]: failed to allocate IP 10.0.171.239: ' +
      'provided IP (10.0.171.239) is not in the valid range. The range of valid IPs is 127.164.0.0/16 (kubeloop: ClusterIPs are ' +
      'loopback addresses, so 10.0.171.239 cannot be served here; omit clusterIP to get one allocated, or pick one inside ' +
      '127.164.0.0/16; --service-cidr chooses another range inside 127.0.0.0/8)',
  });
  delete (svc as Service).spec!.clusterIP;
  const ok = (await c.api.create(svc!)) as Service;
  t.match(ok.spec!.clusterIP, /^127\.164\./, 'without the pinned clusterIP it applies');
  t.same(ok.status?.loadBalancer ?? {}, {}, "the published status (a cloud's) is not taken from the manifest");
  await c.api.delete('Service', 'my-service');
  const inside = (await example('service-loadbalancer.yaml'))[0] as Service;
  inside.spec!.clusterIP = '127.164.171.239';
  t.equal(((await c.api.create(inside)) as Service).spec!.clusterIP, '127.164.171.239', 'a pinned clusterIP inside --service-cidr is honoured');
});
