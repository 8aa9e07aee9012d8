import { isIPv4 } from 'node:net';
import type { Endpoints, Service } from '../../api/types.js';
import { keyOf } from '../../api/types.js';
import type { InformerFactory } from '../../store/informer.js';
import { deepEqual } from './change-tracker.js';
import { type AffinityConfig, type Endpoint, endpointId } from './round-robin.js';
import { loadBalancerSourceRanges } from './source-ranges.js';

/** One port of a Service as the proxy sees it. Identity within the Service is `name`. */
export interface ServicePortInfo {
  /** '' for the single unnamed port */
  readonly name: string;
  readonly protocol: 'TCP' | 'UDP';
  readonly port: number;
  /** 0 when the Service has no node ports (or its type does not open them) */
  readonly nodePort: number;
}

/**
 * The part of a Service that decides listeners and balancing, in plain data so that the change
 * tracker can drop updates that do not concern the proxy (status conditions, labels, ...).
 * Headless and ExternalName Services have no ports: nothing to serve.
 */
export interface ProxyService {
  /** `ns/name` */
  readonly key: string;
  readonly clusterIPs: readonly string[];
  readonly ports: readonly ServicePortInfo[];
  readonly externalIPs: readonly string[];
  /**
   * `status.loadBalancer.ingress[].ip` of a type LoadBalancer Service (hostname-only and
   * `ipMode: Proxy` entries are ignored, as upstream; a stale status on another type is not served)
   */
  readonly loadBalancerIPs: readonly string[];
  /** CIDRs allowed to use the load-balancer portals (`loadBalancerSourceRanges`); empty: all */
  readonly sourceRanges: readonly string[];
  readonly affinity: Readonly<AffinityConfig>;
  /**
   * `internalTrafficPolicy: Local`: traffic to the ClusterIPs goes to endpoints on this proxy's
   * nodes only, and is dropped when there are none (upstream); NodePort, load-balancer and
   * external IPs keep using every endpoint
   */
  readonly internalLocal: boolean;
  /** ports the proxy cannot serve, e.g. `SCTP/5000`; reported once per change */
  readonly unsupportedPorts: readonly string[];
}

/** Ready endpoints of one Service by Endpoints port *name* (= the Service port name), sorted by id. */
export interface ProxyEndpoints {
  readonly key: string;
  readonly ports: Readonly<Record<string, readonly Endpoint[]>>;
  /** endpoint id → the nodes its address is on (`addresses[].nodeName`), for ids that have one */
  readonly nodes: Readonly<Record<string, readonly string[]>>;
  /** ready addresses left out because they are not loopback addresses (never dialled), sorted */
  readonly offMachine: readonly string[];
  /**
   * ms since the epoch of the oldest change this object reflects (annotation
   * `endpoints.kubernetes.io/last-change-trigger-time`), for the network programming latency;
   * not part of the object's identity (see `sameEndpoints`)
   */
  readonly triggerTime?: number;
}

export const TRIGGER_TIME_ANNOTATION = 'endpoints.kubernetes.io/last-change-trigger-time';

/** Equality that decides whether an Endpoints change reaches the balancers: the trigger time is not part of it. */
export function sameEndpoints(a: ProxyEndpoints, b: ProxyEndpoints): boolean {
  return a.key === b.key && deepEqual(a.ports, b.ports) && deepEqual(a.nodes, b.nodes) && deepEqual(a.offMachine, b.offMachine);
}

/** The proxy only ever connects to this machine's loopback (127.0.0.0/8, ::1). */
export function isLoopbackAddress(ip: string): boolean {
  return ip === '::1' || (isIPv4(ip) && ip.startsWith('127.'));
}

/** `pkg/proxy/util.ShouldSkipService`: headless and ExternalName Services get no listeners. */
export function shouldSkip(svc: Service): boolean {
  const ip = svc.spec?.clusterIP;
  return !ip || ip === 'None' || svc.spec?.type === 'ExternalName';
}

export function narrowService(svc: Service): ProxyService {
  const key = keyOf(svc);
  const spec = svc.spec ?? {};
  const affinity: AffinityConfig = {
    type: spec.sessionAffinity === 'ClientIP' ? 'ClientIP' : 'None',
    timeoutSeconds: spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? 0,
  };
  if (shouldSkip(svc)) {
    return { key, clusterIPs: [], ports: [], externalIPs: [], loadBalancerIPs: [], sourceRanges: [], affinity, internalLocal: false, unsupportedPorts: [] };
  }
  const opensNodePorts = spec.type === 'NodePort' || spec.type === 'LoadBalancer';
  const ports: ServicePortInfo[] = [];
  const unsupportedPorts: string[] = [];
  for (const p of spec.ports ?? []) {
    const protocol = p.protocol ?? 'TCP';
    if (protocol !== 'TCP' && protocol !== 'UDP') {
      unsupportedPorts.push(`${protocol}/${p.port}`);
      continue;
    }
    ports.push({ name: p.name ?? '', protocol, port: p.port, nodePort: opensNodePorts ? (p.nodePort ?? 0) : 0 });
  }
  const clusterIPs = spec.clusterIPs?.length ? [...spec.clusterIPs] : [spec.clusterIP!];
  const loadBalancerIPs: string[] = [];
  if (spec.type === 'LoadBalancer') {
    // ipMode Proxy: traffic reaches the pods through the load balancer, not at its IP (as kube-proxy)
    for (const ing of svc.status?.loadBalancer?.ingress ?? []) if (ing.ip && ing.ipMode !== 'Proxy') loadBalancerIPs.push(ing.ip);
  }
  return {
    key,
    clusterIPs: clusterIPs.filter((ip) => ip && ip !== 'None'),
    ports,
    externalIPs: [...(spec.externalIPs ?? [])],
    loadBalancerIPs,
    sourceRanges: loadBalancerSourceRanges(svc),
    affinity,
    internalLocal: spec.internalTrafficPolicy === 'Local',
    unsupportedPorts,
  };
}

/**
 * `BuildPortsToEndpointsMap`: `subsets[].addresses` only (not-ready ones are not served), by port
 * name. Addresses off this machine's loopback (e.g. a hand-written `192.0.2.42`) are left out:
 * kubeloop never sends traffic off the machine.
 */
export function narrowEndpoints(ep: Endpoints): ProxyEndpoints {
  const byName = new Map<string, Map<string, Endpoint>>();
  const offMachine = new Set<string>();
  const nodeSets = new Map<string, Set<string>>();
  for (const ss of ep.subsets ?? []) {
    for (const port of ss.ports ?? []) {
      if (!(port.port > 0)) continue;
      const name = port.name ?? '';
      let m = byName.get(name);
      if (!m) byName.set(name, (m = new Map()));
      for (const a of ss.addresses ?? []) {
        if (!a.ip) continue;
        if (!isLoopbackAddress(a.ip)) {
          offMachine.add(a.ip);
          continue;
        }
        const id = endpointId(a.ip, port.port);
        if (!m.has(id)) m.set(id, Object.freeze({ host: a.ip, port: port.port, id }));
        // one loopback address may be listed by several nodes (each host's own 127.0.0.1)
        if (a.nodeName) {
          let set = nodeSets.get(id);
          if (!set) nodeSets.set(id, (set = new Set()));
          set.add(a.nodeName);
        }
      }
    }
  }
  const ports: Record<string, Endpoint[]> = {};
  for (const name of [...byName.keys()].sort()) {
    ports[name] = [...byName.get(name)!.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }
  const nodes: Record<string, string[]> = {};
  for (const id of [...nodeSets.keys()].sort()) nodes[id] = [...nodeSets.get(id)!].sort();
  const trigger = Date.parse(ep.metadata?.annotations?.[TRIGGER_TIME_ANNOTATION] ?? '');
  return {
    key: keyOf(ep),
    ports,
    nodes,
    offMachine: [...offMachine].sort(),
    ...(Number.isFinite(trigger) ? { triggerTime: trigger } : {}),
  };
}

/**
 * What the proxy is told. Add and delete are updates with nothing on one side; handlers record
 * and return (the proxier applies changes in its own sync). `onSynced` is called once, after
 * both the initial Service and Endpoints lists have been delivered.
 */
export interface ProxyHandler {
  onServiceAdd(svc: ProxyService): void;
  onServiceUpdate(old: ProxyService, cur: ProxyService): void;
  onServiceDelete(svc: ProxyService): void;
  onEndpointsAdd(ep: ProxyEndpoints): void;
  onEndpointsUpdate(old: ProxyEndpoints, cur: ProxyEndpoints): void;
  onEndpointsDelete(ep: ProxyEndpoints): void;
  onSynced(): void;
}

export interface ProxyConfigOptions {
  informers: InformerFactory;
  handler: ProxyHandler;
}

/** Informer adapter: narrows Service and Endpoints objects and fans them out. Holds no other state. */
export class ProxyConfig {
  readonly #informers: InformerFactory;
  readonly #h: ProxyHandler;
  #started = false;
  #stopped = false;
  #servicesSynced = false;
  #endpointsSynced = false;

  constructor(o: ProxyConfigOptions) {
    this.#informers = o.informers;
    this.#h = o.handler;
  }

  /** Registers the handlers and starts both (shared) informers; resolves when both have synced. */
  async start(): Promise<void> {
    const services = this.#informers.for<Service>('Service');
    const endpoints = this.#informers.for<Endpoints>('Endpoints');
    if (!this.#started) {
      this.#started = true;
      services.addHandler({
        onAdd: (o) => this.#live() && this.#h.onServiceAdd(narrowService(o)),
        onUpdate: (a, b) => this.#live() && this.#h.onServiceUpdate(narrowService(a), narrowService(b)),
        onDelete: (o) => this.#live() && this.#h.onServiceDelete(narrowService(o)),
        onSynced: () => {
          this.#servicesSynced = true;
          this.#maybeSynced();
        },
      });
      endpoints.addHandler({
        onAdd: (o) => this.#live() && this.#h.onEndpointsAdd(narrowEndpoints(o)),
        onUpdate: (a, b) => this.#live() && this.#h.onEndpointsUpdate(narrowEndpoints(a), narrowEndpoints(b)),
        onDelete: (o) => this.#live() && this.#h.onEndpointsDelete(narrowEndpoints(o)),
        onSynced: () => {
          this.#endpointsSynced = true;
          this.#maybeSynced();
        },
      });
    }
    await Promise.all([services.start(), endpoints.start()]);
  }

  /** Informer handlers cannot be removed: after stop they are ignored. */
  stop(): void {
    this.#stopped = true;
  }

  #live(): boolean {
    return !this.#stopped;
  }

  #maybeSynced(): void {
    if (this.#servicesSynced && this.#endpointsSynced && this.#live()) this.#h.onSynced();
  }
}
