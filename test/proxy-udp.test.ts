import dgram from 'node:dgram';
import t from 'tap';
import { createService, harness, setEndpoints, waitFor, type Tap } from './proxy-helpers.js';

// addresses private to this file: tap runs test files in parallel
const CIDR = '127.96.20.0/24';
const NODE = '127.0.20.254';
const B = (i: number): string => `127.0.20.${i}`;

interface UdpBackend {
  name: string;
  host: string;
  port: number;
  /** distinct client ports seen (one per proxy flow) */
  peers: Set<number>;
}

/** Replies `name:<payload>` to every datagram (payloads over 1 KiB: `name:<length>`). */
async function udpBackend(t: Tap, host: string, name: string): Promise<UdpBackend> {
  const s = dgram.createSocket('udp4');
  const b: UdpBackend = { name, host, port: 0, peers: new Set() };
  s.on('message', (msg, r) => {
    b.peers.add(r.port);
    const reply = msg.length > 1024 ? Buffer.concat([Buffer.from(`${name}:`), msg]) : Buffer.from(`${name}:${msg}`);
    s.send(reply, r.port, r.address);
  });
  await new Promise<void>((r) => s.bind({ address: host, port: 0 }, () => r()));
  b.port = s.address().port;
  t.teardown(() => new Promise<void>((r) => s.close(() => r())));
  return b;
}

interface UdpClient {
  ask(payload: string | Buffer): Promise<Buffer>;
  /** where the last reply came from */
  lastFrom: string;
  close(): void;
}

async function udpClient(t: Tap, localAddress: string, host: string, port: number): Promise<UdpClient> {
  const s = dgram.createSocket('udp4');
  const replies: Buffer[] = [];
  let wake: (() => void) | undefined;
  const c = { lastFrom: '' } as UdpClient;
  s.on('message', (m, r) => {
    c.lastFrom = `${r.address}:${r.port}`;
    replies.push(m);
    wake?.();
  });
  await new Promise<void>((r) => s.bind({ address: localAddress, port: 0 }, () => r()));
  let closed = false;
  const close = (): void => {
    if (!closed) s.close();
    closed = true;
  };
  t.teardown(close);
  c.close = close;
  c.ask = (payload) => {
    s.send(payload, port, host);
    return waitFor(() => replies.shift(), `a reply from ${host}:${port}`, 2000);
  };
  return c;
}

const udp = (name: string, port: number) => ({ name, port, protocol: 'UDP' as const, targetPort: port });
const name = (reply: Buffer): string => reply.toString().split(':')[0]!;

t.test('per-client flows, round robin between flows, idle expiry', async (t) => {
  const h = await harness(t, { serviceCidr: CIDR, nodeAddress: NODE, udpIdleTimeoutMs: 500 });
  const bs = await Promise.all([1, 2, 3].map((i) => udpBackend(t, B(i), `u${i}`)));
  const svc = await createService(h.store, 'dns', { type: 'NodePort', ports: [udp('dns', 5353)] });
  await setEndpoints(
    h.store,
    'dns',
    bs.map((b) => ({ addresses: [{ ip: b.host }], ports: [{ name: 'dns', port: b.port, protocol: 'UDP' as const }] })),
  );
  await h.proxy.synced();
  const ip = svc.spec!.clusterIP!;
  t.same(
    h.proxy
      .listeners()
      .map((l) => `${l.kind} ${l.protocol} ${l.address}`)
      .sort(),
    [`clusterIP UDP ${ip}`, `nodePort UDP ${NODE}`],
  );

  const a = await udpClient(t, '127.0.20.101', ip, 5353);
  const b = await udpClient(t, '127.0.20.102', ip, 5353);
  const a1 = await a.ask('one');
  t.match(a1.toString(), /^u\d:one$/, 'the backend got the payload');
  t.equal(a.lastFrom, `${ip}:5353`, 'the reply leaves from the service address');
  t.equal(name(await a.ask('two')), name(a1), 'one client keeps its flow (and backend)');
  t.equal(name(await a.ask('three')), name(a1));
  const b1 = await b.ask('hi');
  t.not(name(b1), name(a1), 'a second client gets the next endpoint');
  const listener = () => h.proxy.listeners().find((l) => l.kind === 'clusterIP')!;
  t.equal(listener().active, 2, 'two flows');
  t.equal(listener().counters.accepted, 2);

  await waitFor(() => listener().active === 0, 'idle flows to expire');
  const a2 = await a.ask('again');
  t.not(name(a2), name(a1), 'after expiry the same client starts a new flow on the next endpoint');
  t.not(name(a2), name(b1));
  const first = bs.find((x) => x.name === name(a1))!;
  t.equal(first.peers.size, 1, 'the first flow used one backend socket for all its datagrams');

  const viaNode = await udpClient(t, '127.0.20.103', NODE, svc.spec!.ports![0]!.nodePort!);
  t.match((await viaNode.ask('node')).toString(), /^u\d:node$/, 'served on the nodePort too');
});

t.test('datagrams up to 64 KiB pass whole', async (t) => {
  const h = await harness(t, { serviceCidr: CIDR, nodeAddress: NODE });
  const b = await udpBackend(t, B(4), 'big');
  const svc = await createService(h.store, 'big', { ports: [udp('', 5353)] });
  await setEndpoints(h.store, 'big', [{ addresses: [{ ip: b.host }], ports: [{ port: b.port, protocol: 'UDP' }] }]);
  await h.proxy.synced();
  const c = await udpClient(t, '127.0.20.104', svc.spec!.clusterIP!, 5353);
  const payload = Buffer.alloc(60000, 7);
  const reply = await c.ask(payload);
  t.equal(reply.length, 'big:'.length + 60000, 'request and reply arrive untruncated');
  t.ok(reply.subarray(4).equals(payload));
});

t.test('ClientIP affinity holds across flows; removing the service closes its socket and flows', async (t) => {
  const h = await harness(t, { serviceCidr: CIDR, nodeAddress: NODE, udpIdleTimeoutMs: 60_000 });
  const bs = await Promise.all([5, 6].map((i) => udpBackend(t, B(i), `s${i}`)));
  const svc = await createService(h.store, 'sticky', {
    ports: [udp('dns', 5353)],
    sessionAffinity: 'ClientIP',
  });
  await setEndpoints(
    h.store,
    'sticky',
    bs.map((b) => ({ addresses: [{ ip: b.host }], ports: [{ name: 'dns', port: b.port, protocol: 'UDP' as const }] })),
  );
  await h.proxy.synced();
  const ip = svc.spec!.clusterIP!;
  // two sockets of the same client address are two flows but one affinity entry
  const c1 = await udpClient(t, '127.0.20.105', ip, 5353);
  const c2 = await udpClient(t, '127.0.20.105', ip, 5353);
  const first = name(await c1.ask('x'));
  t.equal(name(await c2.ask('y')), first, 'a second flow from the same client IP goes to the same backend');
  t.equal(h.proxy.listeners()[0]!.active, 2);

  await h.store.delete('Service', 'default', 'sticky');
  await h.proxy.synced();
  t.same(h.proxy.listeners(), [], 'no listener left');
  const again = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    again.once('error', reject);
    again.bind({ address: ip, port: 5353, exclusive: true }, () => resolve());
  });
  t.pass('the service address:port is free again');
  await new Promise<void>((r) => again.close(() => r()));
});
