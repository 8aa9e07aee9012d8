import type { Endpoints, Service, Stored } from '../api/types.js';

export interface ServiceRow {
  name: string;
  type: string;
  addresses: string[];
  ready: string;
  curl: string;
}

/** a Service port that speaks Redis: 6379, or named/declared so (`redis`, `tcp-redis`, appProtocol redis) */
function isRedis(p: { port: number; name?: string; appProtocol?: string } | undefined): boolean {
  if (!p) return false;
  return p.port === 6379 || /(^|-)redis$/.test(p.name ?? '') || p.appProtocol === 'redis';
}

const hostPort = (ip: string, port: number): string => (ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`);

/** Every address a Service can be reached at from this machine, and a curl line for the first. */
export function serviceRows(
  services: readonly Stored<Service>[],
  endpoints: (ns: string, name: string) => Stored<Endpoints> | undefined,
  nodeAddresses: readonly string[],
  dnsName: (svc: Stored<Service>) => string,
  /** `ip:port/PROTO` of listeners that could not be opened */
  failed: ReadonlySet<string> = new Set(),
  /** the cluster CA file when the API is HTTPS: default/kubernetes gets a curl line that verifies it */
  apiCa?: string,
): ServiceRow[] {
  const rows: ServiceRow[] = [];
  const sorted = [...services].sort((a, b) =>
    `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace}/${b.metadata.name}`),
  );
  for (const s of sorted) {
    const spec = s.spec ?? {};
    const type = spec.type ?? 'ClusterIP';
    const addresses: string[] = [];
    const web: string[] = [];
    // the port the TRY line uses: a redis port gets redis-cli, anything else curl
    let firstPort: { port: number; name?: string; appProtocol?: string } | undefined;
    const headless = spec.clusterIP === 'None';
    if (type === 'ExternalName') {
      addresses.push(`CNAME ${spec.externalName ?? ''}`);
    } else if (headless) {
      addresses.push(`headless: ${dnsName(s)}`);
    }
    for (const p of spec.ports ?? []) {
      const proto = p.protocol === 'UDP' ? '/udp' : p.protocol === 'SCTP' ? '/sctp' : '';
      const add = (ip: string, port: number) => {
        const a = hostPort(ip, port);
        if (failed.has(`${a}/${p.protocol ?? 'TCP'}`)) {
          addresses.push(`${a}${proto} (not listening, see below)`);
          return;
        }
        addresses.push(`${a}${proto}`);
        if (!proto) {
          if (!web.length) firstPort = { port, name: p.name, appProtocol: p.appProtocol };
          web.push(a);
        }
      };
      if (!headless && spec.clusterIP && type !== 'ExternalName') add(spec.clusterIP, p.port);
      for (const ing of s.status?.loadBalancer?.ingress ?? []) if (ing.ip) add(ing.ip, p.port);
      for (const ip of spec.externalIPs ?? []) add(ip, p.port);
      if (p.nodePort) for (const ip of nodeAddresses) add(ip, p.nodePort);
    }
    const ep = endpoints(s.metadata.namespace ?? 'default', s.metadata.name);
    let ready = 0;
    let notReady = 0;
    for (const ss of ep?.subsets ?? []) {
      ready += ss.addresses?.length ?? 0;
      notReady += ss.notReadyAddresses?.length ?? 0;
    }
    rows.push({
      name: `${s.metadata.namespace}/${s.metadata.name}`,
      type,
      addresses,
      ready: type === 'ExternalName' ? '-' : `${ready}/${ready + notReady}`,
      curl: !web.length ? '' : s.metadata.namespace === 'kube-system' && s.metadata.name === 'kube-dns'
        ? `dig @${web[0].slice(0, web[0].lastIndexOf(':'))} ${dnsName(s).replace(/^kube-dns\.kube-system\./, 'kubernetes.default.')}`
        : apiCa && s.metadata.namespace === 'default' && s.metadata.name === 'kubernetes'
        ? `curl --cacert ${apiCa} https://${web[0]}/version`
        : isRedis(firstPort)
        ? `redis-cli -h ${web[0].slice(0, web[0].lastIndexOf(':')).replace(/^\[|\]$/g, '')} -p ${firstPort!.port} ping`
        : `curl http://${web[0]}/`,
    });
  }
  return rows;
}

/** Renders rows as an aligned table; a Service with several addresses takes several lines. */
export function renderTable(rows: readonly ServiceRow[]): string {
  const head = ['SERVICE', 'TYPE', 'ENDPOINTS', 'ADDRESS', 'TRY'];
  const lines: string[][] = [head];
  for (const r of rows) {
    const addrs = r.addresses.length ? r.addresses : ['-'];
    addrs.forEach((a, i) => {
      lines.push(i === 0 ? [r.name, r.type, r.ready, a, r.curl] : ['', '', '', a, '']);
    });
  }
  const widths = head.map((_, c) => Math.max(...lines.map((l) => l[c].length)));
  return lines.map((l) => l.map((cell, c) => (c === l.length - 1 ? cell : cell.padEnd(widths[c]))).join('  ').trimEnd()).join('\n');
}
