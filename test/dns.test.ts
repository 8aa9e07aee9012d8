import t from 'tap';
import type { Service } from '../src/api/types.js';
import { ask, dig, endpoints, pod, service, setPodIP, startDns, waitFor } from './dns-helpers.js';
import type { DnsFixture, Teardown } from './dns-helpers.js';

const Z = 'cluster.local';
const SOA = `${Z} 5 SOA ns.dns.${Z} hostmaster.${Z} 5`;

/** The fixture: every record kind of the spec, written through the real store. */
async function fixture(t: Teardown): Promise<DnsFixture & { ip: (name: string) => string }> {
  const f = await startDns(t);
  const { store } = f;
  const ns = 'testns';
  await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  await store.create(service(ns, 'svc1', { selector: { app: 'a' }, ports: [{ name: 'http', port: 80 }, { name: 'dns', protocol: 'UDP', port: 53 }] }));
  await store.create(endpoints(ns, 'svc1', [{ addresses: [{ ip: '127.244.0.40' }], ports: [{ name: 'http', port: 8080 }, { name: 'dns', protocol: 'UDP', port: 5353 }] }]));
  await store.create(service(ns, 'svcempty', { selector: { app: 'none' }, ports: [{ name: 'http', port: 80 }] }));
  await store.create(service(ns, 'hdls1', { clusterIP: 'None', selector: { app: 'h' }, ports: [{ name: 'http', port: 80 }] }));
  await store.create(
    endpoints(ns, 'hdls1', [
      {
        addresses: [{ ip: '127.244.0.10', hostname: 'hdls1-0' }, { ip: '127.244.0.11' }],
        notReadyAddresses: [{ ip: '127.244.0.12' }],
        ports: [{ name: 'http', port: 8080 }],
      },
    ]),
  );
  await store.create(service(ns, 'hdlsnotready', { clusterIP: 'None', publishNotReadyAddresses: true, selector: { app: 'n' }, ports: [{ name: 'http', port: 80 }] }));
  await store.create(endpoints(ns, 'hdlsnotready', [{ notReadyAddresses: [{ ip: '127.244.0.20', hostname: 'nr-0' }], ports: [{ name: 'http', port: 8080 }] }]));
  await store.create(service(ns, 'hdlsempty', { clusterIP: 'None', selector: { app: 'e' }, ports: [{ name: 'http', port: 80 }] }));
  await store.create(endpoints(ns, 'hdlsempty', [{ notReadyAddresses: [{ ip: '127.244.0.21' }], ports: [{ name: 'http', port: 8080 }] }]));
  await store.create(service(ns, 'ext', { type: 'ExternalName', externalName: `svc1.testns.svc.${Z}` }));
  await store.create(service(ns, 'extout', { type: 'ExternalName', externalName: 'example.com' }));
  await store.create(pod(ns, 'p1'));
  await setPodIP(store, ns, 'p1', '127.244.0.30');
  const ips = new Map<string, string>();
  for (const name of ['svc1', 'svcempty']) ips.set(name, (await store.get<Service>('Service', ns, name)).spec!.clusterIP!);
  // the informers have seen the last write once the pod record answers
  await waitFor(async () => (await ask(f.port, `127-244-0-30.testns.pod.${Z}`, 'A')).rcode === 'NOERROR', 3000, 'fixture visible');
  return { ...f, ip: (name) => ips.get(name)! };
}

t.test('query → answer table over the fixture (UDP)', async (t) => {
  const f = await fixture(t);
  const svc1 = f.ip('svc1');
  const ptr = (ip: string): string => `${ip.split('.').reverse().join('.')}.in-addr.arpa`;
  const s = (n: string): string => `${n}.testns.svc.${Z}`;
  type Case = [name: string, type: string, rcode: string, answer: string[], soa?: string, additional?: string[]];
  const cases: Case[] = [
    [s('svc1'), 'A', 'NOERROR', [`${s('svc1')} 5 A ${svc1}`]],
    [s('svc1'), 'AAAA', 'NOERROR', [], SOA],
    [s('svc1'), 'TXT', 'NOERROR', [], SOA],
    [`_http._tcp.${s('svc1')}`, 'SRV', 'NOERROR', [`_http._tcp.${s('svc1')} 5 SRV 0 100 80 ${s('svc1')}`], undefined, [`${s('svc1')} 5 A ${svc1}`]],
    [`_dns._udp.${s('svc1')}`, 'SRV', 'NOERROR', [`_dns._udp.${s('svc1')} 5 SRV 0 100 53 ${s('svc1')}`], undefined, [`${s('svc1')} 5 A ${svc1}`]],
    [`_http._udp.${s('svc1')}`, 'SRV', 'NXDOMAIN', [], SOA],
    [`_nope._tcp.${s('svc1')}`, 'SRV', 'NXDOMAIN', [], SOA],
    [`_tcp.${s('svc1')}`, 'A', 'NOERROR', [], SOA],
    [`127-244-0-40.${s('svc1')}`, 'A', 'NOERROR', [`127-244-0-40.${s('svc1')} 5 A 127.244.0.40`]],
    [s('svcempty'), 'A', 'NOERROR', [`${s('svcempty')} 5 A ${f.ip('svcempty')}`]],
    [s('hdls1'), 'A', 'NOERROR', [`${s('hdls1')} 5 A 127.244.0.10`, `${s('hdls1')} 5 A 127.244.0.11`]],
    [`hdls1-0.${s('hdls1')}`, 'A', 'NOERROR', [`hdls1-0.${s('hdls1')} 5 A 127.244.0.10`]],
    [`127-244-0-11.${s('hdls1')}`, 'A', 'NOERROR', [`127-244-0-11.${s('hdls1')} 5 A 127.244.0.11`]],
    [`127-244-0-12.${s('hdls1')}`, 'A', 'NXDOMAIN', [], SOA],
    [`bogus.${s('hdls1')}`, 'A', 'NXDOMAIN', [], SOA],
    [
      `_http._tcp.${s('hdls1')}`,
      'SRV',
      'NOERROR',
      [`_http._tcp.${s('hdls1')} 5 SRV 0 50 8080 127-244-0-11.${s('hdls1')}`, `_http._tcp.${s('hdls1')} 5 SRV 0 50 8080 hdls1-0.${s('hdls1')}`],
      undefined,
      [`127-244-0-11.${s('hdls1')} 5 A 127.244.0.11`, `hdls1-0.${s('hdls1')} 5 A 127.244.0.10`],
    ],
    [s('hdlsnotready'), 'A', 'NOERROR', [`${s('hdlsnotready')} 5 A 127.244.0.20`]],
    [`nr-0.${s('hdlsnotready')}`, 'A', 'NOERROR', [`nr-0.${s('hdlsnotready')} 5 A 127.244.0.20`]],
    [s('hdlsempty'), 'A', 'NXDOMAIN', [], SOA],
    [s('ext'), 'A', 'NOERROR', [`${s('ext')} 5 CNAME ${s('svc1')}`, `${s('svc1')} 5 A ${svc1}`]],
    [s('ext'), 'CNAME', 'NOERROR', [`${s('ext')} 5 CNAME ${s('svc1')}`]],
    [s('extout'), 'A', 'NOERROR', [`${s('extout')} 5 CNAME example.com`]],
    [`_http._tcp.${s('ext')}`, 'SRV', 'NXDOMAIN', [], SOA],
    [`a.${s('ext')}`, 'A', 'NXDOMAIN', [], SOA],
    [ptr(svc1), 'PTR', 'NOERROR', [`${ptr(svc1)} 5 PTR ${s('svc1')}`]],
    [ptr('127.244.0.10'), 'PTR', 'NOERROR', [`${ptr('127.244.0.10')} 5 PTR hdls1-0.${s('hdls1')}`]],
    [ptr('127.244.0.40'), 'PTR', 'NOERROR', [`${ptr('127.244.0.40')} 5 PTR 127-244-0-40.${s('svc1')}`]],
    [ptr('127.1.2.3'), 'PTR', 'NXDOMAIN', [], `in-addr.arpa 5 SOA ns.dns.${Z} hostmaster.${Z} 5`],
    [`dns-version.${Z}`, 'TXT', 'NOERROR', [`dns-version.${Z} 28800 TXT ["1.1.0"]`]],
    [`127-244-0-30.testns.pod.${Z}`, 'A', 'NOERROR', [`127-244-0-30.testns.pod.${Z} 5 A 127.244.0.30`]],
    [`127-244-0-31.testns.pod.${Z}`, 'A', 'NXDOMAIN', [], SOA],
    [`blah.testns.pod.${Z}`, 'A', 'NXDOMAIN', [], SOA],
    [`nope.testns.svc.${Z}`, 'A', 'NXDOMAIN', [], SOA],
    [`testns.svc.${Z}`, 'A', 'NOERROR', [], SOA],
    [`nons.svc.${Z}`, 'A', 'NXDOMAIN', [], SOA],
    [`svc.${Z}`, 'A', 'NOERROR', [], SOA],
    [`foo.${Z}`, 'A', 'NXDOMAIN', [], SOA],
    [`a.b.${s('svc1')}`, 'A', 'NXDOMAIN', [], SOA],
    [Z, 'SOA', 'NOERROR', [SOA]],
    [Z, 'NS', 'NOERROR', [`${Z} 5 NS ns.dns.${Z}`], undefined, [`ns.dns.${Z} 5 A 127.0.0.1`]],
    [Z, 'A', 'NOERROR', [], SOA],
    ['example.com', 'A', 'REFUSED', []],
  ];
  for (const [name, type, rcode, answer, soa, additional] of cases) {
    const r = await ask(f.port, name, type, { edns: 1232 });
    const label = `${name} ${type}`;
    t.equal(r.rcode, rcode, `${label}: rcode`);
    t.same([...r.answer].sort(), [...answer].sort(), `${label}: answer`);
    t.same(r.authority, soa ? [soa.replace(/ \d+$/, ' 5')] : [], `${label}: authority`);
    if (additional) t.same([...r.additional].sort(), [...additional].sort(), `${label}: additional`);
    t.equal(r.aa, rcode !== 'REFUSED', `${label}: authoritative`);
    t.ok(r.opt, `${label}: OPT echoed`);
  }
});

t.test('names are case-insensitive and answers echo the query case', async (t) => {
  const f = await fixture(t);
  const r = await ask(f.port, 'SvC1.TeStNs.SvC.cLuStEr.LoCaL', 'A');
  t.equal(r.rcode, 'NOERROR');
  t.same(r.answer, [`SvC1.TeStNs.SvC.cLuStEr.LoCaL 5 A ${f.ip('svc1')}`]);
  t.equal(r.question, 'SvC1.TeStNs.SvC.cLuStEr.LoCaL A');
  // the cached answer serves another spelling with that spelling
  const r2 = await ask(f.port, 'SVC1.testns.svc.cluster.local', 'A');
  t.same(r2.answer, [`SVC1.testns.svc.cluster.local 5 A ${f.ip('svc1')}`]);
});

t.test('a Service update is visible at once; a deleted Service is NXDOMAIN', async (t) => {
  const f = await startDns(t);
  const name = 'web.default.svc.cluster.local';
  t.equal((await ask(f.port, name, 'A')).rcode, 'NXDOMAIN');
  await f.store.create(service('default', 'web', { ports: [{ name: 'http', port: 80 }] }));
  await waitFor(async () => (await ask(f.port, name, 'A')).rcode === 'NOERROR', 2000, 'service visible');
  t.equal((await ask(f.port, `_http._tcp.${name}`, 'SRV')).answer.length, 1);
  // rename the port: the SRV name moves with it
  await f.store.mutate<Service>('Service', 'default', 'web', (s) => {
    s.spec!.ports = [{ name: 'web', protocol: 'TCP', port: 8081, targetPort: 8081 }];
  });
  await waitFor(async () => (await ask(f.port, `_web._tcp.${name}`, 'SRV')).rcode === 'NOERROR', 2000, 'renamed port visible');
  t.same((await ask(f.port, `_web._tcp.${name}`, 'SRV')).answer, [`_web._tcp.${name} 5 SRV 0 100 8081 ${name}`]);
  t.equal((await ask(f.port, `_http._tcp.${name}`, 'SRV')).rcode, 'NXDOMAIN');
  // headless endpoints coming and going
  await f.store.create(service('default', 'h', { clusterIP: 'None', ports: [{ name: 'http', port: 80 }] }));
  const h = 'h.default.svc.cluster.local';
  t.equal((await ask(f.port, h, 'A')).rcode, 'NXDOMAIN', 'headless without endpoints');
  await f.store.create(endpoints('default', 'h', [{ addresses: [{ ip: '127.244.1.1' }], ports: [{ name: 'http', port: 80 }] }]));
  await waitFor(async () => (await ask(f.port, h, 'A')).answer.length === 1, 2000, 'endpoint visible');
  await f.store.delete('Service', 'default', 'web');
  await waitFor(async () => (await ask(f.port, name, 'A')).rcode === 'NXDOMAIN', 2000, 'deleted service gone');
  t.pass('deleted service answers NXDOMAIN');
});

t.test('end to end with dig over UDP and TCP', async (t) => {
  const f = await fixture(t);
  const name = `svc1.testns.svc.${Z}`;
  const udp = await dig(f.port, [name, 'A', '+norec']);
  t.match(udp, /status: NOERROR/);
  t.match(udp, /flags: qr aa;/, 'authoritative, no recursion offered');
  t.match(udp, new RegExp(`${name.replace(/\./g, '\\.')}\\.\\s+5\\s+IN\\s+A\\s+${f.ip('svc1').replace(/\./g, '\\.')}`));
  t.match(udp, /EDNS: version: 0/, 'OPT echoed');
  const tcp = await dig(f.port, [name, 'A', '+tcp', '+short']);
  t.equal(tcp.trim(), f.ip('svc1'));
  const srv = await dig(f.port, [`_http._tcp.hdls1.testns.svc.${Z}`, 'SRV', '+tcp']);
  t.match(srv, /ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 3/, 'two SRV, two glue A + OPT');
  const nx = await dig(f.port, [`nope.testns.svc.${Z}`, 'A']);
  t.match(nx, /status: NXDOMAIN/);
  t.match(nx, /AUTHORITY: 1/);
  const rev = await dig(f.port, ['-x', f.ip('svc1'), '+short']);
  t.equal(rev.trim(), `${name}.`);
  const txt = await dig(f.port, [`dns-version.${Z}`, 'TXT', '+short']);
  t.equal(txt.trim(), '"1.1.0"');
  const refused = await dig(f.port, ['example.com', 'A']);
  t.match(refused, /status: REFUSED/);
});

t.test('large answers: TC over UDP, complete over TCP, EDNS size honoured', async (t) => {
  const f = await startDns(t);
  await f.store.create(service('default', 'big', { clusterIP: 'None', ports: [{ name: 'http', port: 80 }] }));
  const addresses = Array.from({ length: 60 }, (_, i) => ({ ip: `127.244.2.${i + 1}` }));
  await f.store.create(endpoints('default', 'big', [{ addresses, ports: [{ name: 'http', port: 80 }] }]));
  const name = 'big.default.svc.cluster.local';
  await waitFor(async () => (await ask(f.port, name, 'A', { tcp: true })).answer.length === 60, 2000, 'endpoints visible');
  const plain = await ask(f.port, name, 'A');
  t.equal(plain.tc, true, 'no EDNS: over 512 bytes → TC');
  t.equal(plain.answer.length, 0);
  const edns = await ask(f.port, name, 'A', { edns: 4096 });
  t.equal(edns.tc, false, 'EDNS 4096: fits');
  t.equal(edns.answer.length, 60);
  const small = await ask(f.port, name, 'A', { edns: 600 });
  t.equal(small.tc, true, 'EDNS 600: does not fit');
  t.ok(small.opt, 'TC reply still carries the OPT');
  const out = await dig(f.port, [name, 'A', '+noedns']);
  t.match(out, /ANSWER: 60/, 'dig retried over TCP and got every record');
});
