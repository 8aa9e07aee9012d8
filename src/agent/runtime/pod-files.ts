import type { Pod, PodSpec } from '../../api/types.js';

/**
 * A pod's `/etc/resolv.conf` as the kubelet writes it for `dnsPolicy: ClusterFirst`: the
 * cluster DNS Service's ClusterIP, the pod namespace's search list, ndots 5. `dnsConfig`
 * nameservers, searches and options are appended; `dnsPolicy: None` uses `dnsConfig` alone.
 * `hostResolv` (the node's own file) is what `Default` and host-network pods get.
 */
export function resolvConf(o: { pod: Pod; clusterDomain: string; nameserver: string | undefined; hostResolv: string }): string {
  const spec: Partial<PodSpec> = o.pod.spec ?? {};
  const policy = spec.dnsPolicy ?? 'ClusterFirst';
  const cfg = spec.dnsConfig ?? {};
  const clusterFirst = policy === 'ClusterFirstWithHostNet' || (policy === 'ClusterFirst' && !spec.hostNetwork);
  if (policy === 'Default' || (!clusterFirst && policy !== 'None') || (clusterFirst && !o.nameserver)) {
    return o.hostResolv;
  }
  const ns = o.pod.metadata?.namespace ?? 'default';
  const d = o.clusterDomain;
  // after the cluster DNS, the node's own resolvers: the cluster DNS answers its zone (NXDOMAIN
  // there is final) and refuses other names unless --dns-upstream, and glibc, Go and c-ares ask
  // the next nameserver on REFUSED, so names outside the cluster resolve as on the host (the
  // role of CoreDNS's `forward . /etc/resolv.conf`); glibc reads at most 3 nameservers
  const hostServers = policy === 'None' ? [] : hostNameservers(o.hostResolv).filter((n) => n !== o.nameserver);
  const nameservers = [...new Set([...(policy === 'None' ? [] : [o.nameserver!]), ...(cfg.nameservers ?? []), ...hostServers])].slice(0, 3);
  const searches = [...(policy === 'None' ? [] : [`${ns}.svc.${d}`, `svc.${d}`, d]), ...(cfg.searches ?? [])];
  const options = new Map<string, string | undefined>(policy === 'None' ? [] : [['ndots', '5']]);
  for (const opt of cfg.options ?? []) if (opt.name) options.set(opt.name, opt.value);
  const lines = nameservers.map((n) => `nameserver ${n}`);
  if (searches.length) lines.push(`search ${searches.join(' ')}`);
  if (options.size) lines.push(`options ${[...options].map(([k, v]) => (v === undefined ? k : `${k}:${v}`)).join(' ')}`);
  return lines.join('\n') + '\n';
}

/**
 * A pod's `/etc/hosts` as the kubelet's managed hosts file: localhost lines, the pod's own
 * address under its hostname (and FQDN with a subdomain), then `hostAliases`.
 */
export function hostsFile(o: { pod: Pod; podIP: string; clusterDomain: string }): string {
  const spec: Partial<PodSpec> = o.pod.spec ?? {};
  const hostname = spec.hostname || o.pod.metadata?.name || '';
  const lines = [
    '# Kubernetes-managed hosts file (kubeloop).',
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'fe00::0\tip6-mcastprefix',
    'fe00::1\tip6-allnodes',
    'fe00::2\tip6-allrouters',
  ];
  if (o.podIP && hostname) {
    const ns = o.pod.metadata?.namespace ?? 'default';
    lines.push(spec.subdomain ? `${o.podIP}\t${hostname}.${spec.subdomain}.${ns}.svc.${o.clusterDomain}\t${hostname}` : `${o.podIP}\t${hostname}`);
  }
  if (spec.hostAliases?.length) {
    lines.push('', '# Entries added by HostAliases.');
    for (const a of spec.hostAliases) if (a.ip && a.hostnames?.length) lines.push(`${a.ip}\t${a.hostnames.join('\t')}`);
  }
  return lines.join('\n') + '\n';
}

/** The `nameserver` addresses of a resolv.conf. */
function hostNameservers(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m) out.push(m[1]);
  }
  return out;
}
