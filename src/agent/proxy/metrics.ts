import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { type ConnectionStats, DEFAULT_FD_BUDGET } from '../../util/fd-budget.js';
import { hostPort } from './portal.js';
import type { Proxy } from './index.js';

/**
 * Prometheus figures of the proxy, kube-proxy's names where kube-proxy has the figure:
 *
 * | metric | what |
 * |---|---|
 * | `kubeproxy_sync_proxy_rules_duration_seconds` | histogram of sync durations (listeners opened/closed, balancers updated) |
 * | `kubeproxy_sync_proxy_rules_last_timestamp_seconds` | end of the last sync |
 * | `kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds` | when a change was last queued |
 * | `kubeproxy_network_programming_duration_seconds` | from an Endpoints' `endpoints.kubernetes.io/last-change-trigger-time` to the end of the sync that applied it |
 * | `kubeproxy_sync_proxy_rules_{service,endpoint}_changes_total` | changes applied by syncs |
 * | `kubeproxy_sync_proxy_rules_{service,endpoint}_changes_pending` | changes waiting for the next sync |
 * | `kubeloop_proxy_connections_total` … `_bytes_total` | per listener (Service, port name, protocol, address, kind) |
 * | `kubeloop_proxy_listener_processes` | per listener: processes accepting on it (the daemon + proxy workers, as of their last report) |
 * | `kubeloop_proxy_endpoint_connections_total` … | per endpoint of a service port: the per-pod distribution |
 * | `kubeloop_proxy_data_path{path}` | 1 for the TCP data path in use (`uv`: Node's libuv handles, `net`: `node:net`), 0 for the other |
 *
 * plus the standard `process_*` / `nodejs_*` figures. Counters are read from the proxy when
 * scraped: nothing is added to the connection path.
 *
 * The programming-latency buckets start at 1 ms (upstream's start at 250 ms: kubeloop programs
 * in milliseconds, and the interesting part would fall into the first bucket).
 */
export function proxyMetrics(proxy: Proxy, o: { registry?: Registry; processMetrics?: boolean } = {}): { registry: Registry; stop(): void } {
  const registry = o.registry ?? new Registry();
  if (o.processMetrics !== false) collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const syncDuration = new Histogram({
    name: 'kubeproxy_sync_proxy_rules_duration_seconds',
    help: 'SyncProxyRules latency in seconds',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192, 16.384],
    registers,
  });
  const dataPath = new Gauge({
    name: 'kubeloop_proxy_data_path',
    help: "The proxy's TCP data path: 1 for the one in use (uv: Node's libuv handles; net: node:net), chosen once at start",
    labelNames: ['path'],
    registers,
  });
  for (const path of ['uv', 'net'] as const) dataPath.set({ path }, proxy.dataPath.path === path ? 1 : 0);
  const lastSync = new Gauge({
    name: 'kubeproxy_sync_proxy_rules_last_timestamp_seconds',
    help: 'The last time proxy rules were successfully synced',
    registers,
  });
  new Gauge({
    name: 'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds',
    help: 'The last time a sync of proxy rules was queued',
    registers,
    collect() {
      this.set(proxy.lastQueued / 1000);
    },
  });
  const programming = new Histogram({
    name: 'kubeproxy_network_programming_duration_seconds',
    help: 'In Cluster Network Programming Latency in seconds (Endpoints last-change-trigger-time to the end of the sync that applied it)',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300],
    registers,
  });
  const serviceChanges = new Counter({
    name: 'kubeproxy_sync_proxy_rules_service_changes_total',
    help: 'Cumulative proxy rules Service changes (applied by syncs)',
    registers,
  });
  const endpointChanges = new Counter({
    name: 'kubeproxy_sync_proxy_rules_endpoint_changes_total',
    help: 'Cumulative proxy rules Endpoint changes (applied by syncs)',
    registers,
  });
  new Gauge({
    name: 'kubeproxy_sync_proxy_rules_service_changes_pending',
    help: 'Pending proxy rules Service changes',
    registers,
    collect() {
      this.set(proxy.pendingChanges().services);
    },
  });
  new Gauge({
    name: 'kubeproxy_sync_proxy_rules_endpoint_changes_pending',
    help: 'Pending proxy rules Endpoint changes',
    registers,
    collect() {
      this.set(proxy.pendingChanges().endpoints);
    },
  });

  const unobserve = proxy.observe((e) => {
    syncDuration.observe(e.durationSeconds);
    lastSync.set(e.at / 1000);
    if (e.serviceChanges) serviceChanges.inc(e.serviceChanges);
    if (e.endpointsChanges) endpointChanges.inc(e.endpointsChanges);
    for (const s of e.programmingSeconds) programming.observe(s);
  });

  // per listener, read at scrape time
  const L = ['service', 'port', 'protocol', 'address', 'kind'] as const;
  type LL = (typeof L)[number];
  const perListener = <T extends Counter<LL> | Gauge<LL>>(m: T, value: (l: ReturnType<Proxy['listeners']>[number]) => number): void => {
    m.reset();
    for (const l of proxy.listeners()) {
      const labels = { service: l.svc, port: l.port, protocol: l.protocol, address: hostPort(l.address, l.portNumber), kind: l.kind };
      const v = value(l);
      if (m instanceof Gauge) m.set(labels, v);
      else (m as Counter<LL>).inc(labels, v);
    }
  };
  new Counter({
    name: 'kubeloop_proxy_connections_total',
    help: 'TCP connections accepted / UDP flows created on a Service listener',
    labelNames: L,
    registers,
    collect() {
      perListener(this, (l) => l.counters.accepted);
    },
  });
  new Gauge({
    name: 'kubeloop_proxy_connections_active',
    help: 'Open TCP connections / UDP flows of a Service listener',
    labelNames: L,
    registers,
    collect() {
      perListener(this, (l) => l.active);
    },
  });
  new Gauge({
    name: 'kubeloop_proxy_listener_processes',
    help: 'Processes accepting on a Service listener: the daemon plus the proxy workers (--proxy-processes) that took it, as of their last report',
    labelNames: L,
    registers,
    collect() {
      perListener(this, (l) => l.processes);
    },
  });
  new Counter({
    name: 'kubeloop_proxy_connections_failed_total',
    help: 'Connections reset / datagrams dropped because no endpoint was ready or every dial failed',
    labelNames: L,
    registers,
    collect() {
      perListener(this, (l) => l.counters.failed);
    },
  });
  new Counter({
    name: 'kubeloop_proxy_connections_denied_total',
    help: 'Connections reset / datagrams dropped because the client is outside loadBalancerSourceRanges',
    labelNames: L,
    registers,
    collect() {
      perListener(this, (l) => l.counters.denied);
    },
  });
  const bytes = new Counter({
    name: 'kubeloop_proxy_bytes_total',
    help: 'Bytes through a Service listener; direction "in" is client to endpoint, "out" endpoint to client (TCP: open connections included)',
    labelNames: [...L, 'direction'],
    registers,
    collect() {
      bytes.reset();
      for (const l of proxy.listeners()) {
        const labels = { service: l.svc, port: l.port, protocol: l.protocol, address: hostPort(l.address, l.portNumber), kind: l.kind };
        bytes.inc({ ...labels, direction: 'in' }, l.counters.bytesIn);
        bytes.inc({ ...labels, direction: 'out' }, l.counters.bytesOut);
      }
    },
  });

  // per endpoint of a service port: the per-pod distribution
  const E = ['service', 'port', 'endpoint'] as const;
  type EL = (typeof E)[number];
  const perEndpoint = (m: Counter<EL>, value: (e: ReturnType<Proxy['endpointStats']>[number]) => number): void => {
    m.reset();
    for (const e of proxy.endpointStats()) m.inc({ service: e.svc, port: e.port, endpoint: e.endpoint }, value(e));
  };
  new Counter({
    name: 'kubeloop_proxy_endpoint_connections_total',
    help: 'TCP connections spliced to / UDP flows opened to an endpoint (while it is in the Service)',
    labelNames: E,
    registers,
    collect() {
      perEndpoint(this, (e) => e.connections);
    },
  });
  new Counter({
    name: 'kubeloop_proxy_endpoint_dial_failures_total',
    help: 'TCP dials to an endpoint that failed (refused or timed out)',
    labelNames: E,
    registers,
    collect() {
      perEndpoint(this, (e) => e.failed);
    },
  });
  const epBytes = new Counter({
    name: 'kubeloop_proxy_endpoint_bytes_total',
    help: 'Bytes to ("in") and from ("out") an endpoint; TCP connections count when they end',
    labelNames: [...E, 'direction'],
    registers,
    collect() {
      epBytes.reset();
      for (const e of proxy.endpointStats()) {
        epBytes.inc({ service: e.svc, port: e.port, endpoint: e.endpoint, direction: 'in' }, e.bytesIn);
        epBytes.inc({ service: e.svc, port: e.port, endpoint: e.endpoint, direction: 'out' }, e.bytesOut);
      }
    },
  });

  return { registry, stop: unobserve };
}

export interface MetricsServerOptions {
  registry: Registry;
  log: Logger;
  /** a loopback address unless the user chose otherwise (kube-proxy: 127.0.0.1) */
  address: string;
  /** kube-proxy's default is 10249; 0 = ephemeral (tests) */
  port: number;
  /** open connections at most (default: util/fd-budget.ts); more are closed at accept */
  maxConnections?: number;
}

/** `GET /metrics` in the Prometheus text format (kube-proxy's `--metrics-bind-address`), `GET /healthz`. */
export class MetricsServer {
  readonly #o: MetricsServerOptions;
  readonly #server: http.Server;
  readonly #log: Logger;
  readonly #connections: ConnectionStats;
  #started: Promise<void> | undefined;

  constructor(o: MetricsServerOptions) {
    this.#o = o;
    this.#log = o.log.child({ component: 'metrics' });
    this.#server = http.createServer((req, res) => void this.#handle(req, res));
    // a scraper needs one connection: the cap keeps strangers from taking the proxy's descriptors
    const c = (this.#connections = { open: 0, rejected: 0, cap: o.maxConnections ?? DEFAULT_FD_BUDGET.metricsConnections });
    this.#server.maxConnections = c.cap;
    this.#server.on('connection', (s: Socket) => {
      c.open++;
      s.once('close', () => c.open--);
    });
    this.#server.on('drop', () => c.rejected++);
  }

  /** connections open now, refused at the cap so far, and the cap */
  connectionStats(): ConnectionStats {
    return { ...this.#connections };
  }

  get port(): number {
    return (this.#server.address() as AddressInfo | null)?.port ?? 0;
  }

  get url(): string {
    return `http://${hostPort(this.#o.address, this.port)}/metrics`;
  }

  /** Idempotent; rejects with the bind error. */
  start(): Promise<void> {
    this.#started ??= new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen({ host: this.#o.address, port: this.#o.port }, () => {
        this.#server.removeListener('error', reject);
        this.#server.on('error', (err) => this.#log.warn({ err }, 'metrics server error'));
        resolve();
      });
    });
    return this.#started;
  }

  /** Idempotent. */
  stop(): Promise<void> {
    if (!this.#server.listening) return Promise.resolve();
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    try {
      const body = await this.#o.registry.metrics();
      res.writeHead(200, { 'content-type': this.#o.registry.contentType });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch (err) {
      this.#log.warn({ err }, 'collecting metrics failed');
      res.writeHead(500, { 'content-type': 'text/plain' }).end('collecting metrics failed\n');
    }
  }
}
