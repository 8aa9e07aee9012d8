import net from 'node:net';

/**
 * `loadBalancerSourceRanges` of one Service: which client addresses may use its load-balancer
 * portals. Built once per change of the ranges; `allows` is a lookup in a `net.BlockList`.
 * An IPv4-mapped IPv6 client (`::ffff:a.b.c.d`) is checked as the IPv4 address it is.
 */
export class SourceRanges {
  /** the ranges as given (normalised `a.b.c.d/n`), for logs and equality */
  readonly ranges: readonly string[];
  readonly #list = new net.BlockList();

  constructor(ranges: readonly string[]) {
    const ok: string[] = [];
    for (const r of ranges) {
      const c = parseRange(r);
      if (!c) continue;
      this.#list.addSubnet(c.network, c.prefix, c.family);
      ok.push(`${c.network}/${c.prefix}`);
    }
    this.ranges = ok;
  }

  allows(address: string | undefined): boolean {
    if (!address) return false;
    const a = address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
    const family = net.isIPv4(a) ? 'ipv4' : net.isIPv6(a) ? 'ipv6' : undefined;
    return family !== undefined && this.#list.check(a, family);
  }
}

/**
 * The ranges a Service restricts its load-balancer portals to: `spec.loadBalancerSourceRanges`,
 * else the `service.beta.kubernetes.io/load-balancer-source-ranges` annotation (comma
 * separated), as upstream's `GetLoadBalancerSourceRanges`. Only for type LoadBalancer; entries
 * are trimmed; an empty result means "every source".
 */
export function loadBalancerSourceRanges(svc: {
  metadata?: { annotations?: Record<string, string> };
  spec?: { type?: string; loadBalancerSourceRanges?: string[] };
}): string[] {
  if (svc.spec?.type !== 'LoadBalancer') return [];
  const field = (svc.spec.loadBalancerSourceRanges ?? []).map((r) => r.trim()).filter(Boolean);
  const raw = field.length ? field : (svc.metadata?.annotations?.[SOURCE_RANGES_ANNOTATION] ?? '').split(',');
  const out = new Set<string>();
  for (const r of raw) {
    const c = parseRange(r.trim());
    if (c) out.add(`${c.network}/${c.prefix}`);
  }
  return [...out].sort();
}

export const SOURCE_RANGES_ANNOTATION = 'service.beta.kubernetes.io/load-balancer-source-ranges';

function parseRange(r: string): { network: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(r.trim());
  if (!m) return undefined;
  const ip = m[1]!;
  const prefix = Number(m[2]);
  if (net.isIPv4(ip) && prefix <= 32) return { network: ip, prefix, family: 'ipv4' };
  if (net.isIPv6(ip) && prefix <= 128) return { network: ip.toLowerCase(), prefix, family: 'ipv6' };
  return undefined;
}
