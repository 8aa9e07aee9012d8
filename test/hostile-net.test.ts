/**
 * Hostile clients of the data plane (issue 14, must-have 6): garbage DNS over UDP and TCP
 * (seeded random packets, truncated headers, huge counts, compression-pointer loops, short
 * length prefixes, slowloris and idle TCP clients) and proxy clients on a ClusterIP that reset,
 * half-close, idle or come in many short connections. After each group the daemon still
 * answers kubectl, DNS and the ClusterIP; at the end its fds are back to the baseline and its
 * RSS stayed bounded. Seeds and counts are fixed; the figures are printed as TAP comments.
 */
import t from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import { type DnsAddr, type HostileEnv, Sampler, Tally, assertAlive, crashLines, dnsQuery, fdCount, prng, startHostileDaemon, udpAsk } from './helpers/hostile-kit.js';
import { waitFor } from './helpers/wait.js';

const SEED = 0x14e7;
const MAX_RSS_MIB = 300;
const FD_MARGIN = 8;
/** the DNS server's TCP idle timeout (RFC 7766's ≥ 10 s) plus slack */
const DNS_IDLE_CLOSE_MS = 25_000;

/** Sends every packet from one UDP socket; resolves to the number of replies seen meanwhile. */
async function udpBurst(addr: DnsAddr, packets: Buffer[], settleMs = 300): Promise<number> {
  const s = dgram.createSocket('udp4');
  let replies = 0;
  s.on('message', () => replies++);
  s.on('error', () => undefined);
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  for (const p of packets) {
    await new Promise<void>((r) => s.send(p, addr.port, addr.host, () => r()));
  }
  await new Promise((r) => setTimeout(r, settleMs));
  s.close();
  return replies;
}

/**
 * A TCP client that connects, writes `bytes` (if any), and is kept until released; with
 * `allowHalfOpen` it does not answer the server's FIN with its own (it holds its end open).
 */
function tcpHold(host: string, port: number, bytes?: Buffer, o: { allowHalfOpen?: boolean } = {}): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, allowHalfOpen: o.allowHalfOpen });
    s.on('error', () => undefined);
    s.once('connect', () => {
      if (bytes) s.write(bytes);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Writes `bytes` on a fresh TCP connection, ends it, and resolves when the server closes (bounded). */
function tcpThrow(host: string, port: number, bytes: Buffer, timeoutMs = 3000): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = net.connect({ host, port });
    const finish = () => {
      clearTimeout(timer);
      s.destroy();
      resolve(Buffer.concat(chunks));
    };
    const timer = setTimeout(finish, timeoutMs);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', finish);
    s.on('close', finish);
    s.once('connect', () => s.end(bytes));
  });
}

const framed = (p: Buffer): Buffer => {
  const l = Buffer.alloc(2);
  l.writeUInt16BE(p.length & 0xffff);
  return Buffer.concat([l, p]);
};

/** Malformed queries a parser must survive; each still has a readable 12-byte header or less. */
function malformedQueries(fqdn: string): Array<[string, Buffer]> {
  const q = dnsQuery(fqdn, 1, 0x5151);
  const withHeader = (rest: number[], counts: [number, number, number, number] = [1, 0, 0, 0]) => {
    const h = Buffer.alloc(12);
    h.writeUInt16BE(0x6161, 0);
    h.writeUInt16BE(0x0100, 2);
    counts.forEach((c, i) => h.writeUInt16BE(c, 4 + 2 * i));
    return Buffer.concat([h, Buffer.from(rest)]);
  };
  const out: Array<[string, Buffer]> = [];
  for (let n = 0; n < 12; n++) out.push([`truncated header (${n} B)`, q.subarray(0, n)]);
  for (const n of [13, 20, q.length - 4, q.length - 1]) out.push([`truncated question (${n} B)`, q.subarray(0, n)]);
  const huge = Buffer.from(q);
  huge.writeUInt16BE(0xffff, 4);
  out.push(['qdcount 65535 with one question', huge]);
  out.push(['ancount/nscount/arcount 65535', withHeader([0, 0, 1, 0, 1], [1, 0xffff, 0xffff, 0xffff])]);
  out.push(['qdcount 0', withHeader([], [0, 0, 0, 0])]);
  out.push(['compression pointer to itself', withHeader([0xc0, 12, 0, 1, 0, 1])]);
  out.push(['two compression pointers in a loop', withHeader([0xc0, 14, 0xc0, 12, 0, 1, 0, 1])]);
  out.push(['label then pointer back to it', withHeader([1, 0x61, 0xc0, 12, 0, 1, 0, 1])]);
  out.push(['compression pointer past the end', withHeader([0xc0, 0xff, 0, 1, 0, 1])]);
  out.push(['compression pointer in the header', withHeader([0xc0, 0, 0, 1, 0, 1])]);
  out.push(['label longer than the packet', withHeader([63, 0x61, 0x62])]);
  out.push(['reserved label type 0x40', withHeader([0x41, 0x61, 0, 0, 1, 0, 1])]);
  out.push(['name over 255 bytes', withHeader([...Array.from({ length: 5 }, () => [63, ...Buffer.alloc(63, 0x61)]).flat(), 0, 0, 1, 0, 1])]);
  const resp = Buffer.from(q);
  resp.writeUInt16BE(0x8100, 2);
  out.push(['a response (QR=1), not a query', resp]);
  for (const opcode of [1, 2, 5, 15]) {
    const o = Buffer.from(q);
    o.writeUInt16BE(0x0100 | (opcode << 11), 2);
    out.push([`opcode ${opcode}`, o]);
  }
  const edns = Buffer.concat([Buffer.from(q), Buffer.from([0, 0, 41, 0xff, 0xff, 0, 0, 0x80, 0, 0xff, 0xff])]);
  edns.writeUInt16BE(1, 10);
  out.push(['EDNS OPT with rdlength past the end', edns]);
  return out;
}

t.test('hostile network clients', async (t) => {
  const env: HostileEnv = await startHostileDaemon(t, { serviceCidr: '127.138.0.0/16', podCidr: '127.238.0.0/16', lbPool: '127.148.0.0/16', nodeIP: '127.0.115.1' });
  const tally = new Tally();
  const sampler = new Sampler(env.pid);
  t.teardown(() => sampler.stop());
  const held: net.Socket[] = [];
  const release = () => {
    for (const s of held.splice(0)) s.destroy();
  };
  t.teardown(release);
  await assertAlive(t, env, 'start-up');
  const baseFds = fdCount(env.pid);
  const rnd = prng(SEED);
  const [cipHost, cipPortText] = env.clusterIP.split(':');
  const cipPort = Number(cipPortText);
  const fdsBack = (what: string, timeoutMs = 15_000) =>
    waitFor(() => fdCount(env.pid) <= baseFds + FD_MARGIN, { timeoutMs, intervalMs: 100, what: `daemon fds within ${FD_MARGIN} of ${baseFds} ${what} (now ${fdCount(env.pid)})` }).then(
      () => '',
      (e: Error) => e.message,
    );

  await t.test('garbage DNS over UDP', async (t) => {
    const random = Array.from({ length: 400 }, () => rnd.bytes(rnd.int(600)));
    const randomReplies = await udpBurst(env.dns, random);
    tally.count('dns-udp random packets', random.length);
    // random bytes with a plausible header: a query opcode, one question, then noise
    const plausible = Array.from({ length: 200 }, () => {
      const b = rnd.bytes(12 + rnd.int(300));
      b.writeUInt16BE(0x0100, 2);
      b.writeUInt16BE(1, 4);
      return b;
    });
    await udpBurst(env.dns, plausible);
    tally.count('dns-udp random packets', plausible.length);
    const malformed = malformedQueries(env.fqdn);
    for (const [name, p] of malformed) {
      await udpBurst(env.dns, [p], 0);
      tally.count('dns-udp malformed', 1);
      void name;
    }
    t.comment(`UDP: ${random.length} random packets got ${randomReplies} replies`);
    // a well-formed query right after each malformed one is still answered
    for (const [name, p] of malformed.slice(0, 8)) {
      await udpBurst(env.dns, [p], 0);
      const r = await udpAsk(env.dns, dnsQuery(env.fqdn, 1, 0x7777)).catch(() => undefined);
      t.ok(r?.rcode === 0 && r.a.length === 1, `answered after "${name}"`);
    }
  });
  await t.test('still answers after garbage DNS over UDP', (t) => assertAlive(t, env, 'garbage DNS over UDP'));

  await t.test('garbage DNS over TCP', async (t) => {
    const { host, port } = env.dns;
    const jobs: Array<Promise<Buffer>> = [];
    for (let i = 0; i < 60; i++) jobs.push(tcpThrow(host, port, rnd.bytes(1 + rnd.int(512))));
    tally.count('dns-tcp random streams', 60);
    for (const [, p] of malformedQueries(env.fqdn)) jobs.push(tcpThrow(host, port, framed(p)));
    tally.count('dns-tcp malformed', malformedQueries(env.fqdn).length);
    const short = Buffer.concat([Buffer.from([0xff, 0xff]), dnsQuery(env.fqdn)]);
    jobs.push(tcpThrow(host, port, short));
    jobs.push(tcpThrow(host, port, Buffer.from([0, 0])));
    jobs.push(tcpThrow(host, port, Buffer.from([0, 0, 0, 0, 0, 0])));
    tally.count('dns-tcp bad length prefix', 3);
    // many queries pipelined on one connection, the last one cut short
    const pipelined = Buffer.concat([...Array.from({ length: 50 }, (_, i) => framed(dnsQuery(env.fqdn, 1, i))), Buffer.from([0, 40, 1, 2])]);
    const pipeReply = tcpThrow(host, port, pipelined);
    tally.count('dns-tcp pipelined', 51);
    await Promise.all(jobs);
    const replies = await pipeReply;
    let n = 0;
    for (let off = 0; off + 2 <= replies.length; off += 2 + replies.readUInt16BE(off)) n++;
    t.equal(n, 50, 'every whole pipelined query is answered, the cut one is not');

    // slowloris: a length prefix byte and nothing more; a prefix promising more than is sent
    for (let i = 0; i < 50; i++) held.push(await tcpHold(host, port, Buffer.from([0])));
    for (let i = 0; i < 25; i++) held.push(await tcpHold(host, port, Buffer.concat([Buffer.from([0xff, 0xff]), dnsQuery(env.fqdn)])));
    tally.count('dns-tcp slowloris', 75);
    for (let i = 0; i < 200; i++) held.push(await tcpHold(host, port));
    tally.count('dns-tcp idle clients', 200);
    const u = await udpAsk(env.dns, dnsQuery(env.fqdn, 1, 99)).catch(() => undefined);
    t.ok(u?.rcode === 0 && u.a.length === 1, `DNS over UDP answers while ${held.length} TCP clients hold connections`);
    release();
    t.equal(await fdsBack('after the TCP clients left'), '', 'the daemon closed their connections');
  });
  await t.test('still answers after garbage DNS over TCP', (t) => assertAlive(t, env, 'garbage DNS over TCP'));

  await t.test('proxy clients on a ClusterIP that reset, half-close, idle or come and go', async (t) => {
    const request = Buffer.from(`GET / HTTP/1.1\r\nHost: ${env.clusterIP}\r\nConnection: close\r\n\r\n`);
    // connect and reset (SO_LINGER 0): before and after sending part of a request
    for (let i = 0; i < 300; i++) {
      const s = await tcpHold(cipHost, cipPort, i % 2 ? request.subarray(0, 1 + rnd.int(request.length - 1)) : undefined);
      s.resetAndDestroy();
    }
    tally.count('proxy connect-and-reset', 300);
    // half-close: the request, then end(); the whole reply must still arrive
    const halves = await Promise.all(
      Array.from({ length: 50 }, () => tcpThrow(cipHost, cipPort, request, 5000).then((b) => b.toString('latin1'))),
    );
    tally.count('proxy half-close', 50);
    t.equal(halves.filter((r) => r.startsWith('HTTP/1.1 200') && /pod=echo-/.test(r)).length, 50, 'every half-closed client gets the whole reply');
    // idle holders
    for (let i = 0; i < 200; i++) held.push(await tcpHold(cipHost, cipPort));
    tally.count('proxy idle holders', 200);
    const during = await tcpThrow(cipHost, cipPort, request, 5000);
    t.match(during.toString('latin1'), /^HTTP\/1\.1 200/, 'a new client is served while 200 others idle');
    release();
    // many short connections, 20 at a time
    let ok = 0;
    let next = 0;
    const worker = async () => {
      while (next < 1000) {
        next++;
        const r = await tcpThrow(cipHost, cipPort, request, 5000);
        if (r.toString('latin1').startsWith('HTTP/1.1 200')) ok++;
      }
    };
    const t0 = Date.now();
    await Promise.all(Array.from({ length: 20 }, worker));
    tally.count('proxy short connections', 1000);
    t.comment(`1000 short connections through the ClusterIP in ${Date.now() - t0} ms`);
    t.equal(ok, 1000, 'every short connection is answered');
    t.equal(await fdsBack('after the proxy clients left'), '', 'the proxy closed every connection');
  });
  await t.test('still answers after the proxy clients', (t) => assertAlive(t, env, 'the proxy clients'));

  await t.test('idle DNS/TCP connections are fully closed after their timeout, even while the client holds its end', async (t) => {
    try {
      for (let i = 0; i < 100; i++) held.push(await tcpHold(env.dns.host, env.dns.port, undefined, { allowHalfOpen: true }));
      tally.count('dns-tcp idle clients', 100);
      await waitFor(() => fdCount(env.pid) >= baseFds + 90, { timeoutMs: 5000, what: 'the daemon to accept the 100 idle clients' });
      t.pass('the daemon holds their connections at first');
      t.equal(await fdsBack('while 100 idle DNS/TCP clients keep their ends open', DNS_IDLE_CLOSE_MS), '', 'the daemon let go of every idle connection');
    } finally {
      release();
    }
  });

  await t.test('the end state: no crash, fds back to the baseline, RSS bounded', async (t) => {
    const crashes = crashLines(env.d.stderr());
    t.equal(env.d.proc.exitCode, null, 'the daemon never exited');
    t.same(crashes, [], 'no uncaught exception or fatal log on stderr');
    const e = await fdsBack('at the end');
    const fds = fdCount(env.pid);
    sampler.stop();
    t.comment(`hostile network figures: crashes ${crashes.length + (env.d.proc.exitCode === null ? 0 : 1)}; ${tally.total()} hostile packets/connections (${tally.lines().join(', ')}); max daemon RSS ${sampler.maxRss.toFixed(0)} MiB; fds ${baseFds} after start-up, ${fds} at the end (max ${sampler.maxFds})`);
    t.equal(e, '', `fds back to the baseline: ${fds} vs ${baseFds}`);
    t.ok(sampler.maxRss < MAX_RSS_MIB, `max RSS ${sampler.maxRss.toFixed(0)} MiB < ${MAX_RSS_MIB} MiB`);
  });
});
