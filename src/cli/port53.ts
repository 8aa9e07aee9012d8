import { createSocket } from 'node:dgram';

/**
 * Whether this process may bind port 53 (root, CAP_NET_BIND_SERVICE, or
 * net.ipv4.ip_unprivileged_port_start ≤ 53), tried on `ip` over UDP and closed at once.
 * Only a refusal for lack of privilege counts: another process holding the port (EADDRINUSE)
 * is the proxy listener's to report, with its own fix, as for any Service port.
 */
export function probePort53(ip: string): Promise<{ ok: true } | { ok: false; reason: string }> {
  return new Promise((resolve) => {
    const s = createSocket({ type: ip.includes(':') ? 'udp6' : 'udp4' });
    s.once('error', (err: NodeJS.ErrnoException) => {
      s.close();
      resolve(err.code === 'EACCES' || err.code === 'EPERM' ? { ok: false, reason: `${err.code}: ports below 1024 need privilege` } : { ok: true });
    });
    s.bind({ address: ip, port: 53, exclusive: true }, () => {
      s.close();
      resolve({ ok: true });
    });
  });
}

/** The start-up line when port 53 cannot be bound: what it means for pods, and the fix to run once. */
export function port53Fix(ip: string, reason: string): string {
  return (
    `cluster DNS is not on ${ip}:53, kube-dns's ClusterIP (${reason}), so pods resolve names through this machine's ` +
    '/etc/resolv.conf (Service variables such as $REDIS_SERVICE_HOST still work): allow it once with ' +
    '`sudo sysctl -w net.ipv4.ip_unprivileged_port_start=0` (until reboot), or give node CAP_NET_BIND_SERVICE ' +
    '(`sudo setcap cap_net_bind_service=+ep "$(command -v node)"`), then restart kubeloop'
  );
}
