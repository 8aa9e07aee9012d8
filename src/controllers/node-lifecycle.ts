/**
 * Upstream's node lifecycle controller (with its taint-based eviction), for nodes that renew a
 * Lease in `kube-node-lease` (the daemons of a shared store):
 *
 *   lease moves ──► Ready=True (posted by the node) ──► no not-ready/unreachable taints
 *   no move for gracePeriodMs ──► Ready/MemoryPressure/… = Unknown "Kubelet stopped posting node
 *        status.", taints unreachable:NoSchedule + :NoExecute, its pods' Ready=False (they leave
 *        Endpoints), kube-dns/kubernetes addresses of the node moved to notReadyAddresses
 *   Ready=False (the node stopped itself) ──► taints not-ready:NoSchedule + :NoExecute
 *   NoExecute taint for longer than a pod tolerates it (no toleration: evictionTimeoutMs, as
 *        upstream's default tolerationSeconds=300) ──► the pod is deleted at once (its node
 *        cannot finish a graceful delete) and its controller makes a new one elsewhere
 *
 * A lease's age is measured on this controller's clock from when it last saw the lease change
 * (as the leader election does), never by comparing renewTime with our clock: machines' clocks
 * may differ. Nodes without a Lease (none ever seen) are left alone.
 */
import type { Logger } from 'pino';
import type { Node, NodeCondition, Taint } from 'kubernetes-types/core/v1.js';
import { isApiError } from '../api/errors.js';
import type { Endpoints, Lease, Mutable, Pod, PodStatus, Stored } from '../api/types.js';
import type { EventRecorder } from '../store/events.js';
import type { Informer, InformerFactory } from '../store/informer.js';
import type { Store } from '../store/types.js';
import { tolerates } from './node-fit.js';
import { type ReconcileContext, type ReconcileResult, Runner } from './runner.js';

export const TAINT_UNREACHABLE = 'node.kubernetes.io/unreachable';
export const TAINT_NOT_READY = 'node.kubernetes.io/not-ready';
const NODE_LEASE_NAMESPACE = 'kube-node-lease';
/** host-network system Endpoints whose addresses name their node (cli/system-objects.ts) */
const SYSTEM_ENDPOINTS: ReadonlyArray<[string, string]> = [['default', 'kubernetes'], ['kube-system', 'kube-dns']];

export interface NodeLifecycleOptions {
  store: Store;
  informers: InformerFactory;
  log: Logger;
  events: EventRecorder;
  /** default 40 s */
  gracePeriodMs?: number;
  /** default 300 s */
  evictionTimeoutMs?: number;
  now?: () => number;
}

const rfc3339 = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

export class NodeLifecycleController {
  readonly runner: Runner;
  readonly #o: NodeLifecycleOptions;
  readonly #nodes: Informer<Node>;
  readonly #leases: Informer<Lease>;
  readonly #pods: Informer<Pod>;
  /** node → the lease's renewTime last seen, and when (our clock) */
  readonly #seen = new Map<string, { renew: string; at: number }>();
  readonly #now: () => number;

  constructor(o: NodeLifecycleOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#nodes = o.informers.for<Node>('Node');
    this.#leases = o.informers.for<Lease>('Lease');
    this.#pods = o.informers.for<Pod>('Pod');
    this.runner = new Runner({ name: 'node-lifecycle', reconciler: this, log: o.log, informers: [this.#nodes, this.#leases, this.#pods], workers: 1 });
    const onLease = (l: Stored<Lease>) => {
      if (l.metadata.namespace !== NODE_LEASE_NAMESPACE) return;
      const renew = l.spec?.renewTime ?? '';
      const prev = this.#seen.get(l.metadata.name);
      if (!prev || prev.renew !== renew) this.#seen.set(l.metadata.name, { renew, at: this.#now() });
      this.runner.enqueue(l.metadata.name);
    };
    this.#leases.addHandler({ onAdd: onLease, onUpdate: (_old, l) => onLease(l), onDelete: (l) => l.metadata.namespace === NODE_LEASE_NAMESPACE && this.#seen.delete(l.metadata.name) });
    this.#nodes.addHandler({ onAdd: (n) => this.runner.enqueue(n.metadata.name), onUpdate: (_old, n) => this.runner.enqueue(n.metadata.name) });
  }

  start(): Promise<void> {
    return this.runner.start();
  }

  stop(): Promise<void> {
    return this.runner.stop();
  }

  async reconcile(name: string, { log }: ReconcileContext): Promise<ReconcileResult | void> {
    const node = this.#nodes.get(undefined, name);
    const seen = this.#seen.get(name);
    if (!node || !seen) return;
    const grace = this.#o.gracePeriodMs ?? 40_000;
    const now = this.#now();
    const quietFor = now - seen.at;
    const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
    // a Node just (re)registered has no status until its agent posts it, a moment later: as
    // upstream, it is not "unreachable" before a grace period without renewals has passed
    // (marking then made its pods NotReady for a moment when a deleted Node was registered again)
    if (!ready && quietFor < grace) return { requeueAfterMs: Math.max(50, grace - quietFor + 20) };
    let state: 'ready' | 'unreachable' | 'not-ready';
    if (quietFor >= grace) state = 'unreachable';
    else if (ready?.status === 'True') state = 'ready';
    else if (ready?.status === 'False') state = 'not-ready';
    else state = 'unreachable';

    if (state === 'unreachable' && ready?.status !== 'Unknown' && quietFor >= grace) {
      await this.#markUnknown(node, now);
      log.info({ node: name, quietMs: quietFor }, 'node stopped renewing its lease: NotReady');
      this.#o.events.event(node, 'Normal', 'NodeNotReady', `Node ${name} status is now: NodeNotReady`);
    }
    await this.#setTaints(name, state, now);
    await this.#systemEndpoints(name, state === 'ready');
    let next: number | undefined = state === 'ready' ? grace - quietFor : undefined;
    if (state !== 'ready') {
      if (state === 'unreachable') await this.#podsNotReady(name);
      const evictIn = await this.#evict(name, state, log);
      if (evictIn !== undefined) next = Math.min(next ?? evictIn, evictIn);
      // the node may come back: look at its lease again soon after a renewal would land
      next = Math.min(next ?? grace, grace);
    }
    return next !== undefined ? { requeueAfterMs: Math.max(50, next + 20) } : undefined;
  }

  /** Ready and the pressure conditions Unknown, as upstream's tryUpdateNodeHealth */
  async #markUnknown(node: Stored<Node>, now: number): Promise<void> {
    await this.#o.store.mutate<Node>(
      'Node',
      undefined,
      node.metadata.name,
      (n) => {
        const st = ((n as Mutable<Node>).status ??= {});
        const conds = (st.conditions ?? []) as NodeCondition[];
        const types = ['Ready', 'MemoryPressure', 'DiskPressure', 'PIDPressure'];
        const out: NodeCondition[] = conds.filter((c) => !types.includes(c.type));
        for (const type of types) {
          const c = conds.find((x) => x.type === type);
          if (c?.status === 'Unknown') {
            out.push(c);
            continue;
          }
          out.push({
            type,
            status: 'Unknown',
            reason: 'NodeStatusUnknown',
            message: 'Kubelet stopped posting node status.',
            lastHeartbeatTime: c?.lastHeartbeatTime,
            lastTransitionTime: rfc3339(now),
          });
        }
        st.conditions = out;
      },
      { subresource: 'status' },
    );
  }

  async #setTaints(name: string, state: 'ready' | 'unreachable' | 'not-ready', now: number): Promise<void> {
    const want = state === 'unreachable' ? TAINT_UNREACHABLE : state === 'not-ready' ? TAINT_NOT_READY : undefined;
    await this.#o.store.mutate<Node>('Node', undefined, name, (n) => {
      const taints = (n.spec?.taints ?? []) as Taint[];
      const keep = taints.filter((t) => t.key !== TAINT_UNREACHABLE && t.key !== TAINT_NOT_READY);
      const added: Taint[] = [];
      if (want) {
        for (const effect of ['NoSchedule', 'NoExecute']) {
          const had = taints.find((t) => t.key === want && t.effect === effect);
          added.push(had ?? { key: want, effect, ...(effect === 'NoExecute' ? { timeAdded: rfc3339(now) } : {}) });
        }
      }
      const next = [...keep, ...added];
      if (JSON.stringify(next) === JSON.stringify(taints)) return false;
      n.spec = { ...n.spec, taints: next.length ? next : undefined };
      if (!next.length) delete (n.spec as { taints?: unknown }).taints;
    });
  }

  /** upstream's MarkPodsNotReady: the pods of an unreachable node leave their Services' endpoints */
  async #podsNotReady(name: string): Promise<void> {
    for (const p of this.#pods.list()) {
      if (p.spec?.nodeName !== name || p.metadata.deletionTimestamp) continue;
      const c = p.status?.conditions?.find((x) => x.type === 'Ready');
      if (!c || c.status === 'False') continue;
      await this.#o.store
        .mutate<Pod>(
          'Pod',
          p.metadata.namespace,
          p.metadata.name,
          (pod) => {
            if (pod.metadata?.uid !== p.metadata.uid) return false;
            const st = ((pod as Mutable<Pod>).status ??= {}) as Mutable<PodStatus>;
            st.conditions = (st.conditions ?? []).map((x) => (x.type === 'Ready' || x.type === 'ContainersReady' ? { ...x, status: 'False', reason: 'NodeNotReady', lastTransitionTime: rfc3339(this.#now()) } : x));
          },
          { subresource: 'status' },
        )
        .catch((e: unknown) => {
          if (!isApiError(e, 'NotFound')) throw e;
        });
    }
  }

  /**
   * Deletes the node's pods whose toleration of the NoExecute taint has run out; returns when the
   * next one runs out (ms), if any does.
   */
  async #evict(name: string, state: 'unreachable' | 'not-ready', log: Logger): Promise<number | undefined> {
    const node = this.#nodes.get(undefined, name);
    const key = state === 'unreachable' ? TAINT_UNREACHABLE : TAINT_NOT_READY;
    const taint = node?.spec?.taints?.find((t) => t.key === key && t.effect === 'NoExecute');
    if (!taint) return undefined;
    const since = taint.timeAdded ? Date.parse(taint.timeAdded) : this.#now();
    const now = this.#now();
    let next: number | undefined;
    for (const p of this.#pods.list()) {
      if (p.spec?.nodeName !== name) continue;
      const tols = (p.spec.tolerations ?? []).filter((t) => tolerates(t, taint));
      let seconds: number | undefined;
      if (tols.length === 0) seconds = (this.#o.evictionTimeoutMs ?? 300_000) / 1000;
      else if (tols.some((t) => t.tolerationSeconds === undefined || t.tolerationSeconds === null)) continue;
      else seconds = Math.max(0, Math.min(...tols.map((t) => Number(t.tolerationSeconds))));
      const left = since + seconds * 1000 - now;
      if (left > 0) {
        next = Math.min(next ?? left, left);
        continue;
      }
      log.info({ pod: `${p.metadata.namespace}/${p.metadata.name}`, node: name }, 'evicting a pod of a NotReady node');
      this.#o.events.event(p, 'Normal', 'TaintManagerEviction', `Marking for deletion Pod ${p.metadata.namespace}/${p.metadata.name}`);
      // nobody on that node finishes a graceful delete: gone at once (upstream's PodGC does so for such pods)
      await this.#o.store.delete('Pod', p.metadata.namespace, p.metadata.name, { gracePeriodSeconds: 0, preconditions: { uid: p.metadata.uid } }).catch((e: unknown) => {
        if (!isApiError(e, 'NotFound') && !isApiError(e, 'Conflict')) throw e;
      });
    }
    return next;
  }

  /** the node's addresses in the system Endpoints: ready while the node is, notReadyAddresses otherwise */
  async #systemEndpoints(name: string, ready: boolean): Promise<void> {
    for (const [ns, epName] of SYSTEM_ENDPOINTS) {
      await this.#o.store.mutate<Endpoints>('Endpoints', ns, epName, (ep) => {
        let changed = false;
        for (const s of ep.subsets ?? []) {
          const from = ready ? (s.notReadyAddresses ?? []) : (s.addresses ?? []);
          const moving = from.filter((a) => a.nodeName === name);
          if (!moving.length) continue;
          changed = true;
          const stay = from.filter((a) => a.nodeName !== name);
          if (ready) {
            s.notReadyAddresses = stay.length ? stay : undefined;
            s.addresses = [...(s.addresses ?? []), ...moving];
          } else {
            s.addresses = stay.length ? stay : undefined;
            s.notReadyAddresses = [...(s.notReadyAddresses ?? []), ...moving];
          }
          for (const k of ['addresses', 'notReadyAddresses'] as const) if (s[k] === undefined) delete s[k];
        }
        return changed;
      });
    }
  }
}
