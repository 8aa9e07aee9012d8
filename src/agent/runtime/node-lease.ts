/**
 * The kubelet's node heartbeat: a `coordination.k8s.io/v1` Lease `kube-node-lease/<node>`
 * renewed every `intervalMs` (upstream: 10 s, a quarter of the 40 s lease duration). The node
 * lifecycle controller (controllers/node-lifecycle.ts) turns a node whose Lease stops moving
 * NotReady. When the Node's Ready condition is not True while this agent runs (it was marked
 * Unknown while the daemon was cut off), the agent posts Ready again, as the kubelet's status
 * loop does, and the controller lifts the taints.
 */
import type { Logger } from 'pino';
import type { Node } from 'kubernetes-types/core/v1.js';
import { isApiError } from '../../api/errors.js';
import { type Lease, type Stored, clone } from '../../api/types.js';
import type { Store } from '../../store/types.js';
import { type NodeInfoOptions, setNodeStatus } from './node.js';

export const NODE_LEASE_NAMESPACE = 'kube-node-lease';

export interface NodeLeaseOptions {
  store: Store;
  log: Logger;
  node: NodeInfoOptions;
  /** default 10,000 ms */
  intervalMs?: number;
  /** written as spec.leaseDurationSeconds; default 40 s */
  leaseDurationMs?: number;
}

/** metav1.MicroTime */
const microTime = (ms: number): string => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');

export class NodeLease {
  readonly #o: NodeLeaseOptions;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;
  #failing = false;

  constructor(o: NodeLeaseOptions) {
    this.#o = o;
    this.#log = o.log.child({ component: 'node-lease', node: o.node.nodeName });
  }

  /** Renews once at once, then every interval. Idempotent. */
  async start(): Promise<void> {
    if (this.#running || this.#stopped) return;
    this.#running = this.#tick();
    await this.#running;
  }

  /** Stops renewing (the Lease stays: the controller sees the node go quiet). Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  async #tick(): Promise<void> {
    try {
      await this.renew();
      await this.#reportReady();
      if (this.#failing) this.#log.info('node lease renewed again');
      this.#failing = false;
    } catch (err) {
      if (!this.#failing) this.#log.warn({ err: (err as Error).message }, 'cannot renew the node lease (retrying)');
      this.#failing = true;
    }
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#running = this.#tick();
    }, this.#o.intervalMs ?? 10_000);
  }

  /** One renewal: creates the Lease or moves its renewTime. */
  async renew(): Promise<void> {
    const { store, node } = this.#o;
    const spec = {
      holderIdentity: node.nodeName,
      leaseDurationSeconds: Math.max(1, Math.round((this.#o.leaseDurationMs ?? 40_000) / 1000)),
      renewTime: microTime(Date.now()),
    };
    const cur = await store.tryGet<Lease>('Lease', NODE_LEASE_NAMESPACE, node.nodeName);
    if (!cur) {
      try {
        await store.create<Lease>({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: node.nodeName, namespace: NODE_LEASE_NAMESPACE }, spec });
        return;
      } catch (e) {
        if (!isApiError(e, 'AlreadyExists')) throw e;
        return this.renew();
      }
    }
    const next = clone(cur) as Stored<Lease>;
    next.spec = { ...cur.spec, ...spec };
    try {
      await store.update<Lease>(next);
    } catch (e) {
      // someone else wrote it meanwhile (a restart of this node): the next tick renews
      if (!isApiError(e, 'Conflict')) throw e;
    }
  }

  async #reportReady(): Promise<void> {
    const { store, node } = this.#o;
    if (this.#stopped) return;
    const n = await store.tryGet<Node>('Node', undefined, node.nodeName);
    if (!n) return;
    const ready = n.status?.conditions?.find((c) => c.type === 'Ready');
    if (ready?.status === 'True') return;
    this.#log.info({ was: ready?.status, reason: ready?.reason }, 'node is running again: posting Ready');
    await setNodeStatus(store, node, true);
  }
}
