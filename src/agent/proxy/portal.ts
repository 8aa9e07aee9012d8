import { isIP } from 'node:net';
import type { SourceRanges } from './source-ranges.js';

export type PortalKind = 'clusterIP' | 'nodePort' | 'externalIP' | 'loadBalancer';
export type Protocol = 'TCP' | 'UDP';

/**
 * One listening address of one service port (upstream winuserspace `ServicePortPortalName`).
 * `id` is its identity: a listener is reopened only when its id changes.
 */
export interface PortalSpec {
  readonly id: string;
  /** `ns/name` */
  readonly svc: string;
  readonly portName: string;
  /** balancer key `ns/name:portName`, shared by every portal of the service port */
  readonly servicePort: string;
  readonly protocol: Protocol;
  readonly address: string;
  readonly port: number;
  readonly kind: PortalKind;
}

/** Totals since the listener opened. TCP bytes are added when a connection ends (see `Listener.liveBytes`). */
export interface ListenerCounters {
  /** TCP connections accepted / UDP flows created */
  accepted: number;
  /** TCP connections / UDP flows refused or dropped: no endpoint, or every dial failed */
  failed: number;
  /** TCP connections reset / UDP datagrams dropped because the client is outside `loadBalancerSourceRanges` */
  denied: number;
  /** client → backend */
  bytesIn: number;
  /** backend → client */
  bytesOut: number;
}

/** A real socket on a portal address. */
export interface Listener {
  readonly spec: PortalSpec;
  readonly counters: ListenerCounters;
  /** open TCP connections / UDP flows */
  readonly active: number;
  /** TCP: bytes of the connections still open (`counters` has those of the ended ones) */
  liveBytes?(): { bytesIn: number; bytesOut: number };
  /** rejects with the bind error (errno `code` kept) */
  open(): Promise<void>;
  /** Stops accepting. TCP connections are left to drain; UDP flows are closed (upstream semantics). */
  close(): Promise<void>;
  /** Stops accepting and ends every connection/flow; resolves when all sockets are closed. */
  destroy(): Promise<void>;
  /**
   * Only clients inside these ranges may connect (load-balancer portals); undefined: anyone.
   * Applies to new connections/flows; open ones are left alone.
   */
  sourceRanges: SourceRanges | undefined;
}

/** A TCP listener on either data path (tcp.ts: `uv`, tcp-net.ts: `net`). */
export interface TcpPortalListener extends Listener {
  /**
   * Binds and listens, or, given `shared` (the listening socket another process bound and passed
   * over IPC: a raw handle on the `uv` path, a `net.Server` on the `net` path), accepts on it too.
   */
  open(shared?: object): Promise<void>;
  /** the listening socket while open, to pass to worker processes */
  readonly handle: object | undefined;
}

export function servicePortKey(svc: string, portName: string): string {
  return `${svc}:${portName}`;
}

export function portalId(svc: string, portName: string, protocol: Protocol, address: string, port: number): string {
  return `${svc}:${portName}/${protocol}/${hostPort(address, port)}`;
}

export function hostPort(address: string, port: number): string {
  return isIP(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

export function newCounters(): ListenerCounters {
  return { accepted: 0, failed: 0, denied: 0, bytesIn: 0, bytesOut: 0 };
}

/** Adds `from` into `to`; returns `to`. */
export function addCounters(to: ListenerCounters, from: Readonly<ListenerCounters>): ListenerCounters {
  to.accepted += from.accepted;
  to.failed += from.failed;
  to.denied += from.denied;
  to.bytesIn += from.bytesIn;
  to.bytesOut += from.bytesOut;
  return to;
}

/** the listener's counters (a copy), bytes of open TCP connections included */
export function withLive(l: Listener): ListenerCounters {
  const c = { ...l.counters };
  const live = l.liveBytes?.();
  if (live) {
    c.bytesIn += live.bytesIn;
    c.bytesOut += live.bytesOut;
  }
  return c;
}

/** The one-line explanation of a failed bind, naming the fix. */
export function bindErrorMessage(spec: PortalSpec, err: NodeJS.ErrnoException, fds?: { limit?: number; caps?: number; reserve?: number }): string {
  const where = `cannot listen on ${spec.protocol} ${hostPort(spec.address, spec.port)} for service ${spec.svc}`;
  switch (err.code) {
    case 'EMFILE': {
      const limit = fds?.limit !== undefined && Number.isFinite(fds.limit) ? `RLIMIT_NOFILE ${fds.limit}` : 'RLIMIT_NOFILE';
      const caps = fds?.caps ? `${fds.caps} kept for the API, DNS/TCP and /metrics connection caps` : '';
      const reserve = fds?.reserve ? `${fds.reserve} for proxied connections and the daemon's files` : '';
      const kept = caps || reserve ? `, of them ${[caps, reserve].filter(Boolean).join(' and ')}` : '';
      return `${where}: too many open files (${limit}${kept}): raise the limit with \`ulimit -n\` before kubeloop up, or delete Services`;
    }
    case 'ENFILE':
      return `${where}: the system is out of open files (ENFILE): raise fs.file-max (\`sudo sysctl -w fs.file-max=...\`) or close other programs`;
    case 'EADDRINUSE':
      return `${where}: port in use: stop the other process or choose another port`;
    case 'EACCES':
      return spec.port < 1024
        ? `${where}: permission denied: ports below 1024 need privilege: allow them with ` +
            '`sudo sysctl -w net.ipv4.ip_unprivileged_port_start=0`, or give node CAP_NET_BIND_SERVICE ' +
            '(`sudo setcap cap_net_bind_service=+ep "$(command -v node)"`), or use a port ≥ 1024'
        : `${where}: permission denied (${err.message})`;
    case 'EADDRNOTAVAIL':
      return `${where}: address not available on this machine: use an address inside 127.0.0.0/8 (Linux) or add it to an interface first`;
    default:
      return `${where}: ${err.message}`;
  }
}
