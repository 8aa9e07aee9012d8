import type { Logger } from 'pino';
import { isApiError } from '../api/errors.js';
import { mapSelects } from '../api/labels.js';
import type {
  EndpointAddress,
  EndpointPort,
  EndpointSubset,
  Endpoints,
  Pod,
  Service,
  ServicePort,
  Stored,
} from '../api/types.js';
import { clone, keyOf } from '../api/types.js';
import type { InformerFactory } from '../store/informer.js';
import type { Store } from '../store/types.js';
import { type Cidr, cidrContains, isLoopback, parseCidr } from '../util/cidr.js';
import { canonicalJson } from './names.js';
import { NamespaceIndex } from './ns-index.js';
import { isPodReady, podCondition, splitKey } from './pod-util.js';
import { type ReconcileContext, Runner } from './runner.js';

export const HEADLESS_LABEL = 'service.kubernetes.io/headless';
export const TRIGGER_TIME_ANNOTATION = 'endpoints.kubernetes.io/last-change-trigger-time';

export interface EndpointsControllerOptions {
  store: Store;
  informers: InformerFactory;
  log: Logger;
  /**
   * Pod IPs outside this range that are loopback addresses (a hostNetwork pod's node IP) are
   * left out of Endpoints: the store refuses loopback endpoint addresses outside the pod CIDR.
   */
  podCidr?: string;
  /** the store accepts every loopback endpoint address (daemon flag): no pod CIDR filter */
  allowLoopbackEndpoints?: boolean;
  workers?: number;
}

/**
 * Keeps one Endpoints object per Service with a selector, as upstream's endpoints controller:
 * the selected pods that have an IP and are not terminating, ready ones in `addresses`, the others
 * in `notReadyAddresses`, grouped into subsets by identical resolved port sets. Services without a
 * selector (and ExternalName services) are left alone: their Endpoints are the user's.
 * Unchanged inputs give a deep-equal object and no write (writes wake the proxy and DNS).
 */
export class EndpointsController {
  readonly runner: Runner;
  readonly #store: Store;
  readonly #services;
  readonly #endpoints;
  readonly #pods: NamespaceIndex<Pod>;
  readonly #podCidr: Cidr | undefined;
  /** per Service: selector by name, to find the Services a pod event concerns */
  readonly #selectors = new Map<string, Map<string, Readonly<Record<string, string>>>>();
  /** per Service: the trigger times already reflected in its Endpoints */
  readonly #triggers = new Map<string, { service?: string; pods: Map<string, string> }>();

  constructor(opts: EndpointsControllerOptions) {
    this.#store = opts.store;
    this.#podCidr = opts.podCidr && !opts.allowLoopbackEndpoints ? parseCidr(opts.podCidr) : undefined;
    this.#services = opts.informers.for<Service>('Service');
    this.#endpoints = opts.informers.for<Endpoints>('Endpoints');
    const pods = opts.informers.for<Pod>('Pod');
    this.#pods = new NamespaceIndex(pods);
    this.runner = new Runner({
      name: 'endpoints',
      reconciler: this,
      log: opts.log,
      informers: [this.#services, this.#endpoints, pods],
      workers: opts.workers ?? 4,
    });

    this.#services.addHandler({
      onAdd: (s) => this.#onService(s),
      onUpdate: (_o, s) => this.#onService(s),
      onDelete: (s) => {
        this.#selectors.get(s.metadata.namespace ?? '')?.delete(s.metadata.name);
        this.runner.enqueue(keyOf(s));
      },
    });
    // upstream recreates deleted Endpoints; we also put back hand edits of ours
    this.#endpoints.addHandler({
      onUpdate: (_o, e) => {
        if (this.#selectorOf(e.metadata.namespace, e.metadata.name)) this.runner.enqueue(keyOf(e));
      },
      onDelete: (e) => this.runner.enqueue(keyOf(e)),
    });
    pods.addHandler({
      onAdd: (p) => this.#enqueueFor(p),
      onUpdate: (o, p) => {
        if (endpointsView(o) === endpointsView(p)) return;
        this.#enqueueFor(p, o);
      },
      onDelete: (p) => this.#enqueueFor(p),
    });
  }

  async start(): Promise<void> {
    await this.runner.start();
    // Endpoints left over from Services deleted while we were down (upstream checkLeftoverEndpoints)
    for (const e of this.#endpoints.list()) if (!this.#services.getByKey(keyOf(e))) this.runner.enqueue(keyOf(e));
  }

  stop(): Promise<void> {
    return this.runner.stop();
  }

  async reconcile(key: string, { log }: ReconcileContext): Promise<void> {
    const [namespace, name] = splitKey(key);
    const svc = this.#services.getByKey(key);
    if (!svc) {
      this.#triggers.delete(key);
      try {
        await this.#store.delete('Endpoints', namespace, name);
        log.debug('deleted the Endpoints of a deleted Service');
      } catch (err) {
        if (!isApiError(err, 'NotFound')) throw err;
      }
      return;
    }
    const selector = svc.spec?.selector;
    if (svc.spec?.type === 'ExternalName' || !selector || Object.keys(selector).length === 0) return;

    const pods = this.#pods.list(namespace).filter((p) => mapSelects(selector, p.metadata.labels));
    const subsets = this.#subsets(svc, pods, log);
    const labels = endpointsLabels(svc);
    const current = this.#endpoints.getByKey(key);
    if (
      current &&
      canonicalJson(current.subsets) === canonicalJson(subsets) &&
      canonicalJson(current.metadata.labels) === canonicalJson(labels)
    ) {
      return;
    }

    const { time: triggerTime, next } = this.#triggerTime(key, svc, pods);
    const annotations = { ...(current?.metadata.annotations ?? {}) };
    if (triggerTime) annotations[TRIGGER_TIME_ANNOTATION] = triggerTime;
    else delete annotations[TRIGGER_TIME_ANNOTATION];

    if (current) {
      const ep = clone(current) as Endpoints;
      ep.metadata!.labels = labels;
      ep.metadata!.annotations = annotations;
      ep.subsets = subsets;
      await this.#store.update(ep);
    } else {
      const ep: Endpoints = {
        apiVersion: 'v1',
        kind: 'Endpoints',
        metadata: { name, namespace, labels, annotations },
        subsets,
      };
      try {
        await this.#store.create(ep);
      } catch (err) {
        // the cache has not seen an Endpoints the store has: overwrite it
        if (!isApiError(err, 'AlreadyExists')) throw err;
        await this.#store.update(ep);
      }
    }
    this.#triggers.set(key, next);
    log.debug({ subsets: subsets.length }, 'endpoints written');
  }

  #onService(s: Stored<Service>): void {
    const ns = s.metadata.namespace ?? '';
    let m = this.#selectors.get(ns);
    if (!m) {
      m = new Map();
      this.#selectors.set(ns, m);
    }
    const sel = s.spec?.selector;
    if (sel && Object.keys(sel).length > 0) m.set(s.metadata.name, sel);
    else m.delete(s.metadata.name);
    this.runner.enqueue(keyOf(s));
  }

  #selectorOf(namespace: string | undefined, name: string) {
    return this.#selectors.get(namespace ?? '')?.get(name);
  }

  #enqueueFor(pod: Stored<Pod>, old?: Stored<Pod>): void {
    const ns = pod.metadata.namespace ?? '';
    const m = this.#selectors.get(ns);
    if (!m) return;
    for (const [name, sel] of m) {
      if (mapSelects(sel, pod.metadata.labels) || (old && mapSelects(sel, old.metadata.labels))) {
        this.runner.enqueue(`${ns}/${name}`);
      }
    }
  }

  #subsets(svc: Stored<Service>, pods: Stored<Pod>[], log: Logger): EndpointSubset[] {
    const publishNotReady = svc.spec?.publishNotReadyAddresses === true;
    const headless = svc.spec?.clusterIP === 'None';
    const ports = svc.spec?.ports ?? [];
    // port → (address → ready), then ports grouped by identical address sets (upstream RepackSubsets)
    const byPort = new Map<string, { port: EndpointPort | undefined; addrs: Map<string, { addr: EndpointAddress; ready: boolean }> }>();
    const note = (port: EndpointPort | undefined, addr: EndpointAddress, ready: boolean) => {
      const pk = port ? canonicalJson(port) : '';
      let e = byPort.get(pk);
      if (!e) {
        e = { port, addrs: new Map() };
        byPort.set(pk, e);
      }
      e.addrs.set(`${canonicalJson(addr)}|${ready}`, { addr, ready });
    };

    for (const pod of pods) {
      if (!shouldPodBeInEndpoints(pod, publishNotReady)) continue;
      const ip = pod.status!.podIP!;
      if (this.#podCidr && isLoopback(ip) && !cidrContains(this.#podCidr, ip)) {
        log.debug({ pod: keyOf(pod), ip }, 'pod IP is loopback outside the pod CIDR; left out of endpoints');
        continue;
      }
      const addr: EndpointAddress = {
        ip,
        nodeName: pod.spec?.nodeName || undefined,
        targetRef: { kind: 'Pod', namespace: pod.metadata.namespace, name: pod.metadata.name, uid: pod.metadata.uid },
      };
      if (pod.spec?.hostname && pod.spec.subdomain === svc.metadata.name) addr.hostname = pod.spec.hostname;
      const ready = publishNotReady || isPodReady(pod);
      if (ports.length === 0) {
        // a headless Service without ports still gets its addresses (DNS A records)
        if (headless) note(undefined, addr, ready);
        continue;
      }
      for (const sp of ports) {
        const port = resolvePort(pod, sp);
        if (port === undefined) {
          log.trace({ pod: keyOf(pod), port: sp.name }, 'pod has no container port for the named targetPort');
          continue;
        }
        const ep: EndpointPort = { port, protocol: sp.protocol ?? 'TCP' };
        if (sp.name) ep.name = sp.name;
        if (sp.appProtocol) ep.appProtocol = sp.appProtocol;
        note(ep, addr, ready);
      }
    }

    const groups = new Map<string, { ports: EndpointPort[]; addrs: Map<string, { addr: EndpointAddress; ready: boolean }> }>();
    for (const { port, addrs } of byPort.values()) {
      const gk = [...addrs.keys()].sort().join('\n');
      let g = groups.get(gk);
      if (!g) {
        g = { ports: [], addrs };
        groups.set(gk, g);
      }
      if (port) g.ports.push(port);
    }

    const subsets: EndpointSubset[] = [];
    for (const g of groups.values()) {
      const ready: EndpointAddress[] = [];
      const notReady: EndpointAddress[] = [];
      for (const { addr, ready: r } of g.addrs.values()) (r ? ready : notReady).push(addr);
      const s: EndpointSubset = {};
      if (ready.length) s.addresses = ready.sort(compareAddresses);
      if (notReady.length) s.notReadyAddresses = notReady.sort(compareAddresses);
      if (g.ports.length) s.ports = g.ports.sort(comparePorts);
      subsets.push(s);
    }
    return subsets.sort((a, b) => cmp(subsetKey(a), subsetKey(b)));
  }

  /**
   * Upstream's TriggerTimeTracker: the oldest change (a pod's Ready transition, the Service's
   * creation) not yet reflected in the Endpoints, to measure change-to-programming latency.
   */
  #triggerTime(key: string, svc: Stored<Service>, pods: Stored<Pod>[]) {
    const prev = this.#triggers.get(key);
    const next = { service: svc.metadata.creationTimestamp, pods: new Map<string, string>() };
    let min: number | undefined;
    const candidate = (t: string | undefined) => {
      const ms = t ? Date.parse(t) : NaN;
      if (Number.isFinite(ms) && (min === undefined || ms < min)) min = ms;
    };
    if (prev?.service !== next.service) candidate(next.service);
    for (const p of pods) {
      const t = podCondition(p, 'Ready')?.lastTransitionTime;
      if (!t) continue;
      next.pods.set(p.metadata.name, t);
      if (prev?.pods.get(p.metadata.name) !== t) candidate(t);
    }
    return { time: min === undefined ? undefined : new Date(min).toISOString(), next };
  }
}

/** upstream `ShouldPodBeInEndpoints` */
function shouldPodBeInEndpoints(pod: Pod, includeTerminating: boolean): boolean {
  if (!pod.status?.podIP) return false;
  if (!includeTerminating && pod.metadata?.deletionTimestamp) return false;
  const phase = pod.status.phase;
  switch (pod.spec?.restartPolicy) {
    case 'Never':
      return phase !== 'Failed' && phase !== 'Succeeded';
    case 'OnFailure':
      return phase !== 'Succeeded';
    default:
      return true;
  }
}

/** upstream `podutil.FindPort`: a number as is; a name looked up in the pod's container ports */
export function resolvePort(pod: Pod, sp: ServicePort): number | undefined {
  const tp = sp.targetPort ?? sp.port;
  if (typeof tp === 'number') return tp;
  if (/^\d+$/.test(tp)) return Number(tp);
  const proto = sp.protocol ?? 'TCP';
  for (const c of pod.spec?.containers ?? []) {
    for (const p of c.ports ?? []) if (p.name === tp && (p.protocol ?? 'TCP') === proto) return p.containerPort;
  }
  return undefined;
}

function endpointsLabels(svc: Stored<Service>): Record<string, string> {
  const labels: Record<string, string> = { ...(svc.metadata.labels ?? {}) };
  if (svc.spec?.clusterIP === 'None') labels[HEADLESS_LABEL] = '';
  else delete labels[HEADLESS_LABEL];
  return labels;
}

/** what of a pod its endpoints depend on: an update that leaves this alone is no work */
function endpointsView(p: Pod): string {
  return JSON.stringify([
    p.metadata?.labels,
    p.metadata?.deletionTimestamp,
    p.spec?.hostname,
    p.spec?.subdomain,
    p.spec?.nodeName,
    p.status?.podIP,
    p.status?.phase,
    isPodReady(p),
    p.spec?.containers?.map((c) => c.ports),
  ]);
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function compareAddresses(a: EndpointAddress, b: EndpointAddress): number {
  return cmp(ipSortKey(a.ip), ipSortKey(b.ip)) || cmp(a.targetRef?.uid ?? '', b.targetRef?.uid ?? '');
}

function comparePorts(a: EndpointPort, b: EndpointPort): number {
  return cmp(a.name ?? '', b.name ?? '') || a.port - b.port || cmp(a.protocol ?? '', b.protocol ?? '');
}

function subsetKey(s: EndpointSubset): string {
  return canonicalJson([s.ports, s.addresses?.[0]?.ip ?? s.notReadyAddresses?.[0]?.ip]);
}

function ipSortKey(ip: string): string {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(ip);
  return m ? m.slice(1).map((x) => x.padStart(3, '0')).join('.') : ip;
}
