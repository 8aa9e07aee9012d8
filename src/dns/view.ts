/**
 * The DnsView kept current from the Service, Endpoints and Pod informers. Handlers only
 * update indexes (one Service's entry, its reverse names, pod IPs per namespace) and report a
 * change, so the server can drop cached answers: a change is visible to the next query.
 */
import type { Endpoints, EndpointAddress, EndpointPort, Pod, Service, ServicePort, Stored } from '../api/types.js';
import { keyOf, objectKey } from '../api/types.js';
import type { Informer, InformerFactory } from '../store/informer.js';
import type { DnsEndpoint, DnsPort, DnsService, DnsView } from './lookup.js';
import { canonicalIP, dashedIP } from './ip.js';

const TOLERATE_UNREADY = 'service.alpha.kubernetes.io/tolerate-unready-endpoints';
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export interface InformerViewOptions {
  informers: InformerFactory;
  /** called after every change that can alter an answer (and once all informers have synced) */
  onChange?: () => void;
}

export class InformerView implements DnsView {
  readonly #services: Informer<Service>;
  readonly #endpoints: Informer<Endpoints>;
  readonly #pods: Informer<Pod>;
  readonly #onChange: () => void;
  /** ns/name → entry */
  readonly #entries = new Map<string, DnsService>();
  /** canonical IP → names (relative to the zone) from ClusterIPs, and from endpoint addresses */
  readonly #clusterNames = new Map<string, Map<string, number>>();
  readonly #endpointNames = new Map<string, Map<string, number>>();
  /** `ns/ip` → number of pods with that IP */
  readonly #podIPs = new Map<string, number>();
  /** namespace → number of Services and Pods in it */
  readonly #namespaces = new Map<string, number>();
  #serial = nowSerial();
  #attached = false;
  #active = false;
  #synced = false;

  constructor(o: InformerViewOptions) {
    this.#services = o.informers.for<Service>('Service');
    this.#endpoints = o.informers.for<Endpoints>('Endpoints');
    this.#pods = o.informers.for<Pod>('Pod');
    this.#onChange = o.onChange ?? (() => {});
  }

  /** Attach handlers and start the informers (idempotent on their side); resolves when all have synced. */
  start(): Promise<void> {
    if (!this.#attached) {
      this.#attached = true;
      this.#active = true;
      const synced = (): void => this.#changed();
      this.#services.addHandler({
        onAdd: (s) => this.#rebuild(keyOf(s)),
        onUpdate: (_, s) => this.#rebuild(keyOf(s)),
        onDelete: (s) => this.#rebuild(keyOf(s)),
        onSynced: synced,
      });
      this.#endpoints.addHandler({
        onAdd: (e) => this.#rebuild(keyOf(e)),
        onUpdate: (_, e) => this.#rebuild(keyOf(e)),
        onDelete: (e) => this.#rebuild(keyOf(e)),
        onSynced: synced,
      });
      this.#pods.addHandler({
        onAdd: (p) => this.#pod(undefined, p),
        onUpdate: (old, p) => this.#pod(old, p),
        onDelete: (p) => this.#pod(p, undefined),
        onSynced: synced,
      });
    }
    return Promise.all([this.#services.start(), this.#endpoints.start(), this.#pods.start()]).then(() => {});
  }

  /** Stop reacting to informer events (informers have no way to remove a handler). */
  stop(): void {
    this.#active = false;
  }

  synced(): boolean {
    // informers never go back to unsynced: remember it (this is on every query's path)
    this.#synced ||= this.#services.hasSynced() && this.#endpoints.hasSynced() && this.#pods.hasSynced();
    return this.#synced;
  }

  serial(): number {
    return this.#serial;
  }

  service(namespace: string, name: string): DnsService | undefined {
    return this.#entries.get(objectKey(namespace, name));
  }

  hasNamespace(namespace: string): boolean {
    return (this.#namespaces.get(namespace) ?? 0) > 0;
  }

  reverse(ip: string): readonly string[] {
    const names = this.#clusterNames.get(ip) ?? this.#endpointNames.get(ip);
    return names ? [...names.keys()].sort() : [];
  }

  hasPodIP(namespace: string, ip: string): boolean {
    return (this.#podIPs.get(`${namespace}/${ip}`) ?? 0) > 0;
  }

  #changed(): void {
    if (!this.#active) return;
    this.#serial = Math.max(this.#serial + 1, nowSerial());
    this.#onChange();
  }

  /** Recompute one Service's entry from the informer caches (already updated when handlers run). */
  #rebuild(key: string): void {
    if (!this.#active) return;
    const svc = this.#services.getByKey(key);
    const next = svc ? toDnsService(svc, this.#endpoints.getByKey(key)) : undefined;
    const prev = this.#entries.get(key);
    if (prev) this.#index(prev, -1);
    if (next) {
      this.#entries.set(key, next);
      this.#index(next, +1);
    } else {
      this.#entries.delete(key);
    }
    this.#changed();
  }

  #index(e: DnsService, delta: 1 | -1): void {
    bump(this.#namespaces, e.namespace, delta);
    const base = `${e.name}.${e.namespace}.svc`;
    for (const ip of e.clusterIPs) setMember(this.#clusterNames, canonicalIP(ip), base, delta);
    for (const ep of e.endpoints) setMember(this.#endpointNames, canonicalIP(ep.ip), `${ep.hostname}.${base}`, delta);
  }

  #pod(old: Stored<Pod> | undefined, cur: Stored<Pod> | undefined): void {
    if (!this.#active) return;
    const before = old ? podKeys(old) : [];
    const after = cur ? podKeys(cur) : [];
    const nsBefore = old?.metadata.namespace;
    const nsAfter = cur?.metadata.namespace;
    if (nsBefore === nsAfter && sameList(before, after) && old && cur) return;
    for (const k of before) bump(this.#podIPs, k, -1);
    for (const k of after) bump(this.#podIPs, k, +1);
    if (nsBefore) bump(this.#namespaces, nsBefore, -1);
    if (nsAfter) bump(this.#namespaces, nsAfter, +1);
    this.#changed();
  }
}

/** The DNS shape of a Service and its Endpoints. Exported for tests. */
export function toDnsService(svc: Service, ep: Endpoints | undefined): DnsService {
  const namespace = (svc.metadata?.namespace ?? 'default').toLowerCase();
  const name = (svc.metadata?.name ?? '').toLowerCase();
  const spec = svc.spec ?? {};
  const ports = (spec.ports ?? []).map(toPort);
  if (spec.type === 'ExternalName') {
    const externalName = (spec.externalName ?? '').toLowerCase().replace(/\.$/, '');
    return { namespace, name, kind: 'ExternalName', clusterIPs: [], externalName, ports, endpoints: [] };
  }
  const publishAll =
    spec.publishNotReadyAddresses === true || svc.metadata?.annotations?.[TOLERATE_UNREADY] === 'true';
  const endpoints: DnsEndpoint[] = [];
  for (const subset of ep?.subsets ?? []) {
    const epPorts = (subset.ports ?? []).map(toPort);
    const addrs: EndpointAddress[] = [...(subset.addresses ?? []), ...(publishAll ? subset.notReadyAddresses ?? [] : [])];
    for (const a of addrs) {
      if (!a.ip || !canonicalIP(a.ip)) continue;
      const host = a.hostname?.toLowerCase();
      endpoints.push({ ip: a.ip, hostname: host && DNS_LABEL.test(host) ? host : dashedIP(a.ip), ports: epPorts });
    }
  }
  if (spec.clusterIP === 'None') {
    return { namespace, name, kind: 'Headless', clusterIPs: [], externalName: '', ports, endpoints };
  }
  const ips = spec.clusterIPs?.length ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : [];
  const clusterIPs = ips.filter((ip) => canonicalIP(ip) !== undefined);
  return { namespace, name, kind: 'ClusterIP', clusterIPs, externalName: '', ports, endpoints };
}

function toPort(p: ServicePort | EndpointPort): DnsPort {
  return { name: (p.name ?? '').toLowerCase(), protocol: (p.protocol ?? 'TCP').toLowerCase(), port: p.port ?? 0 };
}

function podKeys(p: Pod): string[] {
  const ns = p.metadata?.namespace ?? 'default';
  const ips = p.status?.podIPs?.length ? p.status.podIPs.map((x) => x.ip) : [p.status?.podIP];
  const out: string[] = [];
  for (const ip of ips) {
    const c = ip ? canonicalIP(ip) : undefined;
    if (c) out.push(`${ns}/${c}`);
  }
  return out;
}

function bump(m: Map<string, number>, k: string, delta: number): void {
  const n = (m.get(k) ?? 0) + delta;
  if (n > 0) m.set(k, n);
  else m.delete(k);
}

/** Reference-counted membership: the same name may come from several subsets or IP families. */
function setMember(m: Map<string, Map<string, number>>, ip: string | undefined, name: string, delta: number): void {
  if (!ip) return;
  let names = m.get(ip);
  if (!names) m.set(ip, (names = new Map()));
  bump(names, name, delta);
  if (names.size === 0) m.delete(ip);
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function nowSerial(): number {
  return Math.floor(Date.now() / 1000);
}
