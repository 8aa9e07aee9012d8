/**
 * The descriptor budget: one RLIMIT_NOFILE is shared by every component of the daemon, so the
 * components whose clients are strangers (DNS over TCP, the API, /metrics) each get a cap on
 * open connections, and whatever the caps leave belongs to the proxy (two descriptors per
 * proxied TCP connection, one per listener), the pod runtime and the store.
 *
 * | component | cap | above it |
 * |---|---|---|
 * | DNS over TCP | 1,000 connections (`--dns-tcp-max-connections`); idle ones are destroyed after 10 s (`--dns-tcp-idle-timeout`, RFC 7766 §6.2.3's minimum) | accepted and closed at once; UDP answers on |
 * | API | 4,000 connections, watches and log streams included (`--api-max-connections`); of those at most 64 (and at most half the cap) not yet authenticated, see API_UNAUTHENTICATED_CONNECTIONS | accepted and closed at once |
 * | /metrics | 64 connections (`--metrics-max-connections`) | accepted and closed at once |
 *
 * The split of RLIMIT_NOFILE, one budget for the whole daemon:
 *
 *   limit = caps in force (the table; a component that is off counts 0)
 *         + proxyReserve(limit): an eighth, at least 64, for proxied connections (two
 *           descriptors per TCP connection, one per UDP flow) and the daemon's own files as they
 *           grow (pod logs and pipes, the journal, exec and log streams)
 *         + everything open when the proxy opens a listener (its listeners, the daemon's files)
 *         + the room left for more listeners (listenerRoom)
 *
 * The caps take at most CAPPED_SHARE of the limit (fitBudget scales them down, with a warning,
 * when the limit is small), so listeners get at least 13/24 of it less the daemon's files. The
 * caps are promised whether or not they are used: listeners never take them, so every capped
 * component can fill its cap while every listener stays open (agent/proxy/proxier.ts gets the
 * caps' sum from cli/daemon.ts). On /metrics:
 * `kubeloop_connections_{open,max,rejected_total}{component}` (cli/connection-metrics.ts).
 *
 * CoreDNS has no cap of its own (Go's runtime parks idle connections cheaply and it relies on
 * its 10 s idle timeout), and the kube-apiserver bounds requests in flight (400 + 200 mutating)
 * rather than connections; kubeloop bounds connections because a connection is what costs a
 * descriptor. The soft RLIMIT_NOFILE is raised to the hard limit at start (cli/rlimit.ts).
 */

export interface FdBudget {
  dnsTcpConnections: number;
  apiConnections: number;
  metricsConnections: number;
}

export const DEFAULT_FD_BUDGET: Readonly<FdBudget> = Object.freeze({
  dnsTcpConnections: 1000,
  apiConnections: 4000,
  metricsConnections: 64,
});

/**
 * API connections that have not authenticated yet (no TLS handshake done, no verified client
 * certificate, no request with an accepted token) take at most this many of the API's slots,
 * and at most half of them (apiUnauthenticatedCap): a new one over that closes the oldest
 * unauthenticated one, so strangers on the machine can never hold the slots the owner's
 * kubectl needs. Each of them is also dropped after API_HANDSHAKE_TIMEOUT_MS without a
 * finished TLS handshake or a request's headers, and a 401/403 closes its connection.
 */
export const API_UNAUTHENTICATED_CONNECTIONS = 64;

export function apiUnauthenticatedCap(apiCap: number): number {
  return Math.max(1, Math.min(API_UNAUTHENTICATED_CONNECTIONS, Math.floor(apiCap / 2)));
}

/** a client must finish its TLS handshake, and send a request's headers, within this long (`--api-handshake-timeout`) */
export const API_HANDSHAKE_TIMEOUT_MS = 10_000;

/** idle DNS/TCP connections are destroyed after this long (RFC 7766 recommends at least 10 s) */
export const DNS_TCP_IDLE_TIMEOUT_MS = 10_000;

/**
 * the share of RLIMIT_NOFILE the capped components may take together; the rest is the proxy's
 * (the defaults, 5,064 connections, fit a limit of 15,192 or more: Debian's and systemd's hard
 * limits are 524,288 and more, a hard limit of 4,096 gets caps of 1,365 in all)
 */
export const CAPPED_SHARE = 1 / 3;

/**
 * The caps to apply under a descriptor limit: `wanted` as is when the caps together fit in
 * CAPPED_SHARE of `limit`, else each scaled down in proportion (at least 1), with `scaled` set
 * so the caller can say so. An unknown or unlimited `limit` keeps `wanted`.
 */
export function fitBudget(wanted: Readonly<FdBudget>, limit: number | undefined): { budget: FdBudget; scaled: boolean } {
  const total = wanted.dnsTcpConnections + wanted.apiConnections + wanted.metricsConnections;
  const room = limit === undefined || !Number.isFinite(limit) ? Infinity : Math.floor(limit * CAPPED_SHARE);
  if (total <= room) return { budget: { ...wanted }, scaled: false };
  const f = room / total;
  const scale = (n: number): number => Math.max(1, Math.floor(n * f));
  return {
    budget: { dnsTcpConnections: scale(wanted.dnsTcpConnections), apiConnections: scale(wanted.apiConnections), metricsConnections: scale(wanted.metricsConnections) },
    scaled: true,
  };
}

/** descriptors kept free beyond the caps, for proxied connections and the daemon's own files' growth */
export function proxyReserve(limit: number): number {
  return Math.max(64, Math.floor(limit / 8));
}

/**
 * Listeners the proxy may still open under `limit`: limit − caps − proxyReserve(limit) − open,
 * at least 0. `open` is every descriptor held now; connections of capped components open now
 * are in `open` and in `caps` both, which errs on the safe side (a listener that does not fit
 * is retried when descriptors are freed).
 */
export function listenerRoom(limit: number, caps: number, open: number): number {
  return Math.max(0, limit - caps - proxyReserve(limit) - open);
}

/**
 * Open connections of a capped server and the ones it refused at the cap; read at scrape
 * time. `net.Server.maxConnections` closes a connection over the cap right after accept and
 * emits 'drop' for it.
 */
export interface ConnectionStats {
  open: number;
  rejected: number;
  cap: number;
}
