/**
 * The dns2 3.1.1 pitfalls the issue lists, one test each, plus malformed-input fuzzing.
 * A guard that fails shows up as a crashed test process or a missing/wrong reply.
 */
import t from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import pino from 'pino';
import { Dns2Binding, DnsServer } from '../src/dns/server.js';
import { errorReply } from '../src/dns/wire.js';
import type { Query } from '../src/dns/wire.js';
import { createEmbeddedStore } from '../src/store/embedded.js';
import { InformerFactory } from '../src/store/informer.js';
import type { Store } from '../src/store/types.js';
import { ask, decode, encodeQuery, startDns, tcpExchange, udpExchange } from './dns-helpers.js';
import type { Teardown } from './dns-helpers.js';
import { prng } from './helpers/hostile-kit.js';

const silent = pino({ level: 'silent' });

/** A binding on an ephemeral port with the given AnswerFn. */
async function binding(t: Teardown, answer: (q: Query) => Buffer | Promise<Buffer>): Promise<Dns2Binding> {
  const b = new Dns2Binding({ log: silent, address: '127.0.0.1', port: 0, answer });
  t.teardown(() => b.close());
  await b.listen();
  return b;
}

const ok = (q: Query): Buffer => errorReply(q, 0);

t.test('pitfall: a throw in an async handler answers SERVFAIL instead of killing the process', async (t) => {
  const b = await binding(t, async () => {
    await new Promise((r) => setImmediate(r));
    throw new Error('boom after await');
  });
  const udp = decode((await udpExchange(b.port, encodeQuery('x.cluster.local', 1, { id: 11 })))!);
  t.equal(udp.rcode, 'SERVFAIL');
  t.equal(udp.id, 11);
  const [tcp] = await tcpExchange(b.port, [encodeQuery('x.cluster.local', 1, { id: 12 })]);
  t.equal(decode(tcp).rcode, 'SERVFAIL', 'over TCP too');
  const sync = await binding(t, () => {
    throw new Error('boom');
  });
  t.equal(decode((await udpExchange(sync.port, encodeQuery('x', 1)))!).rcode, 'SERVFAIL', 'a synchronous throw as well');
  const junk = await binding(t, () => Promise.resolve('not bytes' as unknown as Buffer));
  t.equal(decode((await udpExchange(junk.port, encodeQuery('x', 1)))!).rcode, 'SERVFAIL', 'a non-Buffer answer');
});

t.test('a throw in the UDP cache path is not fatal: the general path answers', async (t) => {
  const b = new Dns2Binding({
    log: silent,
    address: '127.0.0.1',
    port: 0,
    answer: ok,
    cached: () => {
      throw new Error('a bug in the cache path');
    },
  });
  t.teardown(() => b.close());
  await b.listen();
  const r = await udpExchange(b.port, encodeQuery('a.example', 1, { id: 77 }));
  t.ok(r, 'answered');
  t.equal(decode(r!).id, 77);
  t.equal(decode(r!).rcode, 'NOERROR');
});

t.test('pitfall: TCP send() returns undefined — async answers over TCP still arrive, pipelined', async (t) => {
  const b = await binding(t, async (q) => {
    await new Promise((r) => setTimeout(r, q.id === 1 ? 20 : 0));
    return ok(q);
  });
  const replies = await tcpExchange(b.port, [encodeQuery('a', 1, { id: 1 }), encodeQuery('b', 1, { id: 2 })]);
  t.same(replies.map((r) => decode(r).id).sort(), [1, 2], 'both pipelined queries answered (in any order)');
});

t.test('pitfall: EADDRINUSE is a clear rejected start(), not a crash or a hang', async (t) => {
  const store = await createEmbeddedStore();
  const informers = new InformerFactory(store);
  t.teardown(async () => {
    informers.stop();
    await store.close();
  });
  const mk = (port: number): DnsServer => new DnsServer({ informers, log: silent, address: '127.0.0.1', port, zone: 'cluster.local', ttl: 5 });
  // UDP taken
  const u = dgram.createSocket('udp4');
  await new Promise<void>((r) => u.bind(0, '127.0.0.1', r));
  const uport = u.address().port;
  const d1 = mk(uport);
  await t.rejects(d1.start(), { message: /cannot bind DNS on 127\.0\.0\.1:\d+\/udp: address already in use/ });
  await d1.stop();
  await new Promise<void>((r) => u.close(() => r()));
  // TCP taken (UDP free): the UDP socket opened on the way must be released again
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const tport = (s.address() as net.AddressInfo).port;
  const d2 = mk(tport);
  await t.rejects(d2.start(), { message: /\/tcp: address already in use/ });
  await d2.stop();
  await new Promise<void>((r) => s.close(() => r()));
  const again = dgram.createSocket('udp4');
  await new Promise<void>((r, j) => {
    again.once('error', j);
    again.bind(tport, '127.0.0.1', r);
  });
  t.pass('UDP port released after the failed start');
  again.close();
  // and a good start on it works
  const d3 = mk(tport);
  await d3.start();
  t.equal(d3.port, tport);
  await d3.stop();
});

t.test('pitfall: TCP binds only the given address, on the same port as UDP', async (t) => {
  const f = await startDns(t);
  t.equal((await ask(f.port, 'dns-version.cluster.local', 'TXT')).rcode, 'NOERROR', 'UDP on the port');
  t.equal((await ask(f.port, 'dns-version.cluster.local', 'TXT', { tcp: true })).rcode, 'NOERROR', 'TCP on the same port');
  const err = await new Promise<string>((resolve) => {
    const c = net.connect({ host: '127.0.0.2', port: f.port });
    c.on('connect', () => {
      c.destroy();
      resolve('connected');
    });
    c.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
  t.equal(err, 'ECONNREFUSED', 'not listening on 127.0.0.2 (so not on all interfaces)');
});

t.test('pitfall: messages with the response bit set are never answered', async (t) => {
  const f = await startDns(t);
  // UDP (fast path): send a response-bit message, then a query, from one socket: the first reply must be the query's
  const s = dgram.createSocket('udp4');
  t.teardown(() => s.close());
  const first = new Promise<Buffer>((r) => s.once('message', r));
  const resp = encodeQuery('dns-version.cluster.local', 16, { id: 1 });
  resp[2] |= 0x80;
  await new Promise<void>((r) => s.send(resp, f.port, '127.0.0.1', () => r()));
  s.send(encodeQuery('dns-version.cluster.local', 16, { id: 2 }), f.port, '127.0.0.1');
  t.equal(decode(await first).id, 2);
  // UDP via dns2's decoder (two questions send it there) with QR set: still silent
  const first2 = new Promise<Buffer>((r) => s.once('message', r));
  const twoQ = Buffer.concat([resp, resp.subarray(12)]);
  twoQ.writeUInt16BE(2, 4);
  s.send(twoQ, f.port, '127.0.0.1');
  await new Promise((r) => setTimeout(r, 20));
  s.send(encodeQuery('dns-version.cluster.local', 16, { id: 3 }), f.port, '127.0.0.1');
  t.equal(decode(await first2).id, 3);
  // TCP: the connection is closed without a reply
  const replies = await tcpExchange(f.port, [resp], 1, 2000);
  t.same(replies, [], 'no reply over TCP');
});

t.test('pitfall: TXT over 255 bytes and plain-object records never reach dns2 (our encoder)', async (t) => {
  const f = await startDns(t);
  const r = await ask(f.port, 'dns-version.cluster.local', 'TXT');
  t.same(r.answer, ['dns-version.cluster.local 28800 TXT ["1.1.0"]'], 'decoded by dns2 from our encoding');
});

t.test('protocol errors: NOTIMP, FORMERR, BADVERS, classes', async (t) => {
  const f = await startDns(t);
  const notify = encodeQuery('cluster.local', 6, { id: 4 });
  notify[2] |= 4 << 3;
  t.equal(decode((await udpExchange(f.port, notify))!).rcode, 'NOTIMP');
  const noQ = encodeQuery('x', 1, { id: 5 }).subarray(0, 12);
  noQ.writeUInt16BE(0, 4);
  t.equal(decode((await udpExchange(f.port, noQ))!).rcode, 'FORMERR', 'no question');
  const twoOpt = Buffer.concat([encodeQuery('cluster.local', 6, { edns: 1232 }), Buffer.from([0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0])]);
  twoOpt.writeUInt16BE(2, 10);
  t.equal(decode((await udpExchange(f.port, twoOpt))!).rcode, 'FORMERR', 'two OPT records');
  const v1 = encodeQuery('cluster.local', 6, { edns: 1232 });
  v1[v1.length - 5] = 1; // EDNS version 1
  const bad = decode((await udpExchange(f.port, v1))!);
  t.equal(bad.rcode, '16', 'BADVERS (extended rcode 16)');
  t.ok(bad.opt);
  const ch = decode((await udpExchange(f.port, encodeQuery('version.bind', 16, { qclass: 3 })))!);
  t.equal(ch.rcode, 'REFUSED', 'class CH refused');
});

t.test('SERVFAIL until the informers have synced', async (t) => {
  const store = await createEmbeddedStore();
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  // the real store, with its list answered only when the test opens the gate
  const slow = new Proxy(store, {
    get(target, prop) {
      if (prop === 'list') return async (...a: Parameters<Store['list']>) => {
        await gate;
        return target.list(...a);
      };
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(target) : v;
    },
  });
  const informers = new InformerFactory(slow);
  const dns = new DnsServer({ informers, log: silent, address: '127.0.0.1', port: 0, zone: 'cluster.local', ttl: 5 });
  t.teardown(async () => {
    open();
    await dns.stop();
    informers.stop();
    await store.close();
  });
  await dns.start();
  const before = await ask(dns.port, 'dns-version.cluster.local', 'TXT');
  t.equal(before.rcode, 'SERVFAIL');
  t.equal(before.aa, false);
  open();
  await dns.synced();
  t.equal((await ask(dns.port, 'dns-version.cluster.local', 'TXT')).rcode, 'NOERROR');
});

t.test('fuzz: random, truncated and absurd packets never take the server down', async (t) => {
  const f = await startDns(t);
  const seed = 20261125;
  // mulberry32, so a failing fuzz run can be replayed
  const rnd = prng(seed).next;
  const good = encodeQuery('dns-version.cluster.local', 16, { edns: 1232 });
  const packets: Buffer[] = [];
  for (let i = 0; i < 2000; i++) {
    const kind = i % 4;
    if (kind === 0) {
      packets.push(Buffer.from(Array.from({ length: Math.floor(rnd() * 600) }, () => Math.floor(rnd() * 256))));
    } else if (kind === 1) {
      packets.push(good.subarray(0, Math.floor(rnd() * good.length)));
    } else if (kind === 2) {
      // a plausible header with absurd counts, then random bytes
      const h = Buffer.from(good.subarray(0, 12));
      for (const at of [4, 6, 8, 10]) h.writeUInt16BE(Math.floor(rnd() * 65536), at);
      packets.push(Buffer.concat([h, Buffer.from(Array.from({ length: Math.floor(rnd() * 300) }, () => Math.floor(rnd() * 256)))]));
    } else {
      // a good query with a few bytes flipped
      const b = Buffer.from(good);
      for (let k = 0; k < 3; k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      packets.push(b);
    }
  }
  const loop = Buffer.concat([good.subarray(0, 12), Buffer.from([0xc0, 12, 0, 1, 0, 1])]);
  packets.push(loop);
  const s = dgram.createSocket('udp4');
  t.teardown(() => s.close());
  s.on('message', () => {});
  for (let i = 0; i < packets.length; i++) {
    await new Promise<void>((r) => s.send(packets[i], f.port, '127.0.0.1', () => r()));
  }
  // TCP: framed garbage and bad frames on a few connections
  for (let i = 0; i < 20; i++) await tcpExchange(f.port, [packets[i * 7]], 1, 300);
  const tcpRaw = await new Promise<void>((resolve) => {
    const c = net.connect({ host: '127.0.0.1', port: f.port }, () => c.end(Buffer.from([0xff, 0xff, 1, 2, 3])));
    c.on('close', () => resolve());
    c.on('error', () => resolve());
    c.resume();
  });
  void tcpRaw;
  t.equal((await ask(f.port, 'dns-version.cluster.local', 'TXT')).rcode, 'NOERROR', `still answering over UDP (seed ${seed})`);
  t.equal((await ask(f.port, 'dns-version.cluster.local', 'TXT', { tcp: true })).rcode, 'NOERROR', 'and over TCP');
});
