// Helpers shared by the workload tests (statefulset, daemonset, job, cronjob, rollout); not a test file.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { Deployment, Event, KObject, Pod, Stored } from '../src/api/types.js';
import { ControllerManager, type Clock } from '../src/controllers/index.js';
import { DEFAULT_IMAGE_TABLE, PodRuntime, loadImageTable } from '../src/agent/runtime/index.js';
import { type ClosableStore, createEmbeddedStore } from '../src/store/embedded.js';
import { InformerFactory } from '../src/store/informer.js';
import { Proxy } from '../src/agent/proxy/index.js';

export const log = pino({ level: process.env.KUBELOOP_TEST_LOG ?? 'silent' });

interface T {
  teardown(fn: () => unknown): void;
}

export interface NodeSpec {
  name: string;
  ip: string;
  podCidr: string;
}

export interface Workloads {
  store: ClosableStore;
  informers: InformerFactory;
  controllers: ControllerManager;
  stateDir: string;
  /** starts a node agent (real processes) for `node`; stopped with the test or by the caller */
  startNode(node: NodeSpec): Promise<PodRuntime>;
  proxy: Proxy | undefined;
}

/**
 * A store, every controller (with a state dir for claims, and the given clock and job back-off)
 * and, optionally, real node agents. `podCidr` is the whole pod range (node slices lie inside).
 */
export async function startWorkloads(
  t: T,
  o: {
    podCidr?: string;
    serviceCidr?: string;
    clock?: Clock;
    /** false: the runtime's fallback without a mount namespace per pod (volumes as KUBELOOP_VOLUME_* host dirs) */
    mountNamespaces?: boolean;
    jobFailureBackoff?: { initialMs: number; maxMs: number };
    nodes?: NodeSpec[];
    /** also run the service proxy, NodePorts on these addresses */
    proxyNodeAddresses?: string[];
  } = {},
): Promise<Workloads> {
  const podCidr = o.podCidr ?? '127.244.0.0/16';
  const stateDir = await mkdtemp(join(tmpdir(), 'kubeloop-workloads-'));
  const store = await createEmbeddedStore({ log, podCidr, serviceCidr: o.serviceCidr });
  const informers = new InformerFactory(store);
  const controllers = new ControllerManager({
    store,
    informers,
    log,
    podCidr,
    stateDir,
    clock: o.clock,
    jobFailureBackoff: o.jobFailureBackoff ?? { initialMs: 50, maxMs: 400 },
  });
  const runtimes = new Set<PodRuntime>();
  const images = loadImageTable(DEFAULT_IMAGE_TABLE);
  let proxy: Proxy | undefined;
  t.teardown(async () => {
    await proxy?.stop();
    await Promise.all([...runtimes].map((r) => r.stop()));
    await controllers.stop();
    informers.stop();
    await store.close();
    await rm(stateDir, { recursive: true, force: true });
  });
  await controllers.start();
  const startNode = async (n: NodeSpec) => {
    const r = new PodRuntime({
      store,
      informers,
      log,
      nodeName: n.name,
      nodeIP: n.ip,
      podCidr: n.podCidr,
      stateDir,
      images,
      backoff: { initialMs: 100, maxMs: 400, resetAfterMs: 60_000 },
      stopGraceMs: 1000,
      ...(o.mountNamespaces === false ? { mountNamespaces: false } : {}),
    });
    runtimes.add(r);
    await r.start();
    return r;
  };
  for (const n of o.nodes ?? []) await startNode(n);
  if (o.proxyNodeAddresses) {
    proxy = new Proxy({ informers, log, nodeAddresses: o.proxyNodeAddresses });
    await proxy.start();
  }
  return { store, informers, controllers, stateDir, startNode, proxy };
}

/** a fake clock: `now()` moves only when the test advances it; timers fire in order as it does */
export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  readonly #timers = new Map<number, { at: number; fn: () => void }>();

  constructor(start: Date) {
    this.#now = start.getTime();
  }

  now(): Date {
    return new Date(this.#now);
  }

  /** a timer due now fires on the next turn of the event loop, as a real one would */
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#seq;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn });
    if (ms <= 0) {
      setImmediate(() => {
        if (this.#timers.delete(id)) fn();
      });
    }
    return id;
  }

  clearTimeout(h: unknown): void {
    this.#timers.delete(h as number);
  }

  /**
   * Moves the clock to `to`, firing every timer due on the way in time order; after each one
   * `settle()` lets the system react (at that simulated time) before the clock moves on.
   */
  async advanceTo(to: Date, settle: () => Promise<void> = async () => {}): Promise<void> {
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.#timers) if (e[1].at <= to.getTime() && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.#timers.delete(next[0]);
      this.#now = Math.max(this.#now, next[1].at);
      next[1].fn();
      await settle();
    }
    this.#now = Math.max(this.#now, to.getTime());
    await settle();
  }

  get pendingTimers(): number {
    return this.#timers.size;
  }
}

/** the pods of a namespace that are not terminating, by name */
export async function livePods(store: ClosableStore, namespace = 'default'): Promise<Map<string, Stored<Pod>>> {
  const { items } = await store.list<Pod>('Pod', { namespace });
  return new Map(items.filter((p) => !p.metadata.deletionTimestamp).map((p) => [p.metadata.name, p]));
}

export async function eventsFor(store: ClosableStore, obj: KObject, namespace = 'default'): Promise<Stored<Event>[]> {
  const { items } = await store.list<Event>('Event', { namespace });
  return items.filter((e) => e.involvedObject.kind === obj.kind && e.involvedObject.name === obj.metadata?.name);
}

export const isReady = (p: Pod): boolean => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

/**
 * Whether the Deployment `name` (an echoDeployment of test/workloads-load.ts) is rolled out to
 * `version`: 3 replicas, all updated and available, and exactly 3 pods of app `name`, each ready,
 * not terminating and with VERSION=`version`.
 */
export async function rolledOutTo(store: ClosableStore, namespace: string, name: string, version: string): Promise<boolean> {
  const d = await store.get<Deployment>('Deployment', namespace, name);
  const { items } = await store.list<Pod>('Pod', { namespace });
  const pods = items.filter((p) => p.metadata.labels?.app === name);
  return (
    d.status?.updatedReplicas === 3 &&
    d.status.availableReplicas === 3 &&
    d.status.replicas === 3 &&
    pods.length === 3 &&
    pods.every((p) => isReady(p) && !p.metadata.deletionTimestamp && p.spec?.containers[0].env?.[0]?.value === version)
  );
}

/** every pid still alive (not a zombie) of `pids` */
export function alivePids(pids: readonly number[]): number[] {
  return pids.filter((pid) => {
    try {
      process.kill(pid, 0);
    } catch {
      return false;
    }
    return true;
  });
}

