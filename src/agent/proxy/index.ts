import type { Logger } from 'pino';
import type { InformerFactory } from '../../store/informer.js';
import { ProxyConfig } from './config.js';
import { type EndpointStats, type ListenerError, type ListenerInfo, Proxier, type SyncObserver } from './proxier.js';
import { ProxyWorkers } from './workers.js';
import { type DataPathChoice, type DataPathPreference, chooseDataPath } from '../../util/uv.js';

export type { EndpointStats, ListenerError, ListenerInfo, SyncEvent, SyncObserver } from './proxier.js';
export type { ListenerCounters, PortalKind, Protocol } from './portal.js';
export type { DataPath, DataPathChoice, DataPathPreference } from '../../util/uv.js';
export { MetricsServer, type MetricsServerOptions, proxyMetrics } from './metrics.js';
export type { BalancedEndpoint } from './round-robin.js';

export interface ProxyOptions {
  informers: InformerFactory;
  log: Logger;
  /** where NodePorts listen, e.g. ['127.0.0.1'] (kube-proxy --nodeport-addresses) */
  nodeAddresses: string[];
  /** the nodes this proxy serves (kube-proxy's --hostname-override): endpoints on them are local for `internalTrafficPolicy: Local` */
  nodeNames?: readonly string[];
  /** idle time after which a UDP flow is closed; default 250 (kube-proxy --udp-timeout) */
  udpIdleTimeoutMs?: number;
  /** one dial attempt per entry, each to the next endpoint; default [250, 500, 1000, 2000] */
  dialTimeoutsMs?: number[];
  /** failed listeners are retried this often, and whenever their Service changes; default 5000 */
  bindRetryIntervalMs?: number;
  /** a listener could not be opened (called once per distinct error, not per retry) */
  onListenerError?(svc: string, address: string, port: number, err: Error): void;
  /** a listener that had failed is open now */
  onListenerRecovered?(svc: string, address: string, port: number): void;
  /**
   * processes accepting on TCP portals, this one included; default 1. More spread a load test
   * over more cores (see workers.ts for what changes: round robin is per process).
   */
  processes?: number;
  /**
   * `auto` (default): Node's libuv handles where they load cleanly, else `node:net`; `net` forces
   * the portable path, `uv` requires the fast one (util/uv.ts `chooseDataPath`). Logged once.
   */
  dataPath?: DataPathPreference;
  /** the sum of the connection caps in force (DNS/TCP, API, /metrics): descriptors listeners never take (util/fd-budget.ts) */
  connectionCaps?: number;
}

export const DEFAULT_DIAL_TIMEOUTS_MS: readonly number[] = Object.freeze([250, 500, 1000, 2000]);
export const DEFAULT_UDP_IDLE_TIMEOUT_MS = 250;

/**
 * The service proxy: kube-proxy's userspace semantics with a real listener per portal address.
 *
 * Service/Endpoints informers → `ProxyConfig` (narrow, fan out) → `Proxier` (change trackers →
 * one serialized sync → TCP/UDP listeners, round robin per service port). Nothing is opened
 * before both informers have synced.
 */
export class Proxy {
  readonly #proxier: Proxier;
  readonly #config: ProxyConfig;
  readonly #workers: ProxyWorkers | undefined;
  /** the TCP data path in use, and why */
  readonly dataPath: DataPathChoice;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;

  constructor(o: ProxyOptions) {
    const log = o.log.child({ component: 'proxy' });
    const dialTimeoutsMs = o.dialTimeoutsMs?.length ? [...o.dialTimeoutsMs] : [...DEFAULT_DIAL_TIMEOUTS_MS];
    if (dialTimeoutsMs.some((t) => !(t > 0))) throw new Error('dialTimeoutsMs: every timeout must be a positive number of ms');
    const udpIdleTimeoutMs = o.udpIdleTimeoutMs ?? DEFAULT_UDP_IDLE_TIMEOUT_MS;
    if (!(udpIdleTimeoutMs > 0)) throw new Error('udpIdleTimeoutMs must be a positive number of ms');
    this.dataPath = chooseDataPath(o.dataPath ?? 'auto');
    log.info({ dataPath: this.dataPath.path, reason: this.dataPath.reason }, `proxy data path: ${this.dataPath.path}`);
    const processes = o.processes ?? 1;
    if (!Number.isInteger(processes) || processes < 1) throw new Error('processes must be a whole number ≥ 1');
    this.#workers = processes > 1 ? new ProxyWorkers({ count: processes - 1, log, dialTimeoutsMs, dataPath: this.dataPath.path }) : undefined;
    this.#proxier = new Proxier({
      log,
      nodeAddresses: [...new Set(o.nodeAddresses)],
      nodeNames: [...new Set(o.nodeNames ?? [])],
      udpIdleTimeoutMs,
      dialTimeoutsMs,
      dataPath: this.dataPath.path,
      retryIntervalMs: o.bindRetryIntervalMs ?? 5000,
      onListenerError: o.onListenerError,
      onListenerRecovered: o.onListenerRecovered,
      workers: this.#workers,
      connectionCaps: o.connectionCaps,
    });
    this.#config = new ProxyConfig({ informers: o.informers, handler: this.#proxier });
  }

  /** Idempotent. Resolves once the initial Services and Endpoints are applied. */
  start(): Promise<void> {
    this.#starting ??= (async () => {
      this.#workers?.start();
      await this.#config.start();
      await this.#proxier.synced();
    })();
    return this.#starting;
  }

  /** Idempotent. Closes every listener and ends every open connection and UDP flow. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#config.stop();
      await this.#proxier.stop();
    })();
    return this.#stopping;
  }

  /** pids of the worker processes (empty with one process) */
  workerPids(): number[] {
    return this.#workers?.pids() ?? [];
  }

  /** the listeners currently open (for the CLI's table and tests) */
  listeners(): ListenerInfo[] {
    return this.#proxier.listeners();
  }

  /** per endpoint of every service port: connections, failed dials and bytes (the per-pod distribution) */
  endpointStats(): EndpointStats[] {
    return this.#proxier.endpointStats();
  }

  /** Calls `o` after every sync (duration, changes applied, programming latencies); returns its removal. */
  observe(o: SyncObserver): () => void {
    return this.#proxier.observe(o);
  }

  /** Service and Endpoints changes recorded and not yet applied */
  pendingChanges(): { services: number; endpoints: number } {
    return this.#proxier.pending();
  }

  /** ms since the epoch when a change was last queued for a sync (0: never) */
  get lastQueued(): number {
    return this.#proxier.lastQueued;
  }

  /** portals that could not be opened, with the error and its fix (retried periodically) */
  listenerErrors(): ListenerError[] {
    return this.#proxier.listenerErrors();
  }

  /** resolves after the next sync has applied all changes seen so far */
  synced(): Promise<void> {
    return this.#proxier.synced();
  }
}
