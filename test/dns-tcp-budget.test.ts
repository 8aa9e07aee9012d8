/**
 * Issue 14, finding 4: DNS over TCP half-closed idle connections but kept the descriptor while
 * the client held its end, and had no cap, so 20,000 idle clients took the daemon's fds.
 * Here: an idle client gets a FIN and the server's descriptor is gone although the client
 * keeps its end; over the cap new connections are closed at once while UDP still answers; and
 * the process's descriptor count returns to its baseline when the clients leave.
 */
import { readdirSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import pino from 'pino';
import t from 'tap';
import { Dns2Binding } from '../src/dns/server.js';
import { errorReply } from '../src/dns/wire.js';
import type { Query } from '../src/dns/wire.js';
import { decode, encodeQuery, tcpExchange, udpExchange } from './dns-helpers.js';
import type { Teardown } from './dns-helpers.js';
import { waitFor } from './helpers/wait.js';

const silent = pino({ level: 'silent' });
const ok = (q: Query): Buffer => errorReply(q, 0);

/** the socket descriptors of this process (the server and the test clients both live here), by inode */
function sockets(): Set<string> {
  const out = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const l = readlinkSync(`/proc/self/fd/${fd}`);
      if (l.startsWith('socket:')) out.add(l);
    } catch {
      // closed meanwhile (the directory's own descriptor, too)
    }
  }
  return out;
}

/**
 * Counts the sockets opened since it was made that are still open. Only those: on Node 22 a
 * couple of the process's own start-up sockets close a moment later, which moved a plain count.
 */
function socketsSince(): () => number {
  const base = sockets();
  return () => [...sockets()].filter((s) => !base.has(s)).length;
}

async function binding(t: Teardown, o: { idleMs?: number; max?: number }): Promise<Dns2Binding> {
  const b = new Dns2Binding({ log: silent, address: '127.0.0.1', port: 0, answer: ok, tcpIdleTimeoutMs: o.idleMs, tcpMaxConnections: o.max });
  t.teardown(() => b.close());
  await b.listen();
  return b;
}

interface Client {
  sock: net.Socket;
  /** the server's FIN arrived */
  ended: boolean;
  /** the connection is fully closed on our side too */
  closed: boolean;
}

/** Connects `n` clients that send nothing and never end their side (allowHalfOpen). */
async function idleClients(t: Teardown, port: number, n: number): Promise<Client[]> {
  const out: Client[] = [];
  for (let i = 0; i < n; i++) {
    const c: Client = { sock: net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }), ended: false, closed: false };
    c.sock.on('end', () => (c.ended = true));
    c.sock.on('close', () => (c.closed = true));
    c.sock.on('error', () => {});
    await new Promise<void>((resolve) => {
      c.sock.once('connect', resolve);
      c.sock.once('close', () => resolve());
    });
    out.push(c);
  }
  t.teardown(() => out.forEach((c) => c.sock.destroy()));
  return out;
}

t.test('an idle DNS/TCP client that holds its end gets a FIN and the server descriptor is released', async (t) => {
  const b = await binding(t, { idleMs: 300 });
  const fds = socketsSince();
  const base = 0;
  const clients = await idleClients(t, b.port, 5);
  await waitFor(() => b.tcpStats().open === 5, { what: 'the server to see 5 connections' });
  t.equal(fds(), base + 10, 'client and server end of each connection are open');
  await waitFor(() => clients.every((c) => c.ended), { what: 'a FIN to every idle client', timeoutMs: 5000 });
  // the clients keep their end (allowHalfOpen, never ended): only the server's must be gone
  await waitFor(() => fds() === base + 5, { what: `the server's 5 descriptors to be closed (fds ${fds()}, want ${base + 5})`, timeoutMs: 5000 });
  t.equal(b.tcpStats().open, 0, 'no connection left on the server');
  t.ok(clients.every((c) => !c.sock.destroyed || c.closed), 'clients still hold their end until they choose');
  for (const c of clients) c.sock.destroy();
  await waitFor(() => fds() === base, { what: 'fds back to the baseline' });
  t.pass('descriptors back to the baseline');
});

t.test('a query-answer exchange over TCP still works, and a client that half-closes is fully closed', async (t) => {
  const b = await binding(t, { idleMs: 10_000 });
  const fds = socketsSince();
  const base = 0;
  const [r] = await tcpExchange(b.port, [encodeQuery('a.example', 1, { id: 5 })]);
  t.equal(decode(r).id, 5);
  await waitFor(() => b.tcpStats().open === 0 && fds() === base, { what: 'the connection to be gone on both sides' });
  t.pass('released');
});

t.test('over the cap, new DNS/TCP connections are closed at once; UDP answers; fds return to baseline', async (t) => {
  const cap = 8;
  const b = await binding(t, { idleMs: 60_000, max: cap });
  const fds = socketsSince();
  const base = 0;
  const clients = await idleClients(t, b.port, cap + 12);
  await waitFor(() => b.tcpStats().open === cap, { what: `${cap} connections held by the server` });
  const refused = await waitFor(() => (clients.filter((c) => c.ended).length === 12 ? clients.filter((c) => c.ended) : undefined), {
    what: 'the 12 connections over the cap to be closed by the server',
  });
  t.equal(refused.length, 12, 'every connection over the cap was closed');
  t.ok(clients.slice(0, cap).every((c) => !c.ended), 'the first connections (under the cap) stay open');
  t.equal(b.tcpStats().rejected, 12, 'rejections are counted');
  t.equal(b.tcpStats().cap, cap);
  const udp = await udpExchange(b.port, encodeQuery('a.example', 1, { id: 9 }));
  t.equal(udp && decode(udp).id, 9, 'UDP still answers while TCP is at its cap');
  // one leaves: a new TCP client is served again
  clients[0].sock.destroy();
  await waitFor(() => b.tcpStats().open === cap - 1, { what: 'the server to notice the client left' });
  const [r] = await tcpExchange(b.port, [encodeQuery('b.example', 1, { id: 10 })]);
  t.equal(decode(r).id, 10, 'a TCP query is answered once there is room');
  for (const c of clients) c.sock.destroy();
  await waitFor(() => b.tcpStats().open === 0 && fds() === base, { what: `fds back to the baseline (${fds()} vs ${base})` });
  t.pass('descriptors back to the baseline');
});

t.test('a cap that is not a whole number ≥ 1 is refused with the reason', async (t) => {
  t.throws(() => new Dns2Binding({ log: silent, address: '127.0.0.1', port: 0, answer: ok, tcpMaxConnections: 0 }), /DNS TCP connection cap 0 must be a whole number ≥ 1/);
});
