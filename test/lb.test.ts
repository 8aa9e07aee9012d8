/**
 * The built-in load-balancer provider (src/controllers/load-balancer.ts) with the real store,
 * controllers and proxy in-process: ingress IPs from the pool, status, release, restart,
 * exhaustion, spec.loadBalancerIP, provider off, and loadBalancerSourceRanges enforced by the proxy.
 */
import dgram from 'node:dgram';
import t from 'tap';
import pino from 'pino';
import type { Event, Mutable, Service, ServiceSpec, Stored } from '../src/api/types.js';
import { ControllerManager } from '../src/controllers/index.js';
import { type ClosableStore, createEmbeddedStore } from '../src/store/embedded.js';
import { InformerFactory } from '../src/store/informer.js';
import { Proxy } from '../src/agent/proxy/index.js';
import { connect, createService, setEndpoints, subsetsOf, tcpBackend, waitFor, whoAnswers } from './proxy-helpers.js';
import { SourceRanges, loadBalancerSourceRanges } from '../src/agent/proxy/source-ranges.js';
import { DEFAULTS, OptionsError, resolveOptions } from '../src/cli/options.js';

// addresses private to this file
const SERVICE_CIDR = '127.161.0.0/16';
const NODE = '127.0.61.1';
const POOL = '127.181.0.0/24';
const B = (i: number): string => `127.0.61.${100 + i}`;
const silent = pino({ level: 'silent' });

interface Env {
  store: ClosableStore;
  proxy: Proxy;
  controllers: ControllerManager;
  informers: InformerFactory;
}

interface Tap {
  teardown(fn: () => unknown): void;
}

async function startControllers(t: Tap, store: ClosableStore, lbPool: string | undefined): Promise<{ controllers: ControllerManager; informers: InformerFactory }> {
  const informers = new InformerFactory(store);
  const controllers = new ControllerManager({ store, informers, log: silent, podCidr: '127.171.0.0/16', lbPool });
  let stopped = false;
  t.teardown(async () => {
    if (stopped) return;
    stopped = true;
    await controllers.stop();
    informers.stop();
  });
  await controllers.start();
  return { controllers, informers };
}

async function env(t: Tap, lbPool: string | undefined = POOL, store?: ClosableStore): Promise<Env> {
  const s = store ?? (await createEmbeddedStore({ serviceCidr: SERVICE_CIDR, allowLoopbackEndpoints: true, log: silent }));
  if (!store) t.teardown(() => s.close());
  const { controllers, informers } = await startControllers(t, s, lbPool);
  const proxy = new Proxy({ informers, log: silent, nodeAddresses: [NODE], dialTimeoutsMs: [200] });
  t.teardown(() => proxy.stop());
  await proxy.start();
  return { store: s, proxy, controllers, informers };
}

const ingressOf = (s: Service | undefined): string[] => (s?.status?.loadBalancer?.ingress ?? []).map((i) => `${i.ip}/${i.ipMode}`);

async function ingressIP(store: ClosableStore, name: string): Promise<string> {
  const s = await waitFor(async () => {
    const svc = await store.tryGet<Service>('Service', 'default', name);
    return svc?.status?.loadBalancer?.ingress?.[0]?.ip ? svc : undefined;
  }, `an ingress IP for ${name}`);
  return s.status!.loadBalancer!.ingress![0]!.ip!;
}

async function events(store: ClosableStore, name: string): Promise<Array<Stored<Event>>> {
  return (await store.list<Event>('Event', { namespace: 'default' })).items.filter((e) => e.involvedObject.name === name);
}

const lbSpec = (port = 8080, extra: Partial<ServiceSpec> = {}): ServiceSpec => ({
  type: 'LoadBalancer',
  ports: [{ name: 'http', port, protocol: 'TCP', targetPort: port }],
  ...extra,
});

t.test('each LoadBalancer Service gets its own ingress IP from the pool; two on one port do not collide', async (t) => {
  const e = await env(t);
  const [b1, b2] = await Promise.all([tcpBackend(t, B(1), 'one'), tcpBackend(t, B(2), 'two')]);
  await createService(e.store, 'one', lbSpec(8080));
  await createService(e.store, 'two', lbSpec(8080));
  await setEndpoints(e.store, 'one', subsetsOf([b1], 'http'));
  await setEndpoints(e.store, 'two', subsetsOf([b2], 'http'));
  const ip1 = await ingressIP(e.store, 'one');
  const ip2 = await ingressIP(e.store, 'two');
  t.not(ip1, ip2, 'distinct addresses');
  for (const ip of [ip1, ip2]) t.match(ip, /^127\.181\.0\.\d+$/, `${ip} is from the pool`);
  t.same(ingressOf(await e.store.get<Service>('Service', 'default', 'one')), [`${ip1}/VIP`], 'ipMode VIP');
  await e.proxy.synced();
  await waitFor(() => e.proxy.listeners().filter((l) => l.kind === 'loadBalancer').length === 2, 'two LB listeners');
  t.equal(await whoAnswers(ip1, 8080), 'one', 'ingress IP of one answers with one');
  t.equal(await whoAnswers(ip2, 8080), 'two', 'ingress IP of two answers with two');
  const one = await e.store.get<Service>('Service', 'default', 'one');
  t.equal(await whoAnswers(NODE, one.spec!.ports![0]!.nodePort!), 'one', 'the nodePort is there too');
  t.equal(await whoAnswers(one.spec!.clusterIP!, 8080), 'one', 'and the clusterIP');
  const evs = await waitFor(async () => {
    const l = await events(e.store, 'one');
    return l.length ? l : undefined;
  }, 'an event');
  t.same(evs.map((x) => [x.type, x.reason, x.message]), [['Normal', 'EnsuredLoadBalancer', `Ensured load balancer: ${ip1} (pool ${POOL})`]]);
});

t.test('type changes and delete release the address; the listener follows', async (t) => {
  const e = await env(t);
  const b = await tcpBackend(t, B(3), 'three');
  const svc = await createService(e.store, 'web', lbSpec(8081));
  await setEndpoints(e.store, 'web', subsetsOf([b], 'http'));
  const ip = await ingressIP(e.store, 'web');
  await waitFor(() => e.proxy.listeners().some((l) => l.kind === 'loadBalancer' && l.address === ip), 'LB listener');

  // LoadBalancer → ClusterIP: the store drops the status with the type (upstream), the address is free again
  const cur = await e.store.get<Service>('Service', 'default', 'web');
  const toClusterIP = structuredClone(cur) as Mutable<Service>;
  toClusterIP.spec = { ...toClusterIP.spec, type: 'ClusterIP' };
  const updated = await e.store.update(toClusterIP);
  t.same(updated.status?.loadBalancer ?? {}, {}, 'status.loadBalancer cleared by the update itself');
  t.equal(updated.spec?.ports?.[0]?.nodePort, undefined, 'nodePort dropped');
  t.equal(updated.spec?.allocateLoadBalancerNodePorts, undefined, 'allocateLoadBalancerNodePorts dropped');
  t.equal(updated.spec?.clusterIP, svc.spec!.clusterIP, 'clusterIP kept');
  await e.proxy.synced();
  await waitFor(() => !e.proxy.listeners().some((l) => l.kind === 'loadBalancer' || l.kind === 'nodePort'), 'LB and nodePort listeners closed');
  t.equal((await connect(ip, 8081).done).error, 'ECONNREFUSED', 'the old ingress IP refuses');
  t.equal(await whoAnswers(svc.spec!.clusterIP!, 8081), 'three', 'the clusterIP listener was left alone');

  // back to LoadBalancer: an address again (the pool is /24: the same or another, either is fine)
  const back = structuredClone(await e.store.get<Service>('Service', 'default', 'web')) as Mutable<Service>;
  back.spec = { ...back.spec, type: 'LoadBalancer' };
  await e.store.update(back);
  const ip2 = await ingressIP(e.store, 'web');
  await waitFor(() => e.proxy.listeners().some((l) => l.kind === 'loadBalancer' && l.address === ip2), 'LB listener again');
  t.equal(await whoAnswers(ip2, 8081), 'three');

  await e.store.delete('Service', 'default', 'web');
  await waitFor(() => e.proxy.listeners().length === 0, 'every listener closed');
  t.equal((await connect(ip2, 8081).done).error, 'ECONNREFUSED', 'deleted: refused');
});

t.test('a small pool: exhaustion is a Warning, a released address goes to the waiting Service; restart keeps addresses', async (t) => {
  const store = await createEmbeddedStore({ serviceCidr: SERVICE_CIDR, allowLoopbackEndpoints: true, log: silent });
  t.teardown(() => store.close());
  const pool = '127.181.1.0/30'; // two usable addresses: .1 and .2
  const first = await startControllers(t, store, pool);
  await createService(store, 'a', lbSpec(8082));
  await createService(store, 'b', lbSpec(8082));
  const ipA = await ingressIP(store, 'a');
  const ipB = await ingressIP(store, 'b');
  t.same([ipA, ipB].sort(), ['127.181.1.1', '127.181.1.2']);
  await createService(store, 'c', lbSpec(8082));
  const warn = await waitFor(async () => (await events(store, 'c')).find((x) => x.reason === 'AllocationFailed'), 'AllocationFailed');
  t.equal(warn.type, 'Warning');
  t.match(warn.message, /no free address in the load-balancer pool 127\.181\.1\.0\/30: .*--lb-pool/);
  t.same(ingressOf(await store.get<Service>('Service', 'default', 'c')), [], 'c stays pending');

  await store.delete('Service', 'default', 'a');
  t.equal(await ingressIP(store, 'c'), ipA, "c gets a's address once a is gone");

  // a restart (new controllers on the same store) rebuilds the allocation from the statuses
  await first.controllers.stop();
  first.informers.stop();
  const before = await store.list<Service>('Service', { namespace: 'default' });
  await startControllers(t, store, pool);
  await createService(store, 'd', lbSpec(8082));
  const warnD = await waitFor(async () => (await events(store, 'd')).find((x) => x.reason === 'AllocationFailed'), 'd waits: the pool is full');
  t.ok(warnD, 'the new Service finds the pool full: the restored addresses were not handed out twice');
  const after = await store.list<Service>('Service', { namespace: 'default' });
  const rv = (l: typeof before, n: string) => l.items.find((s) => s.metadata.name === n)?.metadata.resourceVersion;
  t.equal(rv(after, 'b'), rv(before, 'b'), 'b was not rewritten');
  t.equal(rv(after, 'c'), rv(before, 'c'), 'c was not rewritten');
});

t.test('spec.loadBalancerIP: honoured inside the pool, a Warning outside it or when taken', async (t) => {
  const e = await env(t);
  await createService(e.store, 'pinned', lbSpec(8083, { loadBalancerIP: '127.181.0.77' }));
  t.equal(await ingressIP(e.store, 'pinned'), '127.181.0.77');
  await createService(e.store, 'outside', lbSpec(8083, { loadBalancerIP: '127.182.0.1' }));
  const w1 = await waitFor(async () => (await events(e.store, 'outside')).find((x) => x.reason === 'AllocationFailed'), 'warning');
  t.match(w1.message, /spec\.loadBalancerIP 127\.182\.0\.1 is not in the load-balancer pool 127\.181\.0\.0\/24/);
  await createService(e.store, 'twin', lbSpec(8083, { loadBalancerIP: '127.181.0.77' }));
  const w2 = await waitFor(async () => (await events(e.store, 'twin')).find((x) => x.reason === 'AllocationFailed'), 'warning');
  t.match(w2.message, /already the address of service default\/pinned/);
  t.same(ingressOf(await e.store.get<Service>('Service', 'default', 'outside')), []);
  t.same(ingressOf(await e.store.get<Service>('Service', 'default', 'twin')), []);
});

t.test('a Service with a loadBalancerClass belongs to another provider: left alone', async (t) => {
  const e = await env(t);
  await createService(e.store, 'other', lbSpec(8084, { loadBalancerClass: 'example.com/metal' }));
  await createService(e.store, 'mine', lbSpec(8084));
  await ingressIP(e.store, 'mine');
  t.same(ingressOf(await e.store.get<Service>('Service', 'default', 'other')), [], 'no address for the other class');
  // the other provider writes the status: the proxy serves a VIP ingress, not a Proxy-mode one
  const b = await tcpBackend(t, B(8), 'eight');
  await setEndpoints(e.store, 'other', subsetsOf([b], 'http'));
  const writeStatus = async (ipMode: 'VIP' | 'Proxy') => {
    await e.store.mutate<Service>('Service', 'default', 'other', (s) => {
      (s as Mutable<Service>).status = { loadBalancer: { ingress: [{ ip: '127.0.61.250', ipMode }] } };
    }, { subresource: 'status' });
    await e.proxy.synced();
  };
  await writeStatus('VIP');
  t.equal(await whoAnswers('127.0.61.250', 8084), 'eight', "the other provider's VIP is served");
  t.same(ingressOf(await e.store.get<Service>('Service', 'default', 'other')), ['127.0.61.250/VIP'], 'and left as it wrote it');
  await writeStatus('Proxy');
  t.equal((await connect('127.0.61.250', 8084).done).error, 'ECONNREFUSED', 'ipMode Proxy: not bound (traffic goes through the LB)');
});

t.test('provider off: a LoadBalancer Service works as a NodePort and its status stays empty', async (t) => {
  const e = await env(t, '');
  const b = await tcpBackend(t, B(4), 'four');
  const svc = await createService(e.store, 'web', lbSpec(8085));
  await setEndpoints(e.store, 'web', subsetsOf([b], 'http'));
  await e.proxy.synced();
  const nodePort = svc.spec!.ports![0]!.nodePort!;
  t.ok(nodePort >= 30000, 'a nodePort was allocated');
  t.equal(await whoAnswers(NODE, nodePort), 'four', 'served on the nodePort');
  t.equal(await whoAnswers(svc.spec!.clusterIP!, 8085), 'four', 'and the clusterIP');
  await new Promise((r) => setTimeout(r, 200));
  t.same((await e.store.get<Service>('Service', 'default', 'web')).status?.loadBalancer ?? {}, {}, 'status stays empty');
  t.same(e.proxy.listeners().filter((l) => l.kind === 'loadBalancer'), []);
});

t.test('loadBalancerSourceRanges: other sources are reset at once on the ingress IP, TCP and UDP', async (t) => {
  const e = await env(t);
  const b = await tcpBackend(t, B(5), 'five');
  // UDP backend: echoes with a prefix
  const udp = dgram.createSocket('udp4');
  udp.on('message', (m, r) => udp.send(`five:${m}`, r.port, r.address));
  await new Promise<void>((r) => udp.bind(0, B(5), () => r()));
  t.teardown(() => new Promise<void>((r) => udp.close(() => r())));
  const svc = await createService(e.store, 'guarded', {
    type: 'LoadBalancer',
    loadBalancerSourceRanges: ['127.0.61.16/28', ' 10.0.0.0/8 '],
    ports: [
      { name: 'tcp', port: 8086, protocol: 'TCP' },
      { name: 'udp', port: 8086, protocol: 'UDP' },
    ],
  });
  await setEndpoints(e.store, 'guarded', [
    { addresses: [{ ip: b.host }], ports: [{ name: 'tcp', port: b.port, protocol: 'TCP' }, { name: 'udp', port: (udp.address()).port, protocol: 'UDP' }] },
  ]);
  const ip = await ingressIP(e.store, 'guarded');
  await waitFor(() => e.proxy.listeners().filter((l) => l.kind === 'loadBalancer').length === 2, 'LB listeners');

  t.equal(await whoAnswers(ip, 8086, '127.0.61.20'), 'five', 'a source inside the ranges is served');
  const denied = await connect(ip, 8086, '127.0.61.40').done;
  t.equal(denied.error, 'ECONNRESET', 'a source outside the ranges is reset');
  t.equal(denied.data, '', 'and got nothing from the backend');
  t.equal(await whoAnswers(svc.spec!.clusterIP!, 8086, '127.0.61.40'), 'five', 'the clusterIP is not restricted (as upstream)');
  t.equal(await whoAnswers(NODE, svc.spec!.ports![0]!.nodePort!, '127.0.61.40'), 'five', 'nor the nodePort (as upstream)');

  const ask = async (from: string): Promise<string | undefined> => {
    const c = dgram.createSocket('udp4');
    await new Promise<void>((r) => c.bind(0, from, () => r()));
    try {
      return await new Promise<string | undefined>((resolve) => {
        const timer = setTimeout(() => resolve(undefined), 300);
        c.once('message', (m) => {
          clearTimeout(timer);
          resolve(m.toString());
        });
        c.send('hi', 8086, ip);
      });
    } finally {
      c.close();
    }
  };
  t.equal(await ask('127.0.61.21'), 'five:hi', 'UDP from inside the ranges is served');
  t.equal(await ask('127.0.61.41'), undefined, 'UDP from outside is dropped');
  const lbTcp = e.proxy.listeners().find((l) => l.kind === 'loadBalancer' && l.protocol === 'TCP')!;
  t.equal(lbTcp.counters.denied, 1, 'one TCP connection denied');

  // the ranges change on the live listener (no reopen), and clearing them opens it to all
  const cur = structuredClone(await e.store.get<Service>('Service', 'default', 'guarded')) as Mutable<Service>;
  cur.spec = { ...cur.spec, loadBalancerSourceRanges: ['127.0.61.32/27'] };
  await e.store.update(cur);
  await e.proxy.synced();
  t.equal(await whoAnswers(ip, 8086, '127.0.61.40'), 'five', 'the new range is in force');
  t.equal((await connect(ip, 8086, '127.0.61.20').done).error, 'ECONNRESET', 'the old one is not');
  const again = e.proxy.listeners().find((l) => l.kind === 'loadBalancer' && l.protocol === 'TCP')!;
  t.equal(again.counters.accepted, lbTcp.counters.accepted + 1, 'the same listener kept counting');
  const open = structuredClone(await e.store.get<Service>('Service', 'default', 'guarded')) as Mutable<Service>;
  delete open.spec!.loadBalancerSourceRanges;
  await e.store.update(open);
  await e.proxy.synced();
  t.equal(await whoAnswers(ip, 8086, '127.0.61.20'), 'five', 'no ranges: everyone');
});

t.test('the source-ranges annotation applies when the field is empty', async (t) => {
  const e = await env(t);
  const b = await tcpBackend(t, B(6), 'six');
  await e.store.create<Service>({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'annotated', namespace: 'default', annotations: { 'service.beta.kubernetes.io/load-balancer-source-ranges': '127.0.61.48/30' } },
    spec: lbSpec(8087),
  });
  await setEndpoints(e.store, 'annotated', subsetsOf([b], 'http'));
  const ip = await ingressIP(e.store, 'annotated');
  await waitFor(() => e.proxy.listeners().some((l) => l.kind === 'loadBalancer'), 'LB listener');
  t.equal(await whoAnswers(ip, 8087, '127.0.61.49'), 'six');
  t.equal((await connect(ip, 8087, '127.0.61.60').done).error, 'ECONNRESET');
});

t.test('type changes open and close only the listeners that change (the others keep counting)', async (t) => {
  const e = await env(t);
  const b = await tcpBackend(t, B(7), 'seven');
  const svc = await createService(e.store, 'morph', { ports: [{ name: 'http', port: 8088, protocol: 'TCP' }] });
  await setEndpoints(e.store, 'morph', subsetsOf([b], 'http'));
  await e.proxy.synced();
  const ip = svc.spec!.clusterIP!;
  const kinds = () => e.proxy.listeners().map((l) => l.kind).sort();
  const accepted = (kind: string) => e.proxy.listeners().find((l) => l.kind === kind)?.counters.accepted ?? -1;
  const retype = async (type: ServiceSpec['type']) => {
    const cur = structuredClone(await e.store.get<Service>('Service', 'default', 'morph')) as Mutable<Service>;
    cur.spec = { ...cur.spec, type };
    await e.store.update(cur);
    await e.proxy.synced();
  };
  t.equal(await whoAnswers(ip, 8088), 'seven');
  t.same(kinds(), ['clusterIP']);

  await retype('NodePort');
  const nodePort = (await e.store.get<Service>('Service', 'default', 'morph')).spec!.ports![0]!.nodePort!;
  t.same(kinds(), ['clusterIP', 'nodePort'], 'NodePort: a nodePort listener is added');
  t.equal(await whoAnswers(ip, 8088), 'seven');
  t.equal(accepted('clusterIP'), 2, 'the clusterIP listener is the same one');
  t.equal(await whoAnswers(NODE, nodePort), 'seven');

  await retype('LoadBalancer');
  const lbIP = await ingressIP(e.store, 'morph');
  await waitFor(() => kinds().length === 3, 'the LB listener');
  t.same(kinds(), ['clusterIP', 'loadBalancer', 'nodePort'], 'LoadBalancer: an ingress listener is added');
  t.equal(await whoAnswers(lbIP, 8088), 'seven');
  t.equal(await whoAnswers(NODE, nodePort), 'seven');
  t.equal(accepted('nodePort'), 2, 'the nodePort listener is the same one');
  t.equal(await whoAnswers(ip, 8088), 'seven');
  t.equal(accepted('clusterIP'), 3, 'so is the clusterIP one');

  await retype('NodePort');
  t.same(kinds(), ['clusterIP', 'nodePort'], 'NodePort again: only the ingress listener closed');
  t.equal(accepted('nodePort'), 2);
  await retype('ClusterIP');
  t.same(kinds(), ['clusterIP'], 'ClusterIP again: only the nodePort listener closed');
  t.equal(accepted('clusterIP'), 3);
  t.equal((await connect(NODE, nodePort).done).error, 'ECONNREFUSED');
  t.equal((await connect(lbIP, 8088).done).error, 'ECONNREFUSED');
});

t.test('SourceRanges: IPv4, IPv6, IPv4-mapped clients, host bits; field before annotation, LoadBalancer only', async (t) => {
  const r = new SourceRanges(['127.0.61.16/28', 'fd00::/64', '10.1.2.3/8', 'bogus']);
  t.same(r.ranges, ['127.0.61.16/28', 'fd00::/64', '10.1.2.3/8']);
  t.ok(r.allows('127.0.61.17'));
  t.notOk(r.allows('127.0.61.32'));
  t.ok(r.allows('::ffff:127.0.61.20'), 'IPv4-mapped');
  t.ok(r.allows('fd00::5'));
  t.notOk(r.allows('fd01::5'));
  t.ok(r.allows('10.200.0.1'), 'host bits of a range are ignored');
  t.notOk(r.allows(undefined));
  const ann = { 'service.beta.kubernetes.io/load-balancer-source-ranges': ' 127.0.0.0/24 , 127.0.1.0/24' };
  t.same(loadBalancerSourceRanges({ metadata: { annotations: ann }, spec: { type: 'LoadBalancer' } }), ['127.0.0.0/24', '127.0.1.0/24']);
  t.same(loadBalancerSourceRanges({ metadata: { annotations: ann }, spec: { type: 'LoadBalancer', loadBalancerSourceRanges: [' 127.0.2.0/24'] } }), ['127.0.2.0/24'], 'the field wins');
  t.same(loadBalancerSourceRanges({ metadata: { annotations: ann }, spec: { type: 'NodePort' } }), [], 'only for LoadBalancer');
});

t.test('daemon flags --lb-pool and --disable-load-balancer', async (t) => {
  t.equal(DEFAULTS.lbPool, '127.240.0.0/16');
  t.equal(resolveOptions([], '/').lbPool, '127.240.0.0/16');
  const problems = (argv: string[]): string[] => {
    try {
      resolveOptions(argv, '/');
      return [];
    } catch (e) {
      return (e as OptionsError).problems;
    }
  };
  t.match(problems(['--lb-pool', '10.0.0.0/24']), [/--lb-pool 10\.0\.0\.0\/24: must be inside 127\.0\.0\.0\/8 .*e\.g\. 127\.240\.0\.0\/16/]);
  t.match(problems(['--lb-pool', '127.96.0.0/24']), [/--lb-pool 127\.96\.0\.0\/24 and --service-cidr 127\.96\.0\.0\/12 overlap/]);
  t.match(problems(['--lb-pool', '127.0.0.0/24']), [/--lb-pool 127\.0\.0\.0\/24 contains the node address 127\.0\.0\.1/]);
  t.same(problems(['--lb-pool', '127.0.0.0/24', '--disable-load-balancer']), [], 'no pool checks when the provider is off');
  t.same(problems(['--lb-pool', '']), [], 'an empty pool turns the provider off');
  t.equal(resolveOptions(['--disable-load-balancer'], '/').disableLoadBalancer, true);
});

t.test('several machines: the ingress is the Ready nodes\' addresses; NotReady drops out; one machine left → the pool again', async (t) => {
  const e = await env(t);
  type NodeLike = { apiVersion: string; kind: string; metadata: { name: string }; status: { addresses: Array<{ type: string; address: string }>; conditions: Array<{ type: string; status: string }> } };
  // addresses of other machines (198.18.0.0/24 is never bound nor dialed here: only listed in Node objects)
  const node = (name: string, ip: string, ready = 'True'): NodeLike => ({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name },
    status: { addresses: [{ type: 'InternalIP', address: ip }, { type: 'InternalIP', address: '127.0.0.1' }], conditions: [{ type: 'Ready', status: ready }] },
  });
  const setReady = (name: string, status: string) =>
    e.store.mutate<NodeLike & { apiVersion: 'v1' }>('Node', undefined, name, (n) => void (n.status.conditions = [{ type: 'Ready', status }]), { subresource: 'status' });
  for (const [name, ip] of [['m2', '198.18.0.2'], ['m1', '198.18.0.1']] as const) {
    const n = node(name, ip);
    await e.store.create({ ...n, status: undefined } as never);
    // status comes through its subresource, as the node agent writes it
    await e.store.mutate<NodeLike>('Node', undefined, name, (x) => void (x.status = n.status), { subresource: 'status' });
  }
  await createService(e.store, 'multi', lbSpec(8090));
  const ingress = async (want: string[]) => {
    await waitFor(async () => {
      const s = await e.store.tryGet<Service>('Service', 'default', 'multi');
      return ingressOf(s).join() === want.map((ip) => `${ip}/VIP`).join();
    }, `ingress ${want.join(', ') || '(none)'}`);
    t.pass(`ingress: ${want.join(', ') || '(none)'}`);
  };
  await ingress(['198.18.0.1', '198.18.0.2']);
  await e.proxy.synced();
  t.same(e.proxy.listeners().filter((l) => l.kind === 'loadBalancer'), [], 'no listener on other machines\' addresses (not local here)');
  await setReady('m2', 'Unknown');
  await ingress(['198.18.0.1']);
  await setReady('m1', 'False');
  await ingress([]);
  await setReady('m1', 'True');
  await setReady('m2', 'True');
  await ingress(['198.18.0.1', '198.18.0.2']);
  const evs = (await events(e.store, 'multi')).map((x) => x.message);
  t.ok(evs.includes("Ensured load balancer: 198.18.0.1, 198.18.0.2 (the Ready nodes' addresses)"), 'an event names the addresses');
  await e.store.delete('Node', undefined, 'm2');
  const ip = await waitFor(async () => {
    const s = await e.store.tryGet<Service>('Service', 'default', 'multi');
    const got = s?.status?.loadBalancer?.ingress?.[0]?.ip;
    return got?.startsWith('127.181.0.') ? got : undefined;
  }, 'a pool address once one machine is left');
  t.match(ip, /^127\.181\.0\.\d+$/, 'one machine: the pool address again');
  await waitFor(() => e.proxy.listeners().some((l) => l.kind === 'loadBalancer'), 'the pool address served here');
});
