/**
 * The UDP hot path (answer-cache.ts) answers exactly what the general path (parseQuery →
 * Responder → patch) answers, and leaves to it everything it does not handle. First on the
 * cache itself, then through the real server over UDP: the first query of a question is
 * answered by the general path (and fills the cache), a repeat by the hot path.
 */
import t from 'tap';
import { AnswerCache } from '../src/dns/answer-cache.js';
import { DROP, parseQuery, patch, replyLimit } from '../src/dns/wire.js';
import type { Query } from '../src/dns/wire.js';
import { decode, encodeQuery } from './dns-helpers.js';
import { hotPathThroughServer } from './dns-cases.js';

/** An encoded answer as Responder keeps it: ID 0, QR+AA, the lower-case question, one A record. */
function encodedA(name: string, ip: string, pad = 0): Buffer {
  const q = encodeQuery(name.toLowerCase(), 1, { id: 0, rd: false });
  const head = Buffer.from(q);
  head[2] = 0x84;
  head.writeUInt16BE(1 + pad, 6);
  const rr = (): Buffer => Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, ...ip.split('.').map(Number)]);
  return Buffer.concat([head, ...Array.from({ length: 1 + pad }, rr)]);
}

function parsed(q: Buffer): Query {
  const p = parseQuery(q);
  if (p === undefined || p === DROP) throw new Error('not a plain query');
  return p;
}

/** What the cache sends for `q`, or undefined when it declines. */
function hot(c: AnswerCache, q: Buffer, pending = false): Buffer | undefined {
  let out: Buffer | undefined;
  const answered = c.reply(q, (b) => {
    out = Buffer.from(b);
    return pending;
  });
  return answered ? out : undefined;
}

t.test('a hit is patched exactly as the general path patches it', async (t) => {
  const c = new AnswerCache(100);
  const enc = encodedA('svc1.default.svc.cluster.local', '10.96.0.1');
  c.set(parsed(encodeQuery('SVC1.default.svc.cluster.local', 1)).qname, 1, 1, enc);
  t.equal(c.size, 1);
  const variants: Array<[string, Buffer]> = [
    ['plain, RD', encodeQuery('svc1.default.svc.cluster.local', 1, { id: 0x0102 })],
    ['RD off', encodeQuery('svc1.default.svc.cluster.local', 1, { id: 0xfffe, rd: false })],
    ['mixed case is echoed', encodeQuery('SvC1.DeFaUlT.SvC.cLuStEr.LoCaL', 1, { id: 7 })],
    ['EDNS 1232', encodeQuery('svc1.default.svc.cluster.local', 1, { id: 9, edns: 1232 })],
    ['EDNS 512 (the floor)', encodeQuery('svc1.default.svc.cluster.local', 1, { id: 10, edns: 100 })],
  ];
  const withDoCd = encodeQuery('svc1.default.svc.cluster.local', 1, { id: 11, edns: 4096 });
  withDoCd[3] |= 0x10; // CD
  withDoCd[withDoCd.length - 4] = 0x80; // DO
  variants.push(['EDNS with DO, CD set', withDoCd]);
  const withOption = Buffer.concat([encodeQuery('svc1.default.svc.cluster.local', 1, { id: 12, edns: 1232 }), Buffer.from([0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])]);
  withOption.writeUInt16BE(12, withOption.length - 14); // OPT RDLEN: one cookie option
  variants.push(['EDNS with an option (dig sends a cookie)', withOption]);
  for (const [what, q] of variants) {
    const want = patch(enc, parsed(q), replyLimit(parsed(q), false));
    t.same(hot(c, q), want, what);
  }
  // the same entry again, after patching it for others: nothing left over from them
  const again = encodeQuery('svc1.default.svc.cluster.local', 1, { id: 0x0102 });
  t.same(hot(c, again), patch(enc, parsed(again), 512), 'no bits left from earlier replies');
});

t.test('whatever the hot path does not handle goes to the general path', async (t) => {
  const c = new AnswerCache(100);
  const enc = encodedA('a.b', '10.0.0.1');
  c.set(parsed(encodeQuery('a.b', 1)).qname, 1, 1, enc);
  const big = encodedA('big.b', '10.0.0.2', 40); // > 512 bytes: needs TC without EDNS
  c.set(parsed(encodeQuery('big.b', 1)).qname, 1, 1, big);
  t.ok(hot(c, encodeQuery('a.b', 1)), 'the control answers');
  t.ok(hot(c, encodeQuery('big.b', 1, { edns: 1232 })), 'a big answer that fits the EDNS size answers');
  const declined: Array<[string, Buffer]> = [
    ['not cached', encodeQuery('c.b', 1)],
    ['another type', encodeQuery('a.b', 28)],
    ['another class', encodeQuery('a.b', 1, { qclass: 3 })],
    ['needs truncating', encodeQuery('big.b', 1)],
    ['trailing bytes', Buffer.concat([encodeQuery('a.b', 1), Buffer.from([0])])],
    ['short', encodeQuery('a.b', 1).subarray(0, 14)],
  ];
  const mutate = (what: string, f: (b: Buffer) => void, edns?: number): void => {
    const b = encodeQuery('a.b', 1, { edns });
    f(b);
    declined.push([what, b]);
  };
  mutate('a response (QR)', (b) => (b[2] |= 0x80));
  mutate('opcode 2', (b) => (b[2] |= 0x10));
  mutate('two questions', (b) => (b[5] = 2));
  mutate('an answer record', (b) => (b[7] = 1));
  mutate('EDNS version 1 (BADVERS)', (b) => (b[b.length - 5] = 1), 1232);
  mutate('OPT of another type', (b) => (b[b.length - 9] = 42), 1232);
  mutate('OPT RDLEN past the end', (b) => (b[b.length - 1] = 4), 1232);
  mutate('a label over 63', (b) => (b[12] = 64));
  for (const [what, q] of declined) t.equal(hot(c, q), undefined, what);
});

t.test('a reply buffer the kernel still holds is never patched again', async (t) => {
  const c = new AnswerCache(100);
  c.set(parsed(encodeQuery('a.b', 1)).qname, 1, 1, encodedA('a.b', '10.0.0.1'));
  let held: Buffer | undefined;
  c.reply(encodeQuery('a.b', 1, { id: 1 }), (b) => ((held = b), true));
  const copy = Buffer.from(held!);
  let next: Buffer | undefined;
  c.reply(encodeQuery('A.B', 1, { id: 2 }), (b) => ((next = b), false));
  t.not(next, held, 'a new buffer');
  t.same(held, copy, 'the pending one is untouched');
  t.equal(next!.readUInt16BE(0), 2);
});

t.test('many names share the cache; it empties when full', async (t) => {
  const c = new AnswerCache(50);
  const names = Array.from({ length: 50 }, (_, i) => `n${i}.svc.cluster.local`);
  names.forEach((n, i) => c.set(parsed(encodeQuery(n, 1)).qname, 1, 1, encodedA(n, `10.0.0.${i}`)));
  t.equal(c.size, 50);
  for (const [i, n] of names.entries()) {
    const r = hot(c, encodeQuery(n.toUpperCase(), 1));
    t.equal(r && decode(r).answer[0], `${n.toUpperCase()} 5 A 10.0.0.${i}`, n);
  }
  t.same(c.get(parsed(encodeQuery('N7.SVC.cluster.local', 1)).qname, 1, 1), encodedA(names[7], '10.0.0.7'), 'get() folds case too');
  c.set(parsed(encodeQuery('one.more', 1)).qname, 1, 1, encodedA('one.more', '10.0.1.1'));
  t.equal(c.size, 1, 'the 51st entry emptied it first');
  t.equal(hot(c, encodeQuery(names[0], 1)), undefined);
  c.clear();
  t.equal(c.size, 0);
});

t.test('the byte budget bounds the answers and their reply copies', async (t) => {
  const a = encodedA('a.b', '10.0.0.1'); // 31 bytes + a 5-byte name
  const c = new AnswerCache(100, 2 * (a.length + 5) + a.length);
  c.set(parsed(encodeQuery('a.b', 1)).qname, 1, 1, a);
  c.set(parsed(encodeQuery('c.b', 1)).qname, 1, 1, encodedA('c.b', '10.0.0.3'));
  t.equal(c.size, 2);
  t.ok(hot(c, encodeQuery('a.b', 1)), 'one reply copy fits');
  t.equal(hot(c, encodeQuery('c.b', 1)), undefined, 'a second copy does not: the general path answers');
  t.ok(hot(c, encodeQuery('a.b', 1, { id: 9 })), 'the copy that fits is used again');
  // a pending send hands its copy to the kernel: it no longer counts, so a new one fits
  t.ok(c.reply(encodeQuery('a.b', 1), () => true));
  t.ok(hot(c, encodeQuery('a.b', 1)), 'a new copy after a pending send');
  c.set(parsed(encodeQuery('d.b', 1)).qname, 1, 1, encodedA('d.b', '10.0.0.4'));
  t.equal(c.size, 1, 'an answer over the budget empties the cache first');
});

t.test('names built to collide are cached at most 8 to a bucket (no slow lookups from a hash flood)', async (t) => {
  // With a known hash start, pairs of labels that leave FNV in the same state can be found and
  // chained: 4 stages give 16 names with one hash (the cap holds whatever the start).
  const START = 0x811c9dc5;
  const P = 16777619;
  const ALPHA = 'abcdefghijklmnopqrstuvwxyz0123456789';
  /** the FNV state after a 6-character label (length byte first) that spells i in base 36 */
  const run = (h: number, i: number): number => {
    h = Math.imul(h ^ 6, P);
    for (let k = 0; k < 6; k++, i = Math.floor(i / 36)) h = Math.imul(h ^ ALPHA.charCodeAt(i % 36), P);
    return h >>> 0;
  };
  const label = (i: number): string => Array.from({ length: 6 }, (_, k) => ALPHA[Math.floor(i / 36 ** k) % 36]).join('');
  let h = START;
  const stages: Array<[string, string]> = [];
  for (let st = 0; st < 4; st++) {
    const seen = new Map<number, number>();
    for (let i = st * 1_000_003; ; i++) {
      const r = run(h, i);
      const o = seen.get(r);
      if (o !== undefined) {
        stages.push([label(o), label(i)]);
        h = r;
        break;
      }
      seen.set(r, i);
    }
  }
  const names = Array.from({ length: 16 }, (_, m) => stages.map((pair, st) => pair[(m >> st) & 1]).join('.'));
  const c = new AnswerCache(100, 1 << 20, START);
  for (const [i, n] of names.entries()) {
    c.set(parsed(encodeQuery(n, 1)).qname, 1, 1, encodedA(n, `10.0.2.${i}`));
  }
  t.equal(c.size, 8, 'the bucket stops at 8');
  // (with another start FNV collisions often survive: the cap, not the random start, is the guard)
  t.equal(decode(hot(c, encodeQuery(names[0]!, 1))!).answer[0], `${names[0]} 5 A 10.0.2.0`, 'a kept one answers');
  t.equal(hot(c, encodeQuery(names[15]!, 1)), undefined, 'the 16th goes to the general path');
});

// the same case on the node:net data path: test/dns-net.test.ts
hotPathThroughServer({});
