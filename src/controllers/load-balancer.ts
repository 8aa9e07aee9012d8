import { isIP } from 'node:net';
import type { Logger } from 'pino';
import type { LoadBalancerIngress } from 'kubernetes-types/core/v1.js';
import type { Mutable, Node, Service, Stored } from '../api/types.js';
import { keyOf } from '../api/types.js';
import type { Informer, InformerFactory } from '../store/informer.js';
import type { Store } from '../store/types.js';
import { IpAllocator } from '../util/allocator.js';
import { type Cidr, isLoopback, parseCidr } from '../util/cidr.js';
import type { EventRecorder } from '../store/events.js';
import { type ReconcileContext, Runner } from './runner.js';

export interface LoadBalancerControllerOptions {
  store: Store;
  informers: InformerFactory;
  log: Logger;
  events: EventRecorder;
  /** where ingress IPs come from, a CIDR inside 127.0.0.0/8 (daemon flag `--lb-pool`) */
  pool: string;
  workers?: number;
}

/**
 * The built-in load-balancer provider (the role of a cloud's LB controller, k3s' ServiceLB or
 * MetalLB; here on loopback): every Service of type LoadBalancer without a `loadBalancerClass`
 * gets its own ingress IP from the pool, written to `status.loadBalancer.ingress` through the
 * status subresource. The proxy then listens on `ingressIP:port` like on any local address, so
 * two LoadBalancer Services on the same port never collide.
 *
 * Several machines (Nodes with two or more distinct non-loopback InternalIPs, ready or not): a
 * pool address inside 127/8 would reach only the host it is asked on, so instead — as k3s'
 * ServiceLB does — the ingress lists the InternalIP of every Ready node of those machines, and
 * each node's proxy listens on the Service's port at its own address (the others are not local
 * there). A node that turns NotReady drops out of every ingress and comes back when Ready; while
 * node addresses are published no pool address is held (and `spec.loadBalancerIP` is ignored).
 *
 * The IP is released when the Service is deleted, changes type (the store clears its status on
 * that update, as upstream), or gets another class. The allocation is not stored anywhere but in
 * the statuses: it is rebuilt from them before the first reconcile, so a restart keeps every
 * Service's address. `spec.loadBalancerIP` (deprecated upstream) is honoured when it is a free
 * address of the pool; otherwise the Service gets a Warning event and no address.
 */
export class LoadBalancerController {
  readonly runner: Runner;
  readonly pool: Cidr;
  readonly #store: Store;
  readonly #events: EventRecorder;
  readonly #services: Informer<Service>;
  readonly #nodes: Informer<Node>;
  /** the addresses node mode publishes (sorted), or undefined on one machine: see #nodeIngress */
  #nodeIPs: string[] | undefined;
  readonly #ips: IpAllocator;
  readonly #ipOf = new Map<string, string>();
  readonly #ownerOf = new Map<string, string>();
  /** LoadBalancer Services waiting for a free address: reconciled again when one is released */
  readonly #waiting = new Set<string>();
  #restored = false;

  constructor(o: LoadBalancerControllerOptions) {
    this.#store = o.store;
    this.#events = o.events;
    this.pool = parseCidr(o.pool);
    this.#ips = new IpAllocator(this.pool);
    this.#services = o.informers.for<Service>('Service');
    this.#nodes = o.informers.for<Node>('Node');
    this.runner = new Runner({
      name: 'service-lb',
      reconciler: this,
      log: o.log,
      informers: [this.#services, this.#nodes],
      workers: o.workers ?? 2,
    });
    this.#services.addHandler({
      onAdd: (s) => this.#enqueueIfConcerned(s),
      onUpdate: (old, s) => {
        if (lbView(old) !== lbView(s)) this.#enqueueIfConcerned(s, old);
      },
      onDelete: (s) => {
        if (this.#ipOf.has(keyOf(s))) this.runner.enqueue(keyOf(s));
        this.#waiting.delete(keyOf(s));
      },
    });
    const nodesChanged = (): void => {
      const was = JSON.stringify(this.#nodeIPs ?? null);
      this.#nodeIPs = nodeIngress(this.#nodes.list());
      if (JSON.stringify(this.#nodeIPs ?? null) === was) return;
      for (const s of this.#services.list()) if (provides(s) || this.#ipOf.has(keyOf(s))) this.runner.enqueue(keyOf(s));
    };
    this.#nodes.addHandler({ onAdd: nodesChanged, onUpdate: nodesChanged, onDelete: nodesChanged });
  }

  start(): Promise<void> {
    return this.runner.start();
  }

  stop(): Promise<void> {
    return this.runner.stop();
  }

  async reconcile(key: string, { log }: ReconcileContext): Promise<void> {
    this.#restoreOnce(log);
    const svc = this.#services.getByKey(key);
    if (!svc || svc.metadata.deletionTimestamp || !provides(svc)) {
      this.#waiting.delete(key);
      const ip = this.#release(key);
      if (ip) log.info({ ip }, 'load-balancer address released');
      // our address left on a LoadBalancer Service we no longer provide (type changes clear it in the store)
      const ours = ip ? [ip] : this.#nodeIPs;
      if (svc && svc.spec?.type === 'LoadBalancer' && ours?.length && ingressIPs(svc).join() === ours.join()) await this.#writeIngress(svc, undefined);
      return;
    }

    this.#nodeIPs = nodeIngress(this.#nodes.list());
    if (this.#nodeIPs) return this.#ensureNodeIngress(key, svc, this.#nodeIPs, log);

    const requested = svc.spec?.loadBalancerIP || undefined;
    let ip = this.#ipOf.get(key);
    if (ip && requested && ip !== requested) {
      this.#release(key);
      ip = undefined;
    }
    if (!ip) {
      ip = this.#claim(key, svc, requested, log);
      if (!ip) return;
    }
    const want: LoadBalancerIngress[] = [{ ip, ipMode: 'VIP' }];
    if (sameIngress(svc.status?.loadBalancer?.ingress, want)) return;
    const written = await this.#writeIngress(svc, want);
    if (written) {
      log.info({ ip }, 'load-balancer address assigned');
      this.#events.event(svc, 'Normal', 'EnsuredLoadBalancer', `Ensured load balancer: ${ip} (pool ${this.pool.text})`);
    }
  }

  /** Several machines: the ingress is the Ready nodes' addresses; a pool address held before is given back. */
  async #ensureNodeIngress(key: string, svc: Stored<Service>, ips: string[], log: Logger): Promise<void> {
    this.#waiting.delete(key);
    const released = this.#release(key);
    if (released) log.info({ ip: released }, 'load-balancer pool address released: the ingress lists the nodes\' addresses');
    const want: LoadBalancerIngress[] = ips.map((ip) => ({ ip, ipMode: 'VIP' }));
    if (sameIngress(svc.status?.loadBalancer?.ingress, want)) return;
    if (await this.#writeIngress(svc, want.length ? want : undefined)) {
      log.info({ ips }, 'load-balancer ingress set to the ready nodes\' addresses');
      this.#events.event(svc, 'Normal', 'EnsuredLoadBalancer', ips.length ? `Ensured load balancer: ${ips.join(', ')} (the Ready nodes' addresses)` : 'No Ready node: the load balancer has no address');
    }
  }

  /** Takes an address for `key`: the requested one, the one its status already shows, or any free one. */
  #claim(key: string, svc: Stored<Service>, requested: string | undefined, log: Logger): string | undefined {
    if (requested) {
      const owner = this.#ownerOf.get(requested);
      let problem: string | undefined;
      if (!this.#ips.contains(requested)) {
        problem =
          `spec.loadBalancerIP ${requested} is not in the load-balancer pool ${this.pool.text}: ` +
          'remove loadBalancerIP to get an address from the pool, or start kubeloop with an --lb-pool that covers it';
      } else if (owner && owner !== key) {
        problem = `spec.loadBalancerIP ${requested} is already the address of service ${owner}: choose another or remove loadBalancerIP`;
      }
      if (problem) {
        log.warn({ ip: requested }, problem);
        this.#events.event(svc, 'Warning', 'AllocationFailed', problem);
        return undefined;
      }
      this.#take(key, requested);
      return requested;
    }
    for (const ip of ingressIPs(svc)) {
      if (this.#ips.contains(ip) && !this.#ownerOf.has(ip)) {
        this.#take(key, ip);
        return ip;
      }
    }
    const ip = this.#ips.allocateNext();
    if (!ip) {
      const problem =
        `no free address in the load-balancer pool ${this.pool.text}: ` +
        'delete LoadBalancer Services you do not need, or start kubeloop with a larger --lb-pool';
      if (!this.#waiting.has(key)) {
        log.warn(problem);
        this.#events.event(svc, 'Warning', 'AllocationFailed', problem);
      }
      this.#waiting.add(key);
      return undefined;
    }
    this.#waiting.delete(key);
    this.#ipOf.set(key, ip);
    this.#ownerOf.set(ip, key);
    return ip;
  }

  #take(key: string, ip: string): void {
    this.#ips.allocate(ip);
    this.#ipOf.set(key, ip);
    this.#ownerOf.set(ip, key);
    this.#waiting.delete(key);
  }

  #release(key: string): string | undefined {
    const ip = this.#ipOf.get(key);
    if (!ip) return undefined;
    this.#ipOf.delete(key);
    this.#ownerOf.delete(ip);
    this.#ips.release(ip);
    for (const k of this.#waiting) this.runner.enqueue(k);
    return ip;
  }

  /**
   * Before the first reconcile: every address the statuses show, oldest Service first (a
   * duplicate — two statuses with one address — goes to the older one; the other gets a new one).
   */
  #restoreOnce(log: Logger): void {
    if (this.#restored) return;
    this.#restored = true;
    const lbs = this.#services
      .list()
      .filter(provides)
      .sort((a, b) => cmp(a.metadata.creationTimestamp ?? '', b.metadata.creationTimestamp ?? '') || cmp(keyOf(a), keyOf(b)));
    let n = 0;
    for (const s of lbs) {
      const key = keyOf(s);
      if (this.#ipOf.has(key)) continue;
      const want = s.spec?.loadBalancerIP || undefined;
      const ip = ingressIPs(s).find((x) => this.#ips.contains(x) && !this.#ownerOf.has(x) && (!want || x === want));
      if (!ip) continue;
      this.#take(key, ip);
      n++;
    }
    if (n) log.info({ restored: n, pool: this.pool.text }, 'load-balancer addresses restored from service statuses');
  }

  /** Writes (or clears) the ingress through the status subresource; true when it changed something. */
  async #writeIngress(svc: Stored<Service>, ingress: LoadBalancerIngress[] | undefined): Promise<boolean> {
    let changed = false;
    const stored = await this.#store.mutate<Service>(
      'Service',
      svc.metadata.namespace,
      svc.metadata.name,
      (s) => {
        if (s.metadata?.uid !== svc.metadata.uid) return false;
        if (ingress && !provides(s)) return false;
        if (sameIngress(s.status?.loadBalancer?.ingress, ingress ?? [])) return false;
        const st = ((s as Mutable<Service>).status ??= {});
        st.loadBalancer = ingress ? { ingress } : {};
        changed = true;
      },
      { subresource: 'status' },
    );
    return changed && stored !== undefined;
  }

  #enqueueIfConcerned(s: Stored<Service>, old?: Stored<Service>): void {
    const key = keyOf(s);
    if (provides(s) || this.#ipOf.has(key) || (old && provides(old))) this.runner.enqueue(key);
  }
}

/**
 * The ingress addresses on several machines: the sorted InternalIPs (non-loopback, IPv4) of the
 * Ready nodes, when the Nodes name two or more distinct such addresses (ready or not: a machine
 * that is down for a while does not switch the cluster back to pool addresses); undefined on one
 * machine (several `--nodes` on one host share its address, or use loopback ones).
 */
export function nodeIngress(nodes: readonly Node[]): string[] | undefined {
  const all = new Set<string>();
  const ready = new Set<string>();
  for (const n of nodes) {
    const ip = n.status?.addresses?.find((a) => a.type === 'InternalIP' && isIP(a.address) === 4 && !isLoopback(a.address))?.address;
    if (!ip) continue;
    all.add(ip);
    if (n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) ready.add(ip);
  }
  if (all.size < 2) return undefined;
  return [...ready].sort(compareIPv4);
}

function compareIPv4(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 4; i++) if (pa[i] !== pb[i]) return pa[i]! - pb[i]!;
  return 0;
}

/** Services this provider serves: type LoadBalancer with the default (empty) class. */
function provides(s: Service): boolean {
  return s.spec?.type === 'LoadBalancer' && !s.spec.loadBalancerClass;
}

function ingressIPs(s: Service): string[] {
  return (s.status?.loadBalancer?.ingress ?? []).map((i) => i.ip ?? '').filter(Boolean);
}

function sameIngress(a: readonly LoadBalancerIngress[] | undefined, b: readonly LoadBalancerIngress[]): boolean {
  const x = a ?? [];
  return x.length === b.length && x.every((e, i) => e.ip === b[i]!.ip && (e.ipMode ?? 'VIP') === (b[i]!.ipMode ?? 'VIP') && !e.hostname === !b[i]!.hostname);
}

/** what of a Service this controller looks at: other changes are no work */
function lbView(s: Service): string {
  return JSON.stringify([s.metadata?.uid, s.spec?.type, s.spec?.loadBalancerClass, s.spec?.loadBalancerIP, s.status?.loadBalancer]);
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
