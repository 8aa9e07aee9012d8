/**
 * Every Service type end to end, as a user runs them: the real daemon (`kubeloop up`), objects
 * created through its Kubernetes API, pods as processes, and real sockets on loopback.
 * One daemon for the whole file; each subtest uses its own Services and pods.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import type { Endpoints, Service } from '../src/api/types.js';
import { connect } from './proxy-helpers.js';
import { ask } from './dns-helpers.js';
import { waitFor } from './helpers/wait.js';
import {
  ApiFailure,
  type Cluster,
  echoPod,
  ingressIP,
  nodePod,
  probe,
  readyEndpoints,
  service,
  startCluster,
  UDP_ECHO,
  udpAsk,
  whoServes,
} from './services-helpers.js';

// addresses private to this file: tap runs test files in parallel
const NODE1 = '127.0.62.1';
const NODE2 = '127.0.62.2';
const POOL = '127.182.0.0/24';

let c: Cluster;

t.before(async () => {
  c = await startCluster(t, [
    '--service-cidr', '127.162.0.0/16',
    '--pod-cidr', '127.172.0.0/16',
    '--node-ip', NODE1,
    '--nodeport-addresses', `${NODE1},${NODE2}`,
    '--lb-pool', POOL,
    '--allow-loopback-endpoints',
  ]);
  await c.api.create(echoPod('web-1', { app: 'web' }, { http: 8080 }));
  await c.api.create(echoPod('web-2', { app: 'web' }, { http: 8080 }));
});

const web = { app: 'web' };
const http8080 = [{ name: 'http', port: 8080, targetPort: 'http' }];

t.test('ClusterIP: round robin over the ready pods', async (t) => {
  const svc = await c.api.create(service('web', { selector: web, ports: http8080 }));
  t.match(svc.spec!.clusterIP, /^127\.162\./);
  await readyEndpoints(c.api, 'web', 2);
  const seq: string[] = [];
  for (let i = 0; i < 4; i++) seq.push(await whoServes(svc.spec!.clusterIP!, 8080));
  t.same(new Set(seq), new Set(['web-1', 'web-2']), `both pods answer: ${seq.join(' ')}`);
  t.equal(seq[2], seq[0], 'in rotation');
});

t.test('NodePort: every --nodeport-addresses address, and the ClusterIP too', async (t) => {
  const svc = await c.api.create(service('web-np', { type: 'NodePort', selector: web, ports: [{ name: 'http', port: 8080, targetPort: 'http', nodePort: 30062 }] }));
  t.equal(svc.spec!.ports![0]!.nodePort, 30062, 'the requested nodePort');
  const auto = await c.api.create(service('web-np-auto', { type: 'NodePort', selector: web, ports: http8080 }));
  const autoPort = auto.spec!.ports![0]!.nodePort!;
  t.ok(autoPort >= 30000 && autoPort <= 32767, `an allocated nodePort (${autoPort})`);
  await readyEndpoints(c.api, 'web-np', 2);
  await readyEndpoints(c.api, 'web-np-auto', 2);
  for (const addr of [NODE1, NODE2]) {
    t.match(await whoServes(addr, 30062), /^web-[12]$/, `${addr}:30062 answers`);
    t.match(await whoServes(addr, autoPort), /^web-[12]$/, `${addr}:${autoPort} answers`);
  }
  t.match(await whoServes(svc.spec!.clusterIP!, 8080), /^web-[12]$/, 'the ClusterIP answers');
  t.equal((await connect('127.0.62.3', 30062).done).error, 'ECONNREFUSED', 'not on another address');
  await t.rejects(c.api.create(service('web-np-twin', { type: 'NodePort', selector: web, ports: [{ port: 8080, nodePort: 30062 }] })), {
    code: 422,
    message: /spec\.ports\[0\]\.nodePort: Invalid value: 30062: provided port is already allocated/,
  });
  await t.rejects(c.api.create(service('web-np-range', { type: 'NodePort', selector: web, ports: [{ port: 8080, nodePort: 8080 }] })), {
    code: 422,
    message: /provided port is not in the valid range\. The range of valid ports is 30000-32767/,
  });
});

t.test('LoadBalancer: an ingress IP of its own from the pool; two on one port do not collide', async (t) => {
  const a = await c.api.create(service('lb-a', { type: 'LoadBalancer', selector: web, ports: http8080 }));
  await c.api.create(service('lb-b', { type: 'LoadBalancer', selector: web, ports: http8080 }));
  const ipA = await ingressIP(c.api, 'lb-a');
  const ipB = await ingressIP(c.api, 'lb-b');
  t.not(ipA, ipB);
  t.match(ipA, /^127\.182\.0\./, 'from --lb-pool');
  const status = (await c.api.get<Service>('Service', 'lb-a')).status;
  t.same(status?.loadBalancer?.ingress, [{ ip: ipA, ipMode: 'VIP' }], 'status.loadBalancer.ingress');
  await readyEndpoints(c.api, 'lb-a', 2);
  await readyEndpoints(c.api, 'lb-b', 2);
  const answer = (ip: string, port: number) => waitFor(() => whoServes(ip, port), { what: `${ip}:${port}` });
  t.match(await answer(ipA, 8080), /^web-[12]$/, `curl http://${ipA}:8080/`);
  t.match(await answer(ipB, 8080), /^web-[12]$/, `curl http://${ipB}:8080/`);
  t.match(await whoServes(NODE2, a.spec!.ports![0]!.nodePort!), /^web-[12]$/, 'its nodePort (allocateLoadBalancerNodePorts)');
  t.match(await whoServes(a.spec!.clusterIP!, 8080), /^web-[12]$/, 'its ClusterIP');
  const ev = await c.api.event('lb-a', 'EnsuredLoadBalancer');
  t.equal(ev.message, `Ensured load balancer: ${ipA} (pool ${POOL})`);
});

t.test('selector-less Service + hand-written Endpoints on a local process (--allow-loopback-endpoints)', async (t) => {
  const server = http.createServer((_req, res) => res.end('pod=legacy-backend (a process outside kubeloop)\n'));
  await new Promise<void>((r) => server.listen(0, '127.0.62.50', () => r()));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  const svc = await c.api.create(service('legacy', { ports: [{ name: 'http', protocol: 'TCP', port: 8090, targetPort: 9376 }] }));
  await c.api.create<Endpoints>({
    apiVersion: 'v1',
    kind: 'Endpoints',
    metadata: { name: 'legacy', namespace: 'default' },
    subsets: [{ addresses: [{ ip: '127.0.62.50' }], ports: [{ name: 'http', port }] }],
  });
  t.equal(await waitFor(() => whoServes(svc.spec!.clusterIP!, 8090), { what: 'legacy answers' }), 'legacy-backend');
  await new Promise((r) => setTimeout(r, 100));
  const ep = await c.api.get<Endpoints>('Endpoints', 'legacy');
  t.same(ep.subsets?.[0]?.addresses?.map((a) => a.ip), ['127.0.62.50'], 'the endpoints controller left them alone');
});

t.test('UDP: per-client flows, round robin across pods per new flow', async (t) => {
  for (const n of ['udp-1', 'udp-2']) await c.api.create(nodePod(n, { app: 'udp' }, UDP_ECHO(5353), [{ name: 'dns', containerPort: 5353, protocol: 'UDP' }]));
  const svc = await c.api.create(service('udp', { selector: { app: 'udp' }, ports: [{ name: 'dns', protocol: 'UDP', port: 5353, targetPort: 'dns' }] }));
  await readyEndpoints(c.api, 'udp', 2);
  const ip = svc.spec!.clusterIP!;
  const seen = new Set<string>();
  await waitFor(
    async () => {
      const r = await udpAsk(ip, 5353, 'ping');
      if (r) seen.add(r);
      return seen.size === 2;
    },
    { what: 'both UDP pods answer', timeoutMs: 10_000 },
  );
  t.same([...seen].sort(), ['udp-1:ping', 'udp-2:ping'], 'each pod echoed with its name');
});

t.test('a named targetPort maps to different containerPorts on different pods', async (t) => {
  await c.api.create(echoPod('named-a', { app: 'named' }, { web: 8081 }));
  await c.api.create(echoPod('named-b', { app: 'named' }, { web: 8082 }));
  const svc = await c.api.create(service('named', { selector: { app: 'named' }, ports: [{ name: 'web', port: 8095, targetPort: 'web' }] }));
  await readyEndpoints(c.api, 'named', 2);
  const ep = await c.api.get<Endpoints>('Endpoints', 'named');
  const pairs = (ep.subsets ?? []).flatMap((s) => (s.addresses ?? []).map((a) => `${a.targetRef?.name}:${s.ports?.[0]?.port}`)).sort();
  t.same(pairs, ['named-a:8081', 'named-b:8082'], 'the Endpoints resolve the name per pod');
  const seen = new Set<string>();
  for (let i = 0; i < 4; i++) seen.add(await whoServes(svc.spec!.clusterIP!, 8095));
  t.same([...seen].sort(), ['named-a', 'named-b'], 'both answer through one service port');
});

t.test('sessionAffinity ClientIP: one client IP keeps its pod; distinct loopback sources spread', async (t) => {
  const svc = await c.api.create(service('sticky', { selector: web, ports: http8080, sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 30 } } }));
  await readyEndpoints(c.api, 'sticky', 2);
  const ip = svc.spec!.clusterIP!;
  // Endpoints can be ready before the proxy has synced this Service's listener
  const first = await waitFor(() => whoServes(ip, 8080, '127.0.62.101').catch(() => undefined), { what: 'the sticky listener' });
  for (let i = 0; i < 8; i++) t.equal(await whoServes(ip, 8080, '127.0.62.101'), first, 'same source, same pod');
  const others = new Set<string>();
  for (let i = 102; i < 110; i++) others.add(await whoServes(ip, 8080, `127.0.62.${i}`));
  t.equal(others.size, 2, 'new sources are spread over both pods');
  t.equal((await c.api.get<Service>('Service', 'sticky')).spec?.sessionAffinityConfig?.clientIP?.timeoutSeconds, 30);
});

t.test('readiness: a not-ready pod gets no traffic unless the Service publishes not-ready addresses', async (t) => {
  const pod = echoPod('unready', { app: 'unready' }, { http: 8080 });
  // the probe checks a port the echo server does not listen on: never ready
  (pod as { spec: { containers: Array<Record<string, unknown>> } }).spec.containers[0]!.readinessProbe = { tcpSocket: { port: 9999 }, periodSeconds: 1 };
  await c.api.create(pod);
  const svc = await c.api.create(service('unready', { selector: { app: 'unready' }, ports: [{ port: 8080 }] }));
  const ip = svc.spec!.clusterIP!;
  await waitFor(async () => (await c.api.tryGet<Endpoints>('Endpoints', 'unready'))?.subsets?.[0]?.notReadyAddresses?.length === 1, {
    what: 'a not-ready address',
    timeoutMs: 10_000,
  });
  await waitFor(async () => (await probe(ip, 8080)) === 'reset', { what: 'the listener, with no endpoint to dial' });
  t.equal(await probe(ip, 8080), 'reset', 'not ready: the connection is reset');
  await c.api.editService('unready', (s) => {
    s.spec!.publishNotReadyAddresses = true;
  });
  t.equal(await waitFor(() => whoServes(ip, 8080).catch(() => ''), { what: 'the unready pod answers' }), 'unready', 'published: served');
  await c.api.editService('unready', (s) => {
    s.spec!.publishNotReadyAddresses = false;
  });
  await waitFor(async () => (await probe(ip, 8080)) === 'reset', { what: 'reset again' });
  t.pass('unpublished: reset again');
});

t.test('headless: no ClusterIP, no listener; DNS answers with the pod IPs', async (t) => {
  const svc = await c.api.create(service('web-headless', { clusterIP: 'None', selector: web, ports: http8080 }));
  t.equal(svc.spec!.clusterIP, 'None');
  await readyEndpoints(c.api, 'web-headless', 2);
  const r = await waitFor(async () => {
    const a = await ask(c.dnsPort, 'web-headless.default.svc.cluster.local', 'A');
    return a.answer.length === 2 ? a : undefined;
  }, { what: 'two A records' });
  t.ok(r.answer.every((l) => /A 127\.172\./.test(l)), `pod IPs: ${r.answer.join('; ')}`);
});

t.test('ExternalName: no ClusterIP, no listener; DNS answers with a CNAME', async (t) => {
  const svc = await c.api.create(service('my-database', { type: 'ExternalName', externalName: 'my.database.example.com' }));
  t.equal(svc.spec!.clusterIP, undefined, 'no clusterIP');
  const r = await waitFor(async () => {
    const a = await ask(c.dnsPort, 'my-database.default.svc.cluster.local', 'CNAME');
    return a.answer.length ? a : undefined;
  }, { what: 'a CNAME' });
  t.match(r.answer[0], /CNAME my\.database\.example\.com$/);
  await t.rejects(c.api.create(service('bad-name', { type: 'ExternalName', externalName: 'not_a_name' })), {
    code: 422,
    message: /spec\.externalName: Invalid value: "not_a_name": a lowercase RFC 1123 subdomain/,
  });
});

t.test('externalIPs: loopback ones get listeners (with the flag); others are stored and reported, never dialled', async (t) => {
  const svc = await c.api.create(service('ext', { selector: web, ports: http8080, externalIPs: ['127.0.62.60', '203.0.113.250'] }));
  await readyEndpoints(c.api, 'ext', 2);
  t.match(await waitFor(() => whoServes('127.0.62.60', 8080), { what: 'externalIP answers' }), /^web-[12]$/, 'curl http://127.0.62.60:8080/');
  t.same(svc.spec!.externalIPs, ['127.0.62.60', '203.0.113.250'], 'both stored');
  const ev = await c.api.event('ext', 'ExternalIPNotLocal');
  t.equal(ev.type, 'Warning');
  t.match(ev.message, /externalIPs 203\.0\.113\.250 are not addresses of this machine/);
  t.notMatch(ev.message, /127\.0\.62\.60/, 'the local one is not reported');
});

t.test('SCTP: accepted by the API, not proxied, reported as an event; the TCP port of the same Service works', async (t) => {
  const svc = await c.api.create(service('mixed', {
    selector: web,
    ports: [
      { name: 'http', port: 8080, targetPort: 'http' },
      { name: 'sig', port: 9899, protocol: 'SCTP' },
    ],
  }));
  await readyEndpoints(c.api, 'mixed', 2);
  t.match(await waitFor(() => whoServes(svc.spec!.clusterIP!, 8080).catch(() => undefined), { what: 'the TCP listener' }), /^web-[12]$/);
  const ev = await c.api.event('mixed', 'UnsupportedProtocol');
  t.equal(ev.type, 'Warning');
  t.match(ev.message, /port sig\/SCTP is not proxied: kubeloop's service proxy serves TCP and UDP only/);
});

t.test('validation errors come back with field paths, all at once', async (t) => {
  const err = await c.api
    .create(service('bad', { type: 'ClusterIP', ports: [{ name: 'a', port: 80, nodePort: 30070 }, { name: 'a', port: 80 }], sessionAffinity: 'Sticky' as 'None' }))
    .catch((e: unknown) => e);
  t.ok(err instanceof ApiFailure);
  const causes = (err as ApiFailure).status.details?.causes?.map((x) => `${x.field} ${x.reason}`);
  t.same(causes, [
    'spec.ports[1].name FieldValueDuplicate',
    'spec.sessionAffinity FieldValueNotSupported',
    'spec.ports[0].nodePort FieldValueForbidden',
    'spec.ports[1] FieldValueDuplicate',
  ]);
});
