import t from 'tap';
import { lookup } from '../../src/dns/lookup.js';
import type { DnsService, DnsView, LookupOptions } from '../../src/dns/lookup.js';
import { TYPE, RCODE, CLASS } from '../../src/dns/records.js';
import type { Answer, RR } from '../../src/dns/records.js';
import { toDnsService } from '../../src/dns/view.js';
import { canonicalIP } from '../../src/dns/ip.js';

/** A hand-made view: what lookup reads, with nothing behind it. */
function view(services: DnsService[], o: { synced?: boolean; pods?: string[] } = {}): DnsView {
  const byKey = new Map(services.map((s) => [`${s.namespace}/${s.name}`, s]));
  const rev = new Map<string, string[]>();
  for (const s of services) {
    for (const ip of s.clusterIPs) rev.set(canonicalIP(ip)!, [...(rev.get(canonicalIP(ip)!) ?? []), `${s.name}.${s.namespace}.svc`]);
  }
  return {
    synced: () => o.synced ?? true,
    serial: () => 42,
    service: (ns, name) => byKey.get(`${ns}/${name}`),
    hasNamespace: (ns) => services.some((s) => s.namespace === ns),
    reverse: (ip) => rev.get(ip) ?? [],
    hasPodIP: (ns, ip) => (o.pods ?? []).includes(`${ns}/${ip}`),
  };
}

const svc = (name: string, p: Partial<DnsService>): DnsService => ({
  namespace: 'ns',
  name,
  kind: 'ClusterIP',
  clusterIPs: [],
  externalName: '',
  ports: [],
  endpoints: [],
  ...p,
});

const opts: LookupOptions = { zone: 'cluster.local', ttl: 5, nsAddress: '127.0.0.1', upstream: false };
const show = (rrs: RR[]): string[] =>
  rrs.map((r) => {
    switch (r.type) {
      case TYPE.A:
      case TYPE.AAAA:
        return `${r.name} ${r.type === TYPE.A ? 'A' : 'AAAA'} ${r.address}`;
      case TYPE.CNAME:
      case TYPE.PTR:
      case TYPE.NS:
        return `${r.name} ${r.type} ${r.target}`;
      case TYPE.SRV:
        return `${r.name} SRV ${r.weight} ${r.port} ${r.target}`;
      case TYPE.TXT:
        return `${r.name} TXT ${r.texts.join(',')}`;
      case TYPE.SOA:
        return `${r.name} SOA ${r.serial} ${r.minimum}`;
    }
  });
const ask = (v: DnsView, name: string, type: number, o: LookupOptions = opts, qclass: number = CLASS.IN): Answer => lookup(v, name, type, qclass, o);

t.test('SERVFAIL until synced, then answers', async (t) => {
  const s = [svc('a', { clusterIPs: ['127.96.0.1'] })];
  t.equal(ask(view(s, { synced: false }), 'a.ns.svc.cluster.local', TYPE.A).rcode, RCODE.SERVFAIL);
  t.equal(ask(view(s, { synced: false }), 'a.ns.svc.cluster.local', TYPE.A).authoritative, false);
  t.equal(ask(view(s), 'a.ns.svc.cluster.local', TYPE.A).rcode, RCODE.NOERROR);
});

t.test('dual-stack and IPv6 services', async (t) => {
  const v = view([svc('d', { clusterIPs: ['127.96.0.2', 'fd00::2'], ports: [{ name: 'http', protocol: 'tcp', port: 80 }] })]);
  t.same(show(ask(v, 'd.ns.svc.cluster.local', TYPE.A).answer), ['d.ns.svc.cluster.local A 127.96.0.2']);
  t.same(show(ask(v, 'd.ns.svc.cluster.local', TYPE.AAAA).answer), ['d.ns.svc.cluster.local AAAA fd00::2']);
  const srv = ask(v, '_http._tcp.d.ns.svc.cluster.local', TYPE.SRV);
  t.same(show(srv.additional).sort(), ['d.ns.svc.cluster.local A 127.96.0.2', 'd.ns.svc.cluster.local AAAA fd00::2']);
  const rev = ask(v, '2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa', TYPE.PTR);
  t.same(show(rev.answer), [`2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa ${TYPE.PTR} d.ns.svc.cluster.local`]);
});

t.test('CNAME chains: in-zone chase, loops stop, NXDOMAIN at the end of a chain', async (t) => {
  const v = view([
    svc('target', { clusterIPs: ['127.96.0.3'] }),
    svc('e1', { kind: 'ExternalName', externalName: 'e2.ns.svc.cluster.local' }),
    svc('e2', { kind: 'ExternalName', externalName: 'target.ns.svc.cluster.local' }),
    svc('loop1', { kind: 'ExternalName', externalName: 'loop2.ns.svc.cluster.local' }),
    svc('loop2', { kind: 'ExternalName', externalName: 'loop1.ns.svc.cluster.local' }),
    svc('dangling', { kind: 'ExternalName', externalName: 'gone.ns.svc.cluster.local' }),
    svc('ip', { kind: 'ExternalName', externalName: '10.0.0.1' }),
  ]);
  const chain = ask(v, 'e1.ns.svc.cluster.local', TYPE.A);
  t.same(show(chain.answer), [
    `e1.ns.svc.cluster.local ${TYPE.CNAME} e2.ns.svc.cluster.local`,
    `e2.ns.svc.cluster.local ${TYPE.CNAME} target.ns.svc.cluster.local`,
    'target.ns.svc.cluster.local A 127.96.0.3',
  ]);
  const loop = ask(v, 'loop1.ns.svc.cluster.local', TYPE.A);
  t.equal(loop.rcode, RCODE.NOERROR);
  t.equal(loop.answer.length, 2, 'each CNAME once, then stop');
  const dangling = ask(v, 'dangling.ns.svc.cluster.local', TYPE.A);
  t.equal(dangling.rcode, RCODE.NXDOMAIN, 'rcode of the last name in the chain (RFC 6604)');
  t.equal(dangling.answer.length, 1);
  t.equal(dangling.authority[0]?.type, TYPE.SOA);
  t.equal(ask(v, 'ip.ns.svc.cluster.local', TYPE.A).rcode, RCODE.NXDOMAIN, 'an IP literal is no CNAME target');
});

t.test('upstream: out-of-zone forwarded, ExternalName chased; without it refused / CNAME alone', async (t) => {
  const v = view([svc('ext', { kind: 'ExternalName', externalName: 'example.com' })]);
  const up = { ...opts, upstream: true };
  t.equal(ask(v, 'example.com', TYPE.A).rcode, RCODE.REFUSED);
  t.equal(ask(v, 'example.com', TYPE.A, up).forward, true);
  t.equal(ask(v, '9.9.9.9.in-addr.arpa', TYPE.PTR).rcode, RCODE.NXDOMAIN, 'unknown reverse name without upstream');
  t.equal(ask(v, '9.9.9.9.in-addr.arpa', TYPE.PTR, up).forward, true, 'unknown reverse name with upstream');
  t.same(ask(v, 'ext.ns.svc.cluster.local', TYPE.A).chase, undefined);
  t.same(ask(v, 'ext.ns.svc.cluster.local', TYPE.A, up).chase, { name: 'example.com', type: TYPE.A });
  t.same(ask(v, 'ext.ns.svc.cluster.local', TYPE.CNAME, up).chase, undefined, 'a CNAME question is answered by the CNAME');
});

t.test('zone transfers and other classes are refused; ANY returns every record', async (t) => {
  const v = view([svc('a', { clusterIPs: ['127.96.0.1'], ports: [{ name: 'http', protocol: 'tcp', port: 80 }] })]);
  t.equal(ask(v, 'cluster.local', TYPE.AXFR).rcode, RCODE.REFUSED);
  t.equal(ask(v, 'cluster.local', TYPE.IXFR).rcode, RCODE.REFUSED);
  t.equal(ask(v, 'a.ns.svc.cluster.local', TYPE.A, opts, 3).rcode, RCODE.REFUSED, 'class CH');
  t.same(show(ask(v, 'a.ns.svc.cluster.local', TYPE.ANY).answer), ['a.ns.svc.cluster.local A 127.96.0.1', 'a.ns.svc.cluster.local SRV 100 80 a.ns.svc.cluster.local']);
});

t.test('SOA: minimum is the TTL, TTL capped at 300, serial from the view', async (t) => {
  const v = view([]);
  const r = ask(v, 'nope.ns.svc.cluster.local', TYPE.A, { ...opts, ttl: 600 });
  t.same(show(r.authority), ['cluster.local SOA 42 600']);
  t.equal(r.authority[0].ttl, 300);
});

t.test('pod records need a pod with that IP in that namespace', async (t) => {
  const v = view([svc('a', {})], { pods: ['ns/127.244.0.9', 'ns/fd00:0000:0000:0000:0000:0000:0000:0009'] });
  t.same(show(ask(v, '127-244-0-9.ns.pod.cluster.local', TYPE.A).answer), ['127-244-0-9.ns.pod.cluster.local A 127.244.0.9']);
  t.equal(ask(v, '127-244-0-9.ns.pod.cluster.local', TYPE.AAAA).rcode, RCODE.NOERROR, 'NODATA for the other family');
  t.equal(ask(v, 'fd00--9.ns.pod.cluster.local', TYPE.AAAA).answer.length, 1, 'IPv6 dashed form');
  t.equal(ask(v, '127-244-0-9.other.pod.cluster.local', TYPE.A).rcode, RCODE.NXDOMAIN);
  t.equal(ask(v, '127-244-0-300.ns.pod.cluster.local', TYPE.A).rcode, RCODE.NXDOMAIN);
});

t.test('headless SRV: N endpoints × M named ports, weights, duplicates by (target, port)', async (t) => {
  const ports = [{ name: 'http', protocol: 'tcp', port: 8080 }, { name: 'metrics', protocol: 'tcp', port: 9090 }, { name: '', protocol: 'tcp', port: 7000 }];
  const v = view([
    svc('h', {
      kind: 'Headless',
      endpoints: [
        { ip: '127.244.0.1', hostname: 'web-0', ports },
        { ip: '127.244.0.2', hostname: 'web-1', ports },
        { ip: '127.244.0.3', hostname: 'web-1', ports },
      ],
    }),
  ]);
  const r = ask(v, '_http._tcp.h.ns.svc.cluster.local', TYPE.SRV);
  t.same(show(r.answer), ['_http._tcp.h.ns.svc.cluster.local SRV 33 8080 web-0.h.ns.svc.cluster.local', '_http._tcp.h.ns.svc.cluster.local SRV 33 8080 web-1.h.ns.svc.cluster.local']);
  t.same(show(r.additional), ['web-0.h.ns.svc.cluster.local A 127.244.0.1', 'web-1.h.ns.svc.cluster.local A 127.244.0.2', 'web-1.h.ns.svc.cluster.local A 127.244.0.3']);
  t.equal(ask(v, 'web-1.h.ns.svc.cluster.local', TYPE.A).answer.length, 2, 'a shared hostname answers both IPs');
  t.equal(ask(v, '_._tcp.h.ns.svc.cluster.local', TYPE.SRV).rcode, RCODE.NXDOMAIN, 'unnamed ports have no SRV name');
  t.equal(ask(v, '_http._tcp.h.ns.svc.cluster.local', TYPE.A).rcode, RCODE.NOERROR, 'SRV name, other type: NODATA');
});

t.test('toDnsService: readiness, publishNotReadyAddresses, the legacy annotation, hostnames', async (t) => {
  const base = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'S', namespace: 'ns' } } as const;
  const ep = {
    subsets: [
      {
        addresses: [{ ip: '127.244.0.1', hostname: 'Web-0' }],
        notReadyAddresses: [{ ip: '127.244.0.2', hostname: 'not_a_label' }],
        ports: [{ name: 'HTTP', port: 80 }],
      },
    ],
  };
  const plain = toDnsService({ ...base, spec: { clusterIP: 'None' } }, ep);
  t.same(plain.endpoints.map((e) => `${e.hostname}=${e.ip}`), ['web-0=127.244.0.1']);
  t.same(plain.endpoints[0].ports, [{ name: 'http', protocol: 'tcp', port: 80 }]);
  t.equal(plain.name, 's');
  const all = toDnsService({ ...base, spec: { clusterIP: 'None', publishNotReadyAddresses: true } }, ep);
  t.same(all.endpoints.map((e) => `${e.hostname}=${e.ip}`), ['web-0=127.244.0.1', '127-244-0-2=127.244.0.2']);
  const legacy = toDnsService({ ...base, metadata: { ...base.metadata, annotations: { 'service.alpha.kubernetes.io/tolerate-unready-endpoints': 'true' } }, spec: { clusterIP: 'None' } }, ep);
  t.equal(legacy.endpoints.length, 2);
  const ext = toDnsService({ ...base, spec: { type: 'ExternalName', externalName: 'Example.COM.' } }, undefined);
  t.equal(ext.externalName, 'example.com');
  const bad = toDnsService({ ...base, spec: { clusterIP: 'not-an-ip' } }, { subsets: [{ addresses: [{ ip: 'garbage' }] }] });
  t.same(bad.clusterIPs, [], 'invalid IPs never become records');
  t.same(bad.endpoints, []);
});
