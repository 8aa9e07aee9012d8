import t from 'tap';
import { DEFAULT_AFFINITY_SECONDS, type Endpoint, RoundRobin, endpointId } from '../../src/agent/proxy/round-robin.js';

const ep = (host: string, port = 80): Endpoint => ({ host, port, id: endpointId(host, port) });
const E1 = ep('127.0.0.11');
const E2 = ep('127.0.0.12');
const E3 = ep('127.0.0.13');
const E4 = ep('127.0.0.14');

/** a seeded generator so that shuffles are reproducible */
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const ids = (eps: Array<Endpoint | undefined>): string[] => eps.map((e) => e?.id ?? '-');

t.test('next() rotates through every endpoint in the shuffled order', async (t) => {
  const rr = new RoundRobin({ random: seeded(1) });
  t.equal(rr.next('127.0.0.1'), undefined, 'no endpoints: nothing');
  t.ok(rr.setEndpoints([E1, E2, E3]));
  const order = ids(rr.endpoints as Endpoint[]);
  const got = ids(Array.from({ length: 7 }, () => rr.next('127.0.0.1')));
  t.same(got, [...order, ...order, order[0]]);
  t.same([...order].sort(), ids([E1, E2, E3]), 'the list holds the set');
});

t.test('the list is reshuffled and the index reset only when the set changes', async (t) => {
  const rr = new RoundRobin({ random: seeded(7) });
  rr.setEndpoints([E1, E2, E3]);
  const order = ids(rr.endpoints as Endpoint[]);
  rr.next('c');
  t.notOk(rr.setEndpoints([E3, E1, E2, E1]), 'same set in another order, with a duplicate: no change');
  t.same(ids(rr.endpoints as Endpoint[]), order, 'order kept');
  t.equal(rr.next('c')!.id, order[1], 'index kept');

  t.ok(rr.setEndpoints([E1, E2, E3, E4]), 'a new member changes the set');
  const order2 = ids(rr.endpoints as Endpoint[]);
  t.equal(rr.next('c')!.id, order2[0], 'index reset');

  // a shuffle really happens: over many seeds not every order is the input order
  const firsts = new Set<string>();
  for (let s = 0; s < 20; s++) {
    const r = new RoundRobin({ random: seeded(s) });
    r.setEndpoints([E1, E2, E3, E4]);
    firsts.add(r.endpoints[0]!.id);
  }
  t.ok(firsts.size > 1, 'the start differs between shuffles');

  t.ok(rr.setEndpoints([]), 'emptying is a change');
  t.equal(rr.next('c'), undefined);
});

t.test('ClientIP affinity: pinned while younger than timeoutSeconds (whole seconds), refreshed on use', async (t) => {
  let now = 1_000_000;
  const rr = new RoundRobin({ now: () => now, random: seeded(3), affinity: { type: 'ClientIP', timeoutSeconds: 10 } });
  rr.setEndpoints([E1, E2, E3]);
  const a = rr.next('10.0.0.1')!;
  const b = rr.next('10.0.0.2')!;
  t.not(a.id, b.id, 'new clients take the next endpoint');
  t.equal(rr.next('10.0.0.1')!.id, a.id, 'pinned');
  now += 9_999; // 9.999 s: trunc → 9 < 10
  t.equal(rr.next('10.0.0.1')!.id, a.id, 'still pinned just below the timeout, and refreshed');
  now += 9_999;
  t.equal(rr.next('10.0.0.1')!.id, a.id, 'the refresh restarted the clock');
  now += 10_000; // exactly 10 s since last use: not < 10
  const after = rr.next('10.0.0.1')!;
  t.not(after.id, a.id, 'expired: the next round-robin endpoint');
  t.equal(rr.next('10.0.0.1')!.id, after.id, 'and pinned to it');

  // stale entries are cleaned up
  t.equal(rr.stickyClients, 2);
  now += 10_000;
  rr.cleanupStaleSessions();
  t.equal(rr.stickyClients, 0);
});

t.test('affinity is bypassed after a failed dial and re-pinned to the new endpoint', async (t) => {
  const rr = new RoundRobin({ random: seeded(4), affinity: { type: 'ClientIP', timeoutSeconds: 0 } });
  t.equal(rr.affinity.timeoutSeconds, DEFAULT_AFFINITY_SECONDS, 'timeout 0 means the 3 h default');
  rr.setEndpoints([E1, E2]);
  const a = rr.next('c')!;
  const retry = rr.next('c', true)!;
  t.not(retry.id, a.id, 'bypass takes the next endpoint');
  t.equal(rr.next('c')!.id, retry.id, 'and the client is pinned to it now');
});

t.test('pins to removed endpoints are dropped at once; others survive a set change', async (t) => {
  const rr = new RoundRobin({ random: seeded(5), affinity: { type: 'ClientIP', timeoutSeconds: 100 } });
  rr.setEndpoints([E1, E2]);
  const pins = new Map<string, string>();
  for (const c of ['c1', 'c2']) pins.set(c, rr.next(c)!.id);
  const removed = pins.get('c1')!;
  const kept = pins.get('c2')!;
  rr.setEndpoints([E1, E2, E3].filter((e) => e.id !== removed));
  t.equal(rr.stickyClients, 1);
  t.equal(rr.next('c2')!.id, kept, 'the surviving pin holds');
  t.not(rr.next('c1')!.id, removed, 'the client of the removed endpoint moves');
});

t.test('switching affinity off and on clears pins; timeout changes apply at once', async (t) => {
  let now = 0;
  const rr = new RoundRobin({ now: () => now, random: seeded(6), affinity: { type: 'ClientIP', timeoutSeconds: 100 } });
  rr.setEndpoints([E1, E2, E3]);
  rr.next('c');
  rr.setAffinity({ type: 'ClientIP', timeoutSeconds: 1 });
  t.equal(rr.stickyClients, 1, 'a timeout change keeps pins');
  now += 1000;
  rr.cleanupStaleSessions();
  t.equal(rr.stickyClients, 0, 'but judges them by the new timeout');
  rr.next('c');
  rr.setAffinity({ type: 'None', timeoutSeconds: 0 });
  t.equal(rr.stickyClients, 0);
  const seq = ids([rr.next('c'), rr.next('c'), rr.next('c')]);
  t.equal(new Set(seq).size, 3, 'without affinity one client rotates');
});
