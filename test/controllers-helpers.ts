import pino from 'pino';
import type { Mutable, Node, Pod, PodStatus, Stored } from '../src/api/types.js';
import { keyOf } from '../src/api/types.js';
import { ControllerManager } from '../src/controllers/index.js';
import { type ClosableStore, createEmbeddedStore } from '../src/store/embedded.js';
import { Informer, InformerFactory } from '../src/store/informer.js';

export const silent = pino({ level: 'silent' });

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface Cluster {
  store: ClosableStore;
  informers: InformerFactory;
  controllers: ControllerManager;
}

/** A real embedded store with every controller running on it; torn down with the test. */
export async function startCluster(t: Teardown): Promise<Cluster> {
  const store = await createEmbeddedStore({ log: silent });
  const informers = new InformerFactory(store);
  const controllers = new ControllerManager({ store, informers, log: silent, podCidr: '127.244.0.0/16' });
  t.teardown(async () => {
    await controllers.stop();
    informers.stop();
    await store.close();
  });
  await controllers.start();
  return { store, informers, controllers };
}

/** Registers a Ready node, as the node agent does. */
export async function addNode(store: ClosableStore, name: string, labels: Record<string, string> = {}, ready = true): Promise<void> {
  await store.create<Node>({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, ...labels } },
    spec: {},
  });
  await setNodeReady(store, name, ready);
}

export async function setNodeReady(store: ClosableStore, name: string, ready: boolean): Promise<void> {
  await store.mutate<Node>(
    'Node',
    undefined,
    name,
    (n) => {
      (n as Mutable<Node>).status = {
        conditions: [{ type: 'Ready', status: ready ? 'True' : 'False', reason: 'KubeletReady', lastTransitionTime: new Date().toISOString() }],
      };
    },
    { subresource: 'status' },
  );
}

let nextIp = 1;
/** a fresh pod IP inside 127.244.0.0/16 */
export function podIp(): string {
  const n = nextIp++;
  return `127.244.${(n >> 8) & 255}.${n & 255}`;
}

/** Writes what a node agent would report for a pod: IP, phase, Ready. */
export async function setPodStatus(
  store: ClosableStore,
  namespace: string,
  name: string,
  s: { ip?: string; ready?: boolean; phase?: string },
): Promise<Stored<Pod> | undefined> {
  return store.mutate<Pod>(
    'Pod',
    namespace,
    name,
    (p) => {
      const st = ((p as Mutable<Pod>).status ??= {}) as Mutable<PodStatus>;
      if (s.ip !== undefined) {
        st.podIP = s.ip;
        st.podIPs = [{ ip: s.ip }];
      }
      st.phase = s.phase ?? 'Running';
      if (s.ready !== undefined) {
        const now = new Date().toISOString();
        const prev = st.conditions?.find((c) => c.type === 'Ready');
        const status = s.ready ? 'True' : 'False';
        const others = (st.conditions ?? []).filter((c) => c.type !== 'Ready');
        st.conditions = [...others, { type: 'Ready', status, lastTransitionTime: prev?.status === status ? prev.lastTransitionTime : now }];
      }
    },
    { subresource: 'status' },
  );
}

/**
 * Stands in for the node agents: a pod bound to one of `nodes` gets an IP and becomes Running
 * and Ready (unless `ready(pod)` says otherwise); a terminating pod is removed at once.
 */
export function fakeKubelet(t: Teardown, store: ClosableStore, opts: { ready?: (p: Pod) => boolean } = {}): void {
  const pods = new Informer<Pod>(store, 'Pod');
  let chain = Promise.resolve();
  const inFlight = new Set<string>();
  let stopped = false;
  const handle = (p: Stored<Pod>) => {
    if (stopped || !p.spec?.nodeName) return;
    const key = keyOf(p);
    if (inFlight.has(key)) return;
    const terminating = !!p.metadata.deletionTimestamp;
    const wantReady = opts.ready ? opts.ready(p) : true;
    const isReady = p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
    if (!terminating && p.status?.podIP && isReady === wantReady) return;
    if (!terminating && (p.status?.phase === 'Failed' || p.status?.phase === 'Succeeded')) return;
    inFlight.add(key);
    chain = chain
      .then(async () => {
        if (stopped) return;
        if (terminating) {
          await store.delete('Pod', p.metadata.namespace, p.metadata.name, { gracePeriodSeconds: 0 }).catch(() => undefined);
        } else {
          await setPodStatus(store, p.metadata.namespace!, p.metadata.name, { ip: p.status?.podIP ?? podIp(), ready: wantReady });
        }
      })
      .catch(() => undefined)
      .finally(() => {
        inFlight.delete(key);
        // it may have changed while we were busy (an unchanged one, e.g. a pod its finalizers
        // keep after the delete, waits for its next update instead of spinning here)
        const cur = pods.getByKey(key);
        if (cur && cur.metadata.resourceVersion !== p.metadata.resourceVersion) handle(cur);
      });
  };
  pods.addHandler({ onAdd: handle, onUpdate: (_o, p) => handle(p) });
  void pods.start();
  t.teardown(async () => {
    stopped = true;
    pods.stop();
    await chain;
  });
}

export function podSpec(ports: Array<{ name?: string; containerPort: number }> = [{ containerPort: 8080 }]) {
  return { containers: [{ name: 'app', image: 'kubeloop/echo', ports }] };
}

export function pod(namespace: string, name: string, labels: Record<string, string>, extra: Partial<Pod['spec']> = {}, ports?: Array<{ name?: string; containerPort: number }>): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels },
    spec: { ...podSpec(ports), ...extra },
  };
}
