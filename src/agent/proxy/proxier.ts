import type { Logger } from 'pino';
import { Backoff } from '../../util/backoff.js';
import { CoalescingRunner } from '../../util/coalescing-runner.js';
import { listenerRoom, proxyReserve } from '../../util/fd-budget.js';
import { openFds, readNofile } from '../../util/fds.js';
import { type Change, ChangeTracker } from './change-tracker.js';
import { performance } from 'node:perf_hooks';
import { type ProxyEndpoints, type ProxyHandler, type ProxyService, sameEndpoints } from './config.js';
import { LocalAddresses } from './local-addresses.js';
import {
  type Listener,
  type ListenerCounters,
  type PortalKind,
  addCounters,
  type PortalSpec,
  type Protocol,
  type TcpPortalListener,
  bindErrorMessage,
  hostPort,
  portalId,
  servicePortKey,
  withLive,
} from './portal.js';
import { type Endpoint, RoundRobin } from './round-robin.js';
import { SourceRanges } from './source-ranges.js';
import { TcpListener } from './tcp.js';
import { NetTcpListener } from './tcp-net.js';
import type { DataPath } from '../../util/uv.js';
import { UdpListener } from './udp.js';
import type { ProxyWorkers } from './workers.js';

export interface ProxierOptions {
  log: Logger;
  nodeAddresses: readonly string[];
  /** this proxy's nodes: their endpoints serve the ClusterIPs of `internalTrafficPolicy: Local` Services */
  nodeNames?: readonly string[];
  udpIdleTimeoutMs: number;
  dialTimeoutsMs: readonly number[];
  /** which TCP listener serves portals (util/uv.ts `chooseDataPath`) */
  dataPath: DataPath;
  /** failed listeners are retried this often (and on every change of their Service) */
  retryIntervalMs: number;
  onListenerError?(svc: string, address: string, port: number, err: Error): void;
  onListenerRecovered?(svc: string, address: string, port: number): void;
  /** worker processes that accept on TCP portals too (see workers.ts); stopped by `stop()` */
  workers?: ProxyWorkers;
  /**
   * descriptors promised to the capped components (DNS/TCP, API, /metrics connection caps in
   * force, util/fd-budget.ts); listeners never take them. Default 0.
   */
  connectionCaps?: number;
}

export interface ListenerInfo {
  svc: string;
  /** the service port's name ('' when unnamed) */
  port: string;
  protocol: Protocol;
  address: string;
  portNumber: number;
  kind: PortalKind;
  /** open TCP connections / UDP flows */
  active: number;
  /** processes accepting on it: this one plus the proxy workers that reported taking it */
  processes: number;
  /** totals; TCP bytes include the connections still open */
  counters: Readonly<ListenerCounters>;
}

/** What one sync did (for metrics): upstream `SyncProxyRulesLatency` and `NetworkProgrammingLatency`. */
export interface SyncEvent {
  /** wall time of the whole sync, listeners opened and closed included */
  durationSeconds: number;
  /** Services / Endpoints whose change this sync applied */
  serviceChanges: number;
  endpointsChanges: number;
  /**
   * for each applied Endpoints change carrying `endpoints.kubernetes.io/last-change-trigger-time`:
   * seconds from that time to the end of this sync
   */
  programmingSeconds: number[];
  /** end of the sync, ms since the epoch */
  at: number;
}

export type SyncObserver = (e: SyncEvent) => void;

/** Totals of one endpoint of one service port (see `BalancedEndpoint`). */
export interface EndpointStats {
  svc: string;
  /** the service port's name ('' when unnamed) */
  port: string;
  /** `host:port` */
  endpoint: string;
  connections: number;
  failed: number;
  bytesIn: number;
  bytesOut: number;
}

export interface ListenerError {
  svc: string;
  port: string;
  protocol: Protocol;
  address: string;
  portNumber: number;
  kind: PortalKind;
  code: string;
  message: string;
}

/** A portal we want open; `listener` is set while it is, `error` while it could not be. */
interface Portal {
  spec: PortalSpec;
  /** load-balancer portals of a Service with `loadBalancerSourceRanges` */
  ranges?: SourceRanges;
  listener?: Listener;
  error?: { code: string; message: string };
}

/**
 * Applies Service and Endpoints changes in one serialized sync (upstream `syncProxyRules`,
 * winuserspace flavour: a real listener per portal address).
 *
 * Invariants after each sync:
 * - every port of every served Service has a balancer `ns/name:portName` holding the ready
 *   endpoints of that port name;
 * - every desired portal either has an open listener or a recorded bind error (retried);
 * - listeners of Services that did not change are never touched; a changed Service closes and
 *   opens only the portals whose identity (port name, protocol, address, port) changed.
 * Closed TCP listeners drain their connections (tracked in `#draining` until the last ends).
 */
export class Proxier implements ProxyHandler {
  readonly #log: Logger;
  readonly #o: ProxierOptions;
  readonly #serviceChanges = new ChangeTracker<ProxyService>();
  readonly #endpointsChanges = new ChangeTracker<ProxyEndpoints>({ equal: sameEndpoints });
  /** trigger times of pending Endpoints changes (dropped with the change when it turns out a no-op) */
  readonly #triggerTimes = new Map<string, number[]>();
  readonly #observers = new Set<SyncObserver>();
  /** ms since the epoch when a change was last queued for a sync */
  #lastQueued = 0;
  /** applied state: served Services (those with ports) by `ns/name` */
  readonly #services = new Map<string, ProxyService>();
  readonly #endpoints = new Map<string, ProxyEndpoints>();
  readonly #balancers = new Map<string, RoundRobin>();
  /** `ns/name` → portal id → portal */
  readonly #portals = new Map<string, Map<string, Portal>>();
  readonly #draining = new Set<Listener>();
  readonly #runner: CoalescingRunner;
  readonly #initialSynced: Promise<void>;
  #resolveInitial!: () => void;
  readonly #stoppedP: Promise<void>;
  #resolveStopped!: () => void;
  #initialized = false;
  #stopped = false;
  #retryDue = false;
  #housekeeping: NodeJS.Timeout | undefined;
  /** the last addresses read successfully (reading them needs a descriptor too) */
  #local: LocalAddresses | undefined;
  /** RLIMIT_NOFILE as last read, and the descriptors the proxy leaves to the caps and the reserve */
  #fds: { limit: number; caps: number; reserve: number } | undefined;
  /** a failed sync is retried after this, doubling (its changes stay pending) */
  readonly #syncBackoff = new Backoff({ initialMs: 250, maxMs: 30_000 });
  #syncRetry: NodeJS.Timeout | undefined;

  constructor(o: ProxierOptions) {
    this.#o = o;
    this.#log = o.log;
    this.#runner = new CoalescingRunner({
      fn: () => this.#sync(),
      onError: (err) => this.#syncFailed(err),
    });
    this.#initialSynced = new Promise((r) => (this.#resolveInitial = r));
    this.#stoppedP = new Promise((r) => (this.#resolveStopped = r));
  }

  // ---- ProxyHandler: record and request a sync ----

  onServiceAdd(svc: ProxyService): void {
    if (this.#serviceChanges.update(undefined, svc)) this.#kick();
  }
  onServiceUpdate(old: ProxyService, cur: ProxyService): void {
    if (this.#serviceChanges.update(old, cur)) this.#kick();
  }
  onServiceDelete(svc: ProxyService): void {
    if (this.#serviceChanges.update(svc, undefined)) this.#kick();
  }
  onEndpointsAdd(ep: ProxyEndpoints): void {
    this.#endpointsChanged(undefined, ep);
  }
  onEndpointsUpdate(old: ProxyEndpoints, cur: ProxyEndpoints): void {
    this.#endpointsChanged(old, cur);
  }
  onEndpointsDelete(ep: ProxyEndpoints): void {
    this.#endpointsChanged(ep, undefined);
  }

  /**
   * Upstream's `EndpointsChangeTracker`: a change that cancels out is dropped together with its
   * trigger times (no programming happened for it, so no latency is reported).
   */
  #endpointsChanged(prev: ProxyEndpoints | undefined, cur: ProxyEndpoints | undefined): void {
    const key = (cur ?? prev)!.key;
    if (!this.#endpointsChanges.update(prev, cur)) {
      this.#triggerTimes.delete(key);
      return;
    }
    if (cur?.triggerTime !== undefined) {
      const list = this.#triggerTimes.get(key);
      if (list) list.push(cur.triggerTime);
      else this.#triggerTimes.set(key, [cur.triggerTime]);
    }
    this.#kick();
  }
  onSynced(): void {
    if (this.#initialized || this.#stopped) return;
    this.#initialized = true;
    // retries failed binds and drops expired affinity pins
    this.#housekeeping = setInterval(() => this.#tick(), this.#o.retryIntervalMs);
    this.#housekeeping.unref();
    this.#resolveInitial();
    void this.#runner.run();
  }

  /** Resolves after a sync that started after this call (so after everything seen so far). */
  async synced(): Promise<void> {
    if (this.#stopped) return;
    await Promise.race([this.#initialSynced, this.#stoppedP]);
    await this.#runner.run();
  }

  listeners(): ListenerInfo[] {
    const out: ListenerInfo[] = [];
    for (const portals of this.#portals.values()) {
      for (const p of portals.values()) {
        if (!p.listener) continue;
        const s = p.spec;
        out.push({
          svc: s.svc,
          port: s.portName,
          protocol: s.protocol,
          address: s.address,
          portNumber: s.port,
          kind: s.kind,
          ...this.#totals(p.listener),
        });
      }
    }
    return out;
  }

  endpointStats(): EndpointStats[] {
    const out: EndpointStats[] = [];
    for (const [key, b] of this.#balancers) {
      const i = key.indexOf(':');
      const svc = key.slice(0, i);
      const port = key.slice(i + 1);
      for (const e of b.balanced) {
        const w = this.#o.workers?.endpointTotals(key, e.id);
        out.push({
          svc,
          port,
          endpoint: e.id,
          connections: e.connections + (w?.connections ?? 0),
          failed: e.failed + (w?.failed ?? 0),
          bytesIn: e.bytesIn + (w?.bytesIn ?? 0),
          bytesOut: e.bytesOut + (w?.bytesOut ?? 0),
        });
      }
    }
    return out;
  }

  listenerErrors(): ListenerError[] {
    const out: ListenerError[] = [];
    for (const portals of this.#portals.values()) {
      for (const p of portals.values()) {
        if (!p.error) continue;
        const s = p.spec;
        out.push({
          svc: s.svc,
          port: s.portName,
          protocol: s.protocol,
          address: s.address,
          portNumber: s.port,
          kind: s.kind,
          ...p.error,
        });
      }
    }
    return out;
  }

  /** Closes every listener and ends every connection and flow, draining ones included. Idempotent. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#resolveStopped();
    if (this.#housekeeping) clearInterval(this.#housekeeping);
    this.#housekeeping = undefined;
    clearTimeout(this.#syncRetry);
    await this.#runner.stop();
    // workers first: a socket passed to them stays open until they have it
    await this.#o.workers?.stop();
    const all: Listener[] = [...this.#draining];
    for (const portals of this.#portals.values()) for (const p of portals.values()) if (p.listener) all.push(p.listener);
    this.#portals.clear();
    this.#draining.clear();
    this.#balancers.clear();
    await Promise.all(all.map((l) => l.destroy()));
  }

  /** Registers an observer of every sync; returns its removal. Observers must be quick and not throw. */
  observe(o: SyncObserver): () => void {
    this.#observers.add(o);
    return () => this.#observers.delete(o);
  }

  /** changes recorded and not yet applied (upstream `*_changes_pending`) */
  pending(): { services: number; endpoints: number } {
    return { services: this.#serviceChanges.size, endpoints: this.#endpointsChanges.size };
  }

  /** ms since the epoch when a change was last queued (0: never) */
  get lastQueued(): number {
    return this.#lastQueued;
  }

  #kick(): void {
    this.#lastQueued = Date.now();
    if (this.#initialized && !this.#stopped) void this.#runner.run();
  }

  #tick(): void {
    for (const b of this.#balancers.values()) b.cleanupStaleSessions();
    if (!this.#initialized || this.#stopped) return;
    for (const portals of this.#portals.values()) {
      for (const p of portals.values()) {
        if (p.error) {
          this.#retryDue = true;
          void this.#runner.run();
          return;
        }
      }
    }
  }

  // ---- the sync ----

  /**
   * One sync. A sync that throws gives its changes back to the trackers and is retried with
   * back-off: a batch is never lost (a lost batch left Services without listeners, and deleted
   * Services' listeners open, until a restart).
   */
  async #sync(): Promise<void> {
    if (this.#stopped) return;
    clearTimeout(this.#syncRetry);
    this.#syncRetry = undefined;
    const started = performance.now();
    const local = this.#localAddresses();
    const serviceChanges = this.#serviceChanges.take();
    const endpointsChanges = this.#endpointsChanges.take();
    try {
      await this.#apply(serviceChanges, endpointsChanges, local, started);
    } catch (err) {
      this.#serviceChanges.restore(serviceChanges);
      this.#endpointsChanges.restore(endpointsChanges);
      throw err;
    }
    this.#syncBackoff.reset('sync');
  }

  #syncFailed(err: unknown): void {
    if (this.#stopped) return;
    const delayMs = this.#syncBackoff.next('sync');
    this.#log.error({ err, retryInMs: delayMs }, 'proxy sync failed: its changes stay pending and are retried');
    clearTimeout(this.#syncRetry);
    this.#syncRetry = setTimeout(() => {
      this.#syncRetry = undefined;
      void this.#runner.run();
    }, delayMs);
    this.#syncRetry.unref();
  }

  /**
   * This machine's addresses; when they cannot be read (`os.networkInterfaces()` throws EMFILE
   * when descriptors run out) the last ones read: the sync must go on, since closing the
   * listeners of deleted Services is what frees descriptors.
   */
  #localAddresses(): LocalAddresses {
    try {
      this.#local = new LocalAddresses();
    } catch (err) {
      this.#log.warn({ err }, 'cannot read the network interfaces; using the addresses read before');
      this.#local ??= new LocalAddresses({ interfaces: {} });
    }
    return this.#local;
  }

  /**
   * Listeners this sync may open (util/fd-budget.ts listenerRoom): RLIMIT_NOFILE minus the
   * connection caps in force, the reserve for proxied connections and the daemon's files, and
   * the descriptors in use, so that Services can never starve the API, DNS or proxied
   * connections, even when those fill their caps later. Undefined where /proc cannot tell.
   */
  async #listenerRoom(): Promise<number | undefined> {
    const lim = await readNofile();
    if (!lim || !Number.isFinite(lim.soft)) return undefined;
    const caps = this.#o.connectionCaps ?? 0;
    this.#fds = { limit: lim.soft, caps, reserve: proxyReserve(lim.soft) };
    let open: number | undefined;
    try {
      open = await openFds();
    } catch {
      return 0;
    }
    return open === undefined ? undefined : listenerRoom(lim.soft, caps, open);
  }

  async #apply(
    serviceChanges: Map<string, Change<ProxyService>>,
    endpointsChanges: Map<string, Change<ProxyEndpoints>>,
    local: LocalAddresses,
    started: number,
  ): Promise<void> {
    const triggers: number[] = [];
    if (this.#observers.size) {
      for (const key of endpointsChanges.keys()) {
        const ts = this.#triggerTimes.get(key);
        if (ts) for (const t of ts) triggers.push(t);
      }
    }
    this.#triggerTimes.clear();
    for (const [key, ch] of endpointsChanges) {
      if (ch.cur) this.#endpoints.set(key, ch.cur);
      else this.#endpoints.delete(key);
      const off = ch.cur?.offMachine ?? [];
      if (off.length && off.join() !== (ch.prev?.offMachine ?? []).join()) {
        this.#log.warn({ svc: key, addresses: off }, 'endpoint addresses off this machine are never dialled');
      }
    }

    const toClose: Listener[] = [];
    const toOpen: Portal[] = [];
    for (const [key, ch] of serviceChanges) {
      try {
        this.#applyService(key, ch.cur, local, toClose, toOpen);
      } catch (err) {
        this.#log.error({ svc: key, err }, 'cannot apply service change');
      }
    }
    if (this.#retryDue) {
      this.#retryDue = false;
      const queued = new Set(toOpen);
      for (const portals of this.#portals.values()) {
        for (const p of portals.values()) if (!p.listener && !queued.has(p)) toOpen.push(p);
      }
    }

    // endpoints of every touched Service into its balancers (a no-op when the set is unchanged)
    const touched = new Set([...serviceChanges.keys(), ...endpointsChanges.keys()]);
    const mine = new Set(this.#o.nodeNames ?? []);
    for (const key of touched) {
      const svc = this.#services.get(key);
      if (!svc) continue;
      const ep = this.#endpoints.get(key);
      const eps = ep?.ports;
      const onThisNode = (e: Endpoint): boolean => (ep?.nodes[e.id] ?? []).some((n) => mine.has(n));
      for (const p of svc.ports) {
        const all = eps?.[p.name] ?? [];
        const sets: Array<[string, readonly Endpoint[]]> = [[servicePortKey(key, p.name), all]];
        if (svc.internalLocal) sets.push([internalKey(key, p.name), all.filter(onThisNode)]);
        for (const [spKey, list] of sets) {
          const b = this.#balancers.get(spKey);
          if (b?.setEndpoints(list)) {
            this.#o.workers?.setEndpoints(spKey, b.endpoints);
            this.#log.debug({ svc: key, port: p.name, endpoints: b.endpoints.length, ...(spKey.endsWith(INTERNAL_SUFFIX) ? { internalTrafficPolicy: 'Local' } : {}) }, 'endpoints changed');
          }
        }
      }
    }

    // close before open: a port moving between services or port names is rebound in one sync
    await Promise.all(toClose.map((l) => this.#retire(l)));
    const room = { left: toOpen.length ? ((await this.#listenerRoom()) ?? Infinity) : 0 };
    const results = await Promise.all(toOpen.map((p) => this.#open(p, room)));
    // ClientIP affinity switched on or off: portals leave or join the workers
    if (this.#o.workers) for (const key of serviceChanges.keys()) await this.#reshare(key);

    for (const b of this.#balancers.values()) b.cleanupStaleSessions();
    if (toClose.length && this.listenerErrors().length) {
      // descriptors were freed: portals that failed get them now, not at the next retry tick
      this.#retryDue = true;
      void this.#runner.run();
    }
    if (toClose.length || toOpen.length) {
      this.#log.info(
        { opened: results.filter(Boolean).length, closed: toClose.length, failed: results.filter((r) => !r).length },
        'service listeners synced',
      );
    }
    if (this.#observers.size) {
      const at = Date.now();
      const e: SyncEvent = {
        durationSeconds: (performance.now() - started) / 1000,
        serviceChanges: serviceChanges.size,
        endpointsChanges: endpointsChanges.size,
        programmingSeconds: triggers.map((t) => Math.max(0, at - t) / 1000),
        at,
      };
      for (const o of this.#observers) {
        try {
          o(e);
        } catch (err) {
          this.#log.warn({ err }, 'sync observer threw');
        }
      }
    }
  }

  #applyService(
    key: string,
    cur: ProxyService | undefined,
    local: LocalAddresses,
    toClose: Listener[],
    toOpen: Portal[],
  ): void {
    const prev = this.#services.get(key);
    const served = cur && cur.ports.length > 0 ? cur : undefined;
    if (served) this.#services.set(key, served);
    else this.#services.delete(key);
    if (cur?.unsupportedPorts.length) {
      this.#log.warn({ svc: key, ports: cur.unsupportedPorts }, 'only TCP and UDP service ports are proxied');
    }

    // balancers: one per service port, shared by all its portals; with internalTrafficPolicy
    // Local a second one (this node's endpoints only) for its ClusterIP portals
    const wanted = new Set<string>();
    for (const p of served?.ports ?? []) {
      wanted.add(servicePortKey(key, p.name));
      if (served!.internalLocal) wanted.add(internalKey(key, p.name));
    }
    for (const p of prev?.ports ?? []) {
      for (const spKey of [servicePortKey(key, p.name), internalKey(key, p.name)]) {
        if (wanted.has(spKey) || !this.#balancers.has(spKey)) continue;
        this.#balancers.delete(spKey);
        this.#o.workers?.forgetServicePort(spKey);
      }
    }
    for (const spKey of wanted) {
      let b = this.#balancers.get(spKey);
      if (!b) this.#balancers.set(spKey, (b = new RoundRobin()));
      b.setAffinity(served!.affinity);
    }

    // portals: close what is no longer wanted, open what is new or failed before
    const desired = served ? this.#desiredPortals(served, local) : new Map<string, PortalSpec>();
    const have = this.#portals.get(key) ?? new Map<string, Portal>();
    // upstream applies the ranges to load-balancer IPs only (not to the clusterIP or nodePorts)
    const ranges = served?.sourceRanges.length ? new SourceRanges(served.sourceRanges) : undefined;
    for (const [id, p] of have) {
      if (desired.has(id)) continue;
      if (p.listener) toClose.push(p.listener);
      have.delete(id);
    }
    for (const [id, spec] of desired) {
      let p = have.get(id);
      const portalRanges = spec.kind === 'loadBalancer' ? ranges : undefined;
      if (p && p.spec.servicePort !== spec.servicePort) {
        // another balancer (internalTrafficPolicy changed): its listener holds the old one
        if (p.listener) toClose.push(p.listener);
        have.delete(id);
        p = undefined;
      }
      if (!p) {
        const np: Portal = { spec, ranges: portalRanges };
        have.set(id, np);
        toOpen.push(np);
      } else {
        p.spec = spec;
        p.ranges = portalRanges;
        if (p.listener) {
          p.listener.sourceRanges = portalRanges;
          this.#o.workers?.setRanges(id, portalRanges?.ranges);
        } else toOpen.push(p);
      }
    }
    if (ranges && served!.loadBalancerIPs.length) {
      this.#log.debug({ svc: key, ranges: ranges.ranges }, 'load-balancer portals restricted to source ranges');
    }
    if (have.size) this.#portals.set(key, have);
    else this.#portals.delete(key);
  }

  /** clusterIP:port, nodeAddress:nodePort, local LB ingress IP:port, local externalIP:port — deduplicated. */
  #desiredPortals(svc: ProxyService, local: LocalAddresses): Map<string, PortalSpec> {
    const out = new Map<string, PortalSpec>();
    const seen = new Set<string>();
    const notLocal = new Set<string>();
    const add = (portName: string, protocol: Protocol, address: string, port: number, kind: PortalKind): void => {
      const where = `${protocol}/${hostPort(address, port)}`;
      if (seen.has(where)) return;
      seen.add(where);
      const id = portalId(svc.key, portName, protocol, address, port);
      out.set(id, {
        id,
        svc: svc.key,
        portName,
        servicePort: kind === 'clusterIP' && svc.internalLocal ? internalKey(svc.key, portName) : servicePortKey(svc.key, portName),
        protocol,
        address,
        port,
        kind,
      });
    };
    for (const p of svc.ports) {
      for (const ip of svc.clusterIPs) add(p.name, p.protocol, ip, p.port, 'clusterIP');
      if (p.nodePort > 0) for (const ip of this.#o.nodeAddresses) add(p.name, p.protocol, ip, p.nodePort, 'nodePort');
      for (const ip of svc.loadBalancerIPs) {
        if (local.has(ip)) add(p.name, p.protocol, ip, p.port, 'loadBalancer');
        else notLocal.add(ip);
      }
      for (const ip of svc.externalIPs) {
        if (local.has(ip)) add(p.name, p.protocol, ip, p.port, 'externalIP');
        else notLocal.add(ip);
      }
    }
    if (notLocal.size) {
      this.#log.info(
        { svc: svc.key, addresses: [...notLocal] },
        'external/load-balancer IPs that are not addresses of this machine are not served here',
      );
    }
    return out;
  }

  /** the listener's totals: its own, bytes of open connections included, plus the workers' */
  #totals(l: Listener): { active: number; counters: ListenerCounters; processes: number } {
    const own = withLive(l);
    const workers = this.#o.workers;
    if (!workers) return { active: l.active, counters: own, processes: 1 };
    const w = workers.listenerTotals(l.spec.id);
    return { active: l.active + w.active, counters: addCounters(own, w.counters), processes: 1 + workers.accepting(l.spec.id) };
  }

  /** Passes a TCP portal to the workers unless its Service pins clients (ClientIP affinity). */
  #share(p: Portal): void {
    const workers = this.#o.workers;
    const l = p.listener;
    if (!workers || !l || !isTcp(l) || !l.handle) return;
    const b = this.#balancers.get(p.spec.servicePort);
    if (!b || b.sticky) return;
    workers.share(p.spec, l.handle, b.endpoints, p.ranges?.ranges);
  }

  async #reshare(key: string): Promise<void> {
    const workers = this.#o.workers!;
    for (const p of this.#portals.get(key)?.values() ?? []) {
      if (!p.listener || !isTcp(p.listener)) continue;
      const sticky = this.#balancers.get(p.spec.servicePort)?.sticky ?? false;
      if (sticky && workers.isShared(p.spec.id)) await workers.unshare(p.spec.id);
      else if (!sticky && !workers.isShared(p.spec.id)) this.#share(p);
    }
  }

  async #retire(l: Listener): Promise<void> {
    try {
      // closed in the workers first: the socket they were passed must stay open until they have it
      await this.#o.workers?.unshare(l.spec.id);
      this.#o.workers?.forget(l.spec.id);
      await l.close();
    } catch (err) {
      this.#log.warn({ svc: l.spec.svc, err }, 'closing listener failed');
    }
    if (l.active > 0) this.#draining.add(l);
    this.#log.debug(
      { svc: l.spec.svc, protocol: l.spec.protocol, address: hostPort(l.spec.address, l.spec.port), draining: l.active },
      'listener closed',
    );
  }

  /**
   * Opens one portal if `room` has a descriptor left for it; true on success. A failure is
   * logged and reported once per distinct error and retried later.
   */
  async #open(p: Portal, room: { left: number }): Promise<boolean> {
    const spec = p.spec;
    const balancer = this.#balancers.get(spec.servicePort);
    if (!balancer) return false;
    const log = this.#log;
    const TcpImpl = this.#o.dataPath === 'uv' ? TcpListener : NetTcpListener;
    const l: Listener =
      spec.protocol === 'TCP'
        ? new TcpImpl({
            spec,
            balancer,
            dialTimeoutsMs: this.#o.dialTimeoutsMs,
            log,
            onDrained: (x) => this.#draining.delete(x),
            sourceRanges: p.ranges,
          })
        : new UdpListener({ spec, balancer, idleTimeoutMs: this.#o.udpIdleTimeoutMs, log, sourceRanges: p.ranges });
    const where = hostPort(spec.address, spec.port);
    try {
      if (room.left-- <= 0) throw Object.assign(new Error('no descriptor left for another listener'), { code: 'EMFILE' });
      await l.open();
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      const code = err.code ?? 'UNKNOWN';
      const message = bindErrorMessage(spec, err, this.#fds);
      if (p.error?.code !== code) {
        log.warn({ svc: spec.svc, protocol: spec.protocol, address: where, code }, message);
        const reported = Object.assign(new Error(message, { cause: err }), { code });
        try {
          this.#o.onListenerError?.(spec.svc, spec.address, spec.port, reported);
        } catch (cbErr) {
          log.warn({ err: cbErr }, 'onListenerError callback threw');
        }
      } else {
        log.debug({ svc: spec.svc, protocol: spec.protocol, address: where, code }, 'listener retry failed');
      }
      p.error = { code, message };
      return false;
    }
    if (this.#stopped) {
      await l.destroy();
      return false;
    }
    p.listener = l;
    this.#share(p);
    if (p.error) {
      p.error = undefined;
      log.info({ svc: spec.svc, protocol: spec.protocol, address: where }, 'listener recovered');
      try {
        this.#o.onListenerRecovered?.(spec.svc, spec.address, spec.port);
      } catch (cbErr) {
        log.warn({ err: cbErr }, 'onListenerRecovered callback threw');
      }
    } else {
      log.debug({ svc: spec.svc, protocol: spec.protocol, address: where, kind: spec.kind }, 'listening');
    }
    return true;
  }
}

/** the balancer of a Local Service's ClusterIP portals: `ns/name:port#internal` */
const INTERNAL_SUFFIX = '#internal';
const internalKey = (svc: string, portName: string): string => `${servicePortKey(svc, portName)}${INTERNAL_SUFFIX}`;

function isTcp(l: Listener): l is TcpPortalListener {
  return l.spec.protocol === 'TCP';
}
