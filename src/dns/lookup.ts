/**
 * Kubernetes DNS lookup: question → answer over a read-only view of Services, Endpoints and Pods.
 * Pure: no sockets, no store, no dns2. Semantics follow the Kubernetes DNS-Based Service
 * Discovery specification 1.1.0, with CoreDNS's `kubernetes` plugin where the spec leaves room
 * (TTL, SOA on negative answers, NXDOMAIN vs NODATA, dashed endpoint names, SRV weights).
 *
 * Names are handled lower-case and without a trailing dot; the wire layer echoes the query's case.
 */
import { TYPE, RCODE, CLASS } from './records.js';
import type { Answer, RR, SoaRR } from './records.js';
import { canonicalIP, ipFromDashed, ipFromReverse, ipBytes } from './ip.js';

export interface DnsPort {
  /** lower-case; `''` for an unnamed port (no SRV by port name) */
  name: string;
  /** lower-case: `tcp`, `udp`, `sctp` */
  protocol: string;
  port: number;
}

export interface DnsEndpoint {
  ip: string;
  /** lower-case: the endpoint's `hostname`, or the dashed IP when it has none */
  hostname: string;
  ports: readonly DnsPort[];
}

/** One Service as DNS sees it: what its name answers, already filtered for readiness. */
export interface DnsService {
  namespace: string;
  name: string;
  kind: 'ClusterIP' | 'Headless' | 'ExternalName';
  /** the Service's cluster IPs (ClusterIP kind only) */
  clusterIPs: readonly string[];
  /** lower-case target without trailing dot (ExternalName kind only) */
  externalName: string;
  ports: readonly DnsPort[];
  /** addresses DNS publishes: ready ones, or all of them with `publishNotReadyAddresses` */
  endpoints: readonly DnsEndpoint[];
}

/**
 * What lookup reads. Implementations keep indexes current from informers; every method is a
 * map lookup. Names and namespaces are passed lower-case.
 */
export interface DnsView {
  /** false until every informer behind the view has listed: answer SERVFAIL meanwhile */
  synced(): boolean;
  /** SOA serial: changes whenever the data changes */
  serial(): number;
  service(namespace: string, name: string): DnsService | undefined;
  /** a namespace with at least one Service or Pod (so `<ns>.svc.<zone>` exists) */
  hasNamespace(namespace: string): boolean;
  /** names (relative to the zone, e.g. `web.default.svc`) whose PTR an address gets; IP in `canonicalIP` form */
  reverse(ip: string): readonly string[];
  /** a Pod in that namespace has that IP (`canonicalIP` form) */
  hasPodIP(namespace: string, ip: string): boolean;
}

export interface LookupOptions {
  /** lower-case, no leading/trailing dot: `cluster.local` */
  zone: string;
  ttl: number;
  /** the server's own address: glue for `ns.dns.<zone>` */
  nsAddress?: string;
  /** an upstream resolver exists: out-of-zone names are forwarded instead of refused */
  upstream: boolean;
}

/** The TTL CoreDNS gives `dns-version.<zone>` TXT. */
export const VERSION_TTL = 28800;
/** Kubernetes DNS schema version served at `dns-version.<zone>`. */
export const SCHEMA_VERSION = '1.1.0';
const MAX_CNAME_CHAIN = 10;

/** Answer one question. `name` is lower-case without trailing dot. */
export function lookup(view: DnsView, name: string, qtype: number, qclass: number, opts: LookupOptions): Answer {
  if (!view.synced()) return bare(RCODE.SERVFAIL, false);
  if (qclass !== CLASS.IN && qclass !== CLASS.ANY) return bare(RCODE.REFUSED, false);
  if (qtype === TYPE.AXFR || qtype === TYPE.IXFR) return bare(RCODE.REFUSED, false);
  const ctx = new Ctx(view, opts);
  if (ctx.inZone(name)) return ctx.zoneAnswer(name, qtype);
  const reverseZone = name === 'in-addr.arpa' || name.endsWith('.in-addr.arpa')
    ? 'in-addr.arpa'
    : name === 'ip6.arpa' || name.endsWith('.ip6.arpa')
      ? 'ip6.arpa'
      : undefined;
  if (reverseZone) return ctx.reverseAnswer(name, qtype, reverseZone);
  return opts.upstream ? { ...bare(RCODE.NOERROR, false), forward: true } : bare(RCODE.REFUSED, false);
}

function bare(rcode: number, authoritative: boolean): Answer {
  return { rcode, authoritative, answer: [], authority: [], additional: [] };
}

class Ctx {
  readonly #view: DnsView;
  readonly #o: LookupOptions;
  readonly #zone: string;

  constructor(view: DnsView, opts: LookupOptions) {
    this.#view = view;
    this.#o = opts;
    this.#zone = opts.zone;
  }

  inZone(name: string): boolean {
    return name === this.#zone || name.endsWith(`.${this.#zone}`);
  }

  soa(owner = this.#zone): SoaRR {
    const ttl = this.#o.ttl;
    return {
      name: owner,
      type: TYPE.SOA,
      ttl: Math.min(ttl, 300),
      mname: `ns.dns.${this.#zone}`,
      rname: `hostmaster.${this.#zone}`,
      serial: this.#view.serial() >>> 0,
      refresh: 7200,
      retry: 1800,
      expire: 86400,
      minimum: ttl,
    };
  }

  zoneAnswer(qname: string, qtype: number): Answer {
    const answer: RR[] = [];
    const seen = new Set<string>();
    let name = qname;
    for (;;) {
      const rrs = this.records(name);
      if (rrs === undefined) return this.negative(RCODE.NXDOMAIN, answer);
      const cname = rrs.find((r) => r.type === TYPE.CNAME);
      if (cname && cname.type === TYPE.CNAME && qtype !== TYPE.CNAME && qtype !== TYPE.ANY) {
        answer.push(cname);
        seen.add(name);
        const target = cname.target;
        // a loop or an over-long chain: stop at the CNAME, as CoreDNS does
        if (seen.has(target) || seen.size >= MAX_CNAME_CHAIN) return { ...bare(RCODE.NOERROR, true), answer };
        if (!this.inZone(target)) {
          const out: Answer = { ...bare(RCODE.NOERROR, true), answer };
          if (this.#o.upstream) out.chase = { name: target, type: qtype };
          return out;
        }
        name = target;
        continue;
      }
      const matched = qtype === TYPE.ANY ? rrs : rrs.filter((r) => r.type === qtype);
      if (matched.length === 0) return this.negative(RCODE.NOERROR, answer);
      answer.push(...matched);
      return { ...bare(RCODE.NOERROR, true), answer, additional: this.glue(matched) };
    }
  }

  /** NXDOMAIN or NODATA: authoritative, with the zone SOA in the authority section. */
  negative(rcode: number, answer: RR[], soaOwner?: string): Answer {
    return { ...bare(rcode, true), answer, authority: [this.soa(soaOwner)] };
  }

  /** A/AAAA for the in-zone targets of SRV and NS answers (the additional section). */
  glue(answers: readonly RR[]): RR[] {
    const out: RR[] = [];
    const done = new Set<string>();
    for (const r of answers) {
      if (r.type !== TYPE.SRV && r.type !== TYPE.NS) continue;
      if (done.has(r.target) || !this.inZone(r.target)) continue;
      done.add(r.target);
      for (const g of this.records(r.target) ?? []) if (g.type === TYPE.A || g.type === TYPE.AAAA) out.push(g);
    }
    return out;
  }

  /**
   * Every record at an in-zone name, of every type; `[]` for a name that exists with no
   * records (an empty non-terminal such as `<ns>.svc.<zone>`), undefined when it does not exist.
   */
  records(name: string): RR[] | undefined {
    const z = this.#zone;
    const ttl = this.#o.ttl;
    if (name === z) {
      const rrs: RR[] = [this.soa(), { name, type: TYPE.NS, ttl, target: `ns.dns.${z}` }];
      return rrs;
    }
    const rel = name.slice(0, -(z.length + 1)).split('.');
    const n = rel.length;
    const top = rel[n - 1];
    if (n === 1 && top === 'dns-version') {
      return [{ name, type: TYPE.TXT, ttl: VERSION_TTL, texts: [SCHEMA_VERSION] }];
    }
    if (top === 'dns') {
      if (n === 1) return [];
      if (n === 2 && rel[0] === 'ns') return this.addresses(name, this.#o.nsAddress ? [this.#o.nsAddress] : []);
      return undefined;
    }
    if (top === 'svc') {
      if (n === 1) return [];
      const ns = rel[n - 2];
      if (n === 2) return this.#view.hasNamespace(ns) ? [] : undefined;
      const svc = this.#view.service(ns, rel[n - 3]);
      if (!svc) return undefined;
      if (n === 3) return this.serviceRecords(name, svc);
      if (n === 4) {
        if (rel[0].startsWith('_')) return this.protoNodeExists(svc, rel[0].slice(1)) ? [] : undefined;
        return this.endpointRecords(name, svc, rel[0]);
      }
      if (n === 5 && rel[0].startsWith('_') && rel[1].startsWith('_')) {
        return this.srvRecords(name, svc, rel[0].slice(1), rel[1].slice(1));
      }
      return undefined;
    }
    if (top === 'pod') {
      if (n === 1) return [];
      const ns = rel[n - 2];
      if (n === 2) return this.#view.hasNamespace(ns) ? [] : undefined;
      if (n === 3) {
        const ip = ipFromDashed(rel[0]);
        if (!ip || !this.#view.hasPodIP(ns, ip)) return undefined;
        return this.addresses(name, [ip]);
      }
      return undefined;
    }
    return undefined;
  }

  addresses(name: string, ips: readonly string[]): RR[] {
    const ttl = this.#o.ttl;
    const out: RR[] = [];
    for (const ip of ips) {
      const b = ipBytes(ip);
      if (b) out.push({ name, type: b.length === 4 ? TYPE.A : TYPE.AAAA, ttl, address: ip });
    }
    return out;
  }

  serviceRecords(name: string, svc: DnsService): RR[] | undefined {
    const ttl = this.#o.ttl;
    if (svc.kind === 'ExternalName') {
      // an IP literal is no CNAME target (CoreDNS ignores it too)
      if (!svc.externalName || ipBytes(svc.externalName)) return undefined;
      return [{ name, type: TYPE.CNAME, ttl, target: svc.externalName }];
    }
    if (svc.kind === 'ClusterIP') {
      const rrs = this.addresses(name, svc.clusterIPs);
      const ports = svc.ports.filter((p) => p.port > 0);
      const weight = srvWeight(ports.length);
      const seen = new Set<string>();
      for (const p of ports) {
        const k = `${p.port}`;
        if (seen.has(k)) continue;
        seen.add(k);
        rrs.push({ name, type: TYPE.SRV, ttl, priority: 0, weight, port: p.port, target: name });
      }
      return rrs;
    }
    // headless: no published endpoints means the name does not exist (spec §2.4.1)
    if (svc.endpoints.length === 0) return undefined;
    const rrs = this.addresses(name, unique(svc.endpoints.map((e) => e.ip)));
    let count = 0;
    for (const e of svc.endpoints) count += e.ports.filter((p) => p.port > 0).length;
    const weight = srvWeight(count);
    const seen = new Set<string>();
    for (const e of svc.endpoints) {
      const target = `${e.hostname}.${name}`;
      for (const p of e.ports) {
        const k = `${target}|${p.port}`;
        if (p.port <= 0 || seen.has(k)) continue;
        seen.add(k);
        rrs.push({ name, type: TYPE.SRV, ttl, priority: 0, weight, port: p.port, target });
      }
    }
    return rrs;
  }

  endpointRecords(name: string, svc: DnsService, host: string): RR[] | undefined {
    if (svc.kind === 'ExternalName') return undefined;
    const ips = unique(svc.endpoints.filter((e) => e.hostname === host).map((e) => e.ip));
    return ips.length ? this.addresses(name, ips) : undefined;
  }

  protoNodeExists(svc: DnsService, proto: string): boolean {
    if (svc.kind === 'ExternalName') return false;
    if (svc.kind === 'ClusterIP') return svc.ports.some((p) => p.name !== '' && p.protocol === proto);
    return svc.endpoints.some((e) => e.ports.some((p) => p.name !== '' && p.protocol === proto));
  }

  srvRecords(name: string, svc: DnsService, port: string, proto: string): RR[] | undefined {
    if (svc.kind === 'ExternalName' || port === '') return undefined;
    const ttl = this.#o.ttl;
    const match = (p: DnsPort): boolean => p.name === port && p.protocol === proto && p.port > 0;
    const svcName = name.split('.').slice(2).join('.');
    const found: Array<{ target: string; port: number }> = [];
    if (svc.kind === 'ClusterIP') {
      for (const p of svc.ports) if (match(p)) found.push({ target: svcName, port: p.port });
    } else {
      for (const e of svc.endpoints) {
        for (const p of e.ports) if (match(p)) found.push({ target: `${e.hostname}.${svcName}`, port: p.port });
      }
    }
    if (found.length === 0) return undefined;
    const weight = srvWeight(found.length);
    const seen = new Set<string>();
    const rrs: RR[] = [];
    for (const f of found) {
      const k = `${f.target}|${f.port}`;
      if (seen.has(k)) continue;
      seen.add(k);
      rrs.push({ name, type: TYPE.SRV, ttl, priority: 0, weight, port: f.port, target: f.target });
    }
    return rrs;
  }

  reverseAnswer(name: string, qtype: number, zone: string): Answer {
    const ip = ipFromReverse(name);
    const names = ip ? this.#view.reverse(canonicalIP(ip) ?? ip) : [];
    if (names.length === 0) {
      if (this.#o.upstream) return { ...bare(RCODE.NOERROR, false), forward: true };
      return this.negative(RCODE.NXDOMAIN, [], zone);
    }
    if (qtype !== TYPE.PTR && qtype !== TYPE.ANY) return this.negative(RCODE.NOERROR, [], zone);
    const ttl = this.#o.ttl;
    const answer: RR[] = names.map((n) => ({ name, type: TYPE.PTR, ttl, target: `${n}.${this.#zone}` }));
    return { ...bare(RCODE.NOERROR, true), answer };
  }
}

/** CoreDNS's SRV weight: 100 shared by n records, at least 1. */
function srvWeight(n: number): number {
  return n > 0 ? Math.max(1, Math.floor(100 / n)) : 100;
}

function unique<T>(xs: readonly T[]): T[] {
  return [...new Set(xs)];
}
