/**
 * The kubelet's node heartbeat: a `coordination.k8s.io/v1` Lease `kube-node-lease/<node>`
 * renewed every `intervalMs` (upstream: 10 s, a quarter of the 40 s lease duration). The node
 * lifecycle controller (controllers/node-lifecycle.ts) turns a node whose Lease stops moving
 * NotReady. When the Node's Ready condition is not True while this agent runs (it was marked
 * Unknown while the daemon was cut off), the agent posts Ready again, as the kubelet's status
 * loop does, and the controller lifts the taints.
 *
 * The Lease is also the lock on the node name: its `kubeloop.dev/daemon` annotation names the
 * daemon instance that runs the node, claimed with one compare-and-set write (`claimNodeLease`).
 * A second daemon with the same --node-name is refused while that Lease is renewed within its
 * leaseDurationSeconds (--node-monitor-grace-period), and may take over once it is not.
 *
 * A Node deleted while its daemon runs (kubectl delete node) is registered again at the next
 * renewal, as the kubelet does, with the pod CIDR slice the node's pods use (re-taken atomically
 * with the Node). When another node took that slice meanwhile, the node cannot come back with
 * its pods' addresses: one error says so, new pods are not started here (`onHold`), and each
 * renewal tries again (the slice may be freed).
 */
import type { Logger } from 'pino';
import type { Node } from 'kubernetes-types/core/v1.js';
import { isApiError } from '../../api/errors.js';
import { type Lease, type Stored, clone } from '../../api/types.js';
import type { Store } from '../../store/types.js';
import { type NodeInfoOptions, registerNode, setNodeStatus } from './node.js';

export const NODE_LEASE_NAMESPACE = 'kube-node-lease';

export interface NodeLeaseOptions {
  store: Store;
  log: Logger;
  node: NodeInfoOptions;
  /** default 10,000 ms */
  intervalMs?: number;
  /** written as spec.leaseDurationSeconds; default 40 s */
  leaseDurationMs?: number;
  /** this daemon instance (the Lease's owner annotation) */
  owner: string;
  /** new pods must not start here (a reason) or may again (undefined) */
  onHold?: (reason: string | undefined) => void;
}

/** the Lease annotation naming the daemon instance that runs the node */
export const NODE_OWNER_ANNOTATION = 'kubeloop.dev/daemon';

/** another live daemon runs this node */
export class NodeOwned extends Error {
  constructor(
    readonly nodeName: string,
    readonly holder: string,
    readonly renewedMsAgo: number,
    readonly durationMs: number,
  ) {
    super(
      `node ${nodeName} is run by another daemon (${holder}, its lease renewed ${(renewedMsAgo / 1000).toFixed(1)} s ago): give this one its own --node-name, or stop that daemon (this one may take the node over once its lease is ${Math.round(durationMs / 1000)} s old)`,
    );
  }
}

const leaseAgeMs = (l: Lease): number => {
  const t = Date.parse(l.spec?.renewTime ?? l.spec?.acquireTime ?? '');
  return Number.isNaN(t) ? Infinity : Date.now() - t;
};

/**
 * Claims or renews `kube-node-lease/<node>` for `owner` in one compare-and-set write (a create,
 * or an update at the version read): a Lease of another owner renewed within its
 * leaseDurationSeconds throws NodeOwned; an expired one (or one without an owner) is taken over.
 * Says which: `created` (no Lease was there), `renewed` (this owner's) or `taken` (another's, lapsed).
 */
export async function claimNodeLease(store: Store, o: { nodeName: string; owner: string; leaseDurationMs?: number }): Promise<'created' | 'renewed' | 'taken'> {
  const durationS = Math.max(1, Math.round((o.leaseDurationMs ?? 40_000) / 1000));
  for (let attempt = 0; ; attempt++) {
    const now = microTime(Date.now());
    const cur = await store.tryGet<Lease>('Lease', NODE_LEASE_NAMESPACE, o.nodeName);
    if (!cur) {
      try {
        await store.create<Lease>({
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name: o.nodeName, namespace: NODE_LEASE_NAMESPACE, annotations: { [NODE_OWNER_ANNOTATION]: o.owner } },
          spec: { holderIdentity: o.nodeName, leaseDurationSeconds: durationS, acquireTime: now, renewTime: now },
        });
        return 'created';
      } catch (e) {
        if (!isApiError(e, 'AlreadyExists') || attempt >= 5) throw e;
        continue;
      }
    }
    const holder = cur.metadata.annotations?.[NODE_OWNER_ANNOTATION];
    if (holder && holder !== o.owner) {
      const age = leaseAgeMs(cur);
      const dur = (cur.spec?.leaseDurationSeconds ?? durationS) * 1000;
      if (age < dur) throw new NodeOwned(o.nodeName, holder, age, dur);
    }
    const next = clone(cur) as Stored<Lease>;
    next.metadata = { ...next.metadata, annotations: { ...cur.metadata.annotations, [NODE_OWNER_ANNOTATION]: o.owner } };
    next.spec = { ...cur.spec, holderIdentity: o.nodeName, leaseDurationSeconds: durationS, renewTime: now, ...(holder === o.owner ? {} : { acquireTime: now }) };
    try {
      // at cur's resourceVersion: a write of anyone else since the read fails it
      await store.update<Lease>(next);
      return holder === o.owner ? 'renewed' : 'taken';
    } catch (e) {
      if (!isApiError(e, 'Conflict') || attempt >= 5) throw e;
    }
  }
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
  /** why new pods do not start here (logged once), undefined while the node runs normally */
  #held: string | undefined;

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
      if (this.#stopped) return;
      await this.#ensureNode();
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

  /** One renewal: creates the Lease or moves its renewTime (a node taken over by another daemon is held). */
  async renew(): Promise<void> {
    const { store, node } = this.#o;
    try {
      await claimNodeLease(store, { nodeName: node.nodeName, owner: this.#o.owner, leaseDurationMs: this.#o.leaseDurationMs });
      if (this.#held?.startsWith('taken:')) this.#hold(undefined);
    } catch (e) {
      if (!(e instanceof NodeOwned)) throw e;
      // this daemon's lease lapsed (it was stopped or cut off) and another daemon runs the node now
      this.#hold(`taken:node ${node.nodeName} was taken over by daemon ${e.holder} while this daemon's lease had lapsed: new pods do not start here; stop this daemon (its running pods stop with it)`);
    }
  }

  /** The Node deleted while this agent runs: registered again with this node's own pod CIDR slice. */
  async #ensureNode(): Promise<void> {
    const { store, node } = this.#o;
    if (this.#held?.startsWith('taken:')) return;
    if (await store.tryGet<Node>('Node', undefined, node.nodeName)) {
      if (this.#held) this.#hold(undefined);
      return;
    }
    if (!this.#held) this.#log.warn({ podCIDR: node.podCidr }, `Node ${node.nodeName} was deleted while its daemon runs: registering it again`);
    try {
      await registerNode(store, node);
      this.#log.info({ podCIDR: node.podCidr }, `Node ${node.nodeName} registered again`);
      this.#hold(undefined);
    } catch (e) {
      if (isApiError(e, 'AlreadyExists')) return;
      if (!isApiError(e, 'Invalid')) throw e;
      this.#hold(
        `slice:Node ${node.nodeName} was deleted and cannot be registered again with its pod CIDR ${node.podCidr}: ${(e as Error).message}. New pods do not start on this node (its running pods keep their addresses); stop this daemon and start it again, and the node registers with a free slice (it retries with its own slice every lease interval meanwhile)`,
      );
    }
  }

  #hold(reason: string | undefined): void {
    if (reason === this.#held) return;
    const was = this.#held;
    this.#held = reason;
    if (reason) this.#log.error(reason.slice(reason.indexOf(':') + 1));
    else if (was) this.#log.info('new pods start on this node again');
    this.#o.onHold?.(reason && reason.slice(reason.indexOf(':') + 1));
  }

  async #reportReady(): Promise<void> {
    const { store, node } = this.#o;
    if (this.#stopped || this.#held) return;
    const n = await store.tryGet<Node>('Node', undefined, node.nodeName);
    if (!n) return;
    const ready = n.status?.conditions?.find((c) => c.type === 'Ready');
    if (ready?.status === 'True') return;
    this.#log.info({ was: ready?.status, reason: ready?.reason }, 'node is running again: posting Ready');
    await setNodeStatus(store, node, true);
  }
}
