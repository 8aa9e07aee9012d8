import t from 'tap';
import { Packet } from 'dns2';
import { DROP, encodeAnswer, errorReply, parseQuery, patch, readName, replyLimit, txtChunks, wireNameToString, nameToWire, parseReply, buildQuery } from '../../src/dns/wire.js';
import type { Query } from '../../src/dns/wire.js';
import { TYPE, RCODE } from '../../src/dns/records.js';
import type { Answer } from '../../src/dns/records.js';
import { canonicalIP, dashedIP, ipFromDashed, ipFromReverse, reverseName, isLoopback } from '../../src/dns/ip.js';
import { encodeQuery } from '../dns-helpers.js';

const answer = (p: Partial<Answer>): Answer => ({ rcode: 0, authoritative: true, answer: [], authority: [], additional: [], ...p });

t.test('parseQuery: plain queries parsed, odd ones left to dns2, responses dropped', async (t) => {
  const q = parseQuery(encodeQuery('Web.Default.svc.cluster.local', 1, { id: 77, edns: 1232 }));
  t.ok(q && q !== DROP);
  if (q && q !== DROP) {
    t.equal(q.id, 77);
    t.equal(q.qtype, 1);
    t.equal(q.rd, true);
    t.same(q.edns, { size: 1232, version: 0, do: false });
    t.equal(wireNameToString(q.qname), 'web.default.svc.cluster.local');
  }
  t.equal(parseQuery(Buffer.alloc(5)), DROP, 'shorter than a header');
  const resp = encodeQuery('a.b', 1);
  resp[2] |= 0x80;
  t.equal(parseQuery(resp), DROP, 'QR set');
  const two = encodeQuery('a.b', 1);
  two.writeUInt16BE(2, 4);
  t.equal(parseQuery(two), undefined, 'two questions');
  t.equal(parseQuery(Buffer.concat([encodeQuery('a.b', 1), Buffer.from([0])])), undefined, 'trailing byte');
  const ptr = Buffer.concat([encodeQuery('', 1).subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]);
  t.equal(parseQuery(ptr), undefined, 'compression pointer in the question');
  const notify = encodeQuery('a.b', 6);
  notify[2] |= 4 << 3;
  t.equal(parseQuery(notify), undefined, 'opcode NOTIFY');
  t.equal(parseQuery(encodeQuery('a.b', 1).subarray(0, 16)), undefined, 'truncated question');
});

t.test('encodeAnswer + patch: decodes with dns2, echoes case, compresses, sets TC when too big', async (t) => {
  const name = 'web.default.svc.cluster.local';
  const enc = encodeAnswer(answer({ answer: [{ name, type: TYPE.A, ttl: 5, address: '127.96.0.1' }] }), { qname: nameToWire(name), qtype: 1, qclass: 1 });
  const q = parseQuery(encodeQuery('WEB.default.svc.cluster.local', 1, { id: 9 })) as Query;
  const out = patch(enc, q, 512);
  const p = Packet.parse(out);
  t.equal(p.header.id, 9);
  t.equal(p.header.aa, 1);
  t.equal(p.header.rd, 1);
  t.equal(p.answers[0].name, 'WEB.default.svc.cluster.local', 'owner points at the question: same case');
  t.equal(out.length, 12 + 31 + 4 + 2 + 10 + 4, 'owner compressed to a 2-byte pointer');
  const many = encodeAnswer(
    answer({ answer: Array.from({ length: 60 }, (_, i) => ({ name, type: TYPE.A, ttl: 5, address: `127.0.0.${i}` })) }),
    { qname: nameToWire(name), qtype: 1, qclass: 1 },
  );
  const tc = Packet.parse(patch(many, q, replyLimit(q, false)));
  t.equal(tc.header.tc, 1);
  t.equal(tc.answers.length, 0);
  t.equal(tc.questions.length, 1);
  t.equal(Packet.parse(patch(many, q, replyLimit(q, true))).answers.length, 60, 'TCP takes it all');
});

t.test('TXT strings over 255 bytes are split (dns2 would corrupt them)', async (t) => {
  const long = 'x'.repeat(300);
  t.same(txtChunks(long).map((c) => c.length), [255, 45]);
  const name = 'big.cluster.local';
  const enc = encodeAnswer(answer({ answer: [{ name, type: TYPE.TXT, ttl: 5, texts: [long, ''] }] }), { qname: nameToWire(name), qtype: TYPE.TXT, qclass: 1 });
  const p = Packet.parse(patch(enc, parseQuery(encodeQuery(name, TYPE.TXT)) as Query, 0xffff));
  t.same(p.errors, []);
  t.same((p.answers[0] as unknown as { data: string[] }).data, ['x'.repeat(255), 'x'.repeat(45), '']);
});

t.test('every record type round-trips through dns2', async (t) => {
  const name = 'a.cluster.local';
  const enc = encodeAnswer(
    answer({
      answer: [
        { name, type: TYPE.A, ttl: 1, address: '127.0.0.1' },
        { name, type: TYPE.AAAA, ttl: 2, address: 'fd00::1' },
        { name, type: TYPE.CNAME, ttl: 3, target: 'b.cluster.local' },
        { name, type: TYPE.PTR, ttl: 4, target: 'c.cluster.local' },
        { name, type: TYPE.NS, ttl: 5, target: 'ns.dns.cluster.local' },
        { name, type: TYPE.SRV, ttl: 6, priority: 0, weight: 50, port: 8080, target: 'web-0.a.cluster.local' },
      ],
      authority: [{ name: 'cluster.local', type: TYPE.SOA, ttl: 5, mname: 'ns.dns.cluster.local', rname: 'hostmaster.cluster.local', serial: 7, refresh: 7200, retry: 1800, expire: 86400, minimum: 5 }],
    }),
    { qname: nameToWire(name), qtype: TYPE.ANY, qclass: 1 },
  );
  const p = Packet.parse(patch(enc, parseQuery(encodeQuery(name, TYPE.ANY)) as Query, 0xffff));
  t.same(p.errors, []);
  const a = p.answers as unknown as Record<string, unknown>[];
  t.match(a, [
    { address: '127.0.0.1', ttl: 1 },
    { address: 'fd00::1' },
    { domain: 'b.cluster.local' },
    { domain: 'c.cluster.local' },
    { ns: 'ns.dns.cluster.local' },
    { priority: 0, weight: 50, port: 8080, target: 'web-0.a.cluster.local' },
  ]);
  t.match(p.authorities[0], { primary: 'ns.dns.cluster.local', admin: 'hostmaster.cluster.local', serial: 7, minimum: 5 });
  t.ok(enc.includes(nameToWire('web-0.a.cluster.local')), 'the SRV target is written uncompressed (RFC 2782)');
});

t.test('encoding refuses what it cannot write (the server turns that into SERVFAIL)', async (t) => {
  const qname = nameToWire('a.b');
  t.throws(() => encodeAnswer(answer({ answer: [{ name: 'a.b', type: TYPE.A, ttl: 5, address: 'fd00::1' }] }), { qname, qtype: 1, qclass: 1 }));
  t.throws(() => encodeAnswer(answer({ answer: [{ name: `${'x'.repeat(64)}.b`, type: TYPE.A, ttl: 5, address: '1.2.3.4' }] }), { qname, qtype: 1, qclass: 1 }));
  t.throws(() => nameToWire(Array.from({ length: 60 }, () => 'abcd').join('.')), /255/);
});

t.test('errorReply: BADVERS goes into the OPT, FORMERR without a question', async (t) => {
  const q = parseQuery(encodeQuery('a.cluster.local', 1, { id: 5, edns: 1232 })) as Query;
  const bad = Packet.parse(errorReply({ ...q, edns: { size: 1232, version: 1, do: false } }, RCODE.BADVERS));
  t.equal(bad.header.rcode, RCODE.BADVERS, 'dns2 merges the extended rcode');
  const form = Packet.parse(errorReply({ id: 5, opcode: 0, rd: false }, RCODE.FORMERR));
  t.equal(form.header.rcode, RCODE.FORMERR);
  t.equal(form.questions.length, 0);
  t.equal(form.header.qr, 1);
});

t.test('readName / parseReply: compression followed, loops and overruns rejected', async (t) => {
  const q = buildQuery({ id: 1, qname: nameToWire('x.example.com'), qtype: 1, qclass: 1 });
  // a reply: the question, then one A record whose owner is a pointer to the question
  const rr = Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]);
  const reply = Buffer.concat([q, rr]);
  reply[2] |= 0x80;
  reply.writeUInt16BE(1, 6);
  const parsed = parseReply(reply);
  t.same(parsed.answers, [{ name: 'x.example.com', type: 1, ttl: 60, address: '10.0.0.1' }]);
  const loop = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xc0, 12]);
  t.throws(() => readName(loop, 12), /loop/);
  t.throws(() => readName(Buffer.from([5, 97]), 0), /past the end/);
});

t.test('IP helpers: reverse names, dashed forms, canonical keys, loopback', async (t) => {
  t.equal(reverseName('127.96.0.10'), '10.0.96.127.in-addr.arpa');
  t.equal(ipFromReverse('10.0.96.127.in-addr.arpa'), '127.96.0.10');
  t.equal(ipFromReverse('0.96.127.in-addr.arpa'), undefined);
  t.equal(ipFromReverse(reverseName('fd00::1')!), canonicalIP('fd00::1'));
  t.equal(dashedIP('10.1.2.3'), '10-1-2-3');
  t.equal(dashedIP('fd00::'), 'fd00--0');
  t.equal(ipFromDashed('10-1-2-3'), '10.1.2.3');
  t.equal(ipFromDashed('fd00--0'), canonicalIP('fd00::'));
  t.equal(ipFromDashed('blah'), undefined);
  t.equal(canonicalIP('::ffff:1.2.3.4'), '0000:0000:0000:0000:0000:ffff:0102:0304');
  t.equal(canonicalIP('01.2.3.4'), undefined);
  t.equal(isLoopback('127.5.5.5'), true);
  t.equal(isLoopback('::1'), true);
  t.equal(isLoopback('10.0.0.1'), false);
});
