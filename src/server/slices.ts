/**
 * EndpointSlices (discovery.k8s.io/v1) served as a read-only view of the Endpoints objects,
 * one slice per Endpoints, the way the endpointslice (selector Services) and
 * endpointslicemirroring (hand-written Endpoints) controllers would write them. EndpointSlices
 * stored by clients are served alongside. `kubectl describe svc` 1.32 reads its `Endpoints:`
 * line from these.
 */
import { createHash } from 'node:crypto';
import type { EndpointSlice, Endpoints, KObject, Service, Stored } from '../api/types.js';
import { type Selector, fieldsMatch, matches, parse as parseSelector, parseFields } from '../api/labels.js';
import { objectKey } from '../api/types.js';
import type { Informer } from '../store/informer.js';
import type { Store, Watch, WatchEvent } from '../store/types.js';

const SERVICE_NAME = 'kubernetes.io/service-name';
const MANAGED_BY = 'endpointslice.kubernetes.io/managed-by';

const suffix = (uid: string): string => createHash('sha256').update(uid).digest('hex').slice(0, 5);

function uuidFrom(uid: string): string {
  const h = createHash('sha256').update(`slice:${uid}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export interface SliceQuery {
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
}

export class SliceView {
  readonly #store: Store;
  readonly #services: Informer<Service>;

  constructor(store: Store, services: Informer<Service>) {
    this.#store = store;
    this.#services = services;
  }

  /** The slice mirroring one Endpoints object. */
  fromEndpoints(ep: Stored<Endpoints>): Stored<EndpointSlice> {
    const ns = ep.metadata.namespace ?? 'default';
    const name = ep.metadata.name;
    const svc = this.#services.get(ns, name);
    const managedBy = svc?.spec?.selector && Object.keys(svc.spec.selector).length ? 'endpointslice-controller.k8s.io' : 'endpointslicemirroring-controller.k8s.io';
    const endpoints: NonNullable<EndpointSlice['endpoints']> = [];
    const ports = new Map<string, { name?: string; port?: number; protocol?: string; appProtocol?: string }>();
    for (const ss of ep.subsets ?? []) {
      for (const p of ss.ports ?? []) {
        const k = `${p.name ?? ''}/${p.port}/${p.protocol ?? 'TCP'}`;
        if (!ports.has(k)) ports.set(k, { ...(p.name !== undefined ? { name: p.name } : { name: '' }), port: p.port, protocol: p.protocol ?? 'TCP', ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}) });
      }
      const add = (a: NonNullable<typeof ss.addresses>[number], ready: boolean) =>
        endpoints.push({
          addresses: [a.ip],
          conditions: { ready, serving: ready, terminating: false },
          ...(a.nodeName ? { nodeName: a.nodeName } : {}),
          ...(a.hostname ? { hostname: a.hostname } : {}),
          ...(a.targetRef ? { targetRef: { ...a.targetRef } } : {}),
        });
      for (const a of ss.addresses ?? []) add(a, true);
      for (const a of ss.notReadyAddresses ?? []) add(a, false);
    }
    const labels: Record<string, string> = { ...(ep.metadata.labels ?? {}), [SERVICE_NAME]: name, [MANAGED_BY]: managedBy };
    delete labels['endpoints.kubernetes.io/managed-by'];
    return {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: `${name}-${suffix(ep.metadata.uid)}`,
        generateName: `${name}-`,
        namespace: ns,
        uid: uuidFrom(ep.metadata.uid),
        resourceVersion: ep.metadata.resourceVersion,
        generation: 1,
        creationTimestamp: ep.metadata.creationTimestamp,
        labels,
        ...(svc
          ? { ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name, uid: svc.metadata.uid, controller: true, blockOwnerDeletion: true }] }
          : {}),
      },
      addressType: 'IPv4',
      endpoints,
      ports: ports.size ? [...ports.values()] : null,
    } as unknown as Stored<EndpointSlice>;
  }

  async list(q: SliceQuery): Promise<{ items: Stored<EndpointSlice>[]; resourceVersion: string }> {
    const eps = await this.#store.list<Endpoints>('Endpoints', { namespace: q.namespace });
    const stored = await this.#store.list<EndpointSlice>('EndpointSlice', { namespace: q.namespace });
    const sel = parseSelector(q.labelSelector);
    const fields = parseFields(q.fieldSelector, 'EndpointSlice');
    const all = [...eps.items.map((e) => this.fromEndpoints(e)), ...stored.items];
    const items = all.filter((s) => matches(sel, s.metadata.labels) && fieldsMatch(fields, s));
    return { items, resourceVersion: this.#store.resourceVersion };
  }

  async get(namespace: string | undefined, name: string): Promise<Stored<EndpointSlice> | undefined> {
    const stored = await this.#store.tryGet<EndpointSlice>('EndpointSlice', namespace, name);
    if (stored) return stored;
    const m = /^(.*)-([0-9a-f]{5})$/.exec(name);
    if (!m) return undefined;
    const ep = await this.#store.tryGet<Endpoints>('Endpoints', namespace, m[1]);
    if (!ep || suffix(ep.metadata.uid) !== m[2]) return undefined;
    return this.fromEndpoints(ep);
  }

  /** Watches both sources; Endpoints events arrive as events of their slice. */
  watch(q: SliceQuery & { resourceVersion?: string }, onEvent: (ev: WatchEvent) => void): Watch {
    const sel: Selector = parseSelector(q.labelSelector);
    const fields = parseFields(q.fieldSelector, 'EndpointSlice');
    const ok = (o: KObject | undefined) => o !== undefined && matches(sel, o.metadata?.labels) && fieldsMatch(fields, o);
    const a = this.#store.watch<Endpoints>('Endpoints', { namespace: q.namespace, resourceVersion: q.resourceVersion }, (ev) => {
      const cur = this.fromEndpoints(ev.object);
      const old = ev.old ? this.fromEndpoints(ev.old) : undefined;
      const now = ok(cur);
      const before = ev.type === 'MODIFIED' ? ok(old) : now;
      if (!now && !before) return;
      const type = ev.type === 'MODIFIED' && now !== before ? (now ? 'ADDED' : 'DELETED') : ev.type;
      onEvent({ type, object: cur as Stored<KObject>, ...(old ? { old: old as Stored<KObject> } : {}) });
    });
    let b: Watch;
    try {
      b = this.#store.watch('EndpointSlice', { namespace: q.namespace, labelSelector: q.labelSelector, fieldSelector: q.fieldSelector, resourceVersion: q.resourceVersion }, onEvent);
    } catch (e) {
      a.stop();
      throw e;
    }
    return {
      stop: () => {
        a.stop();
        b.stop();
      },
    };
  }
}

export const sliceKey = (ns: string | undefined, name: string): string => objectKey(ns, name);
