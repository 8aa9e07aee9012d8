import type { Logger } from 'pino';
import type { Mutable, Node, Pod, PodStatus, Stored } from '../api/types.js';
import { keyOf } from '../api/types.js';
import type { Informer, InformerFactory } from '../store/informer.js';
import type { Store } from '../store/types.js';
import { type StatusCondition, setCondition } from './conditions.js';
import { type EventRecorder, rfc3339 } from '../store/events.js';
import { isPodActive, isPodFinished, podCondition } from './pod-util.js';
import { specUnfitFor } from './node-fit.js';
import { type ReconcileContext, type ReconcileResult, Runner } from './runner.js';

export const DEFAULT_SCHEDULER = 'default-scheduler';

/** an unschedulable pod is looked at again after this even when no node changes */
const UNSCHEDULABLE_RETRY_MS = 30_000;

export interface SchedulerOptions {
  store: Store;
  informers: InformerFactory;
  log: Logger;
  events: EventRecorder;
}


/**
 * Binds each pod without `spec.nodeName` to a node: Ready, schedulable, matching the pod's
 * `nodeSelector`, with every NoSchedule/NoExecute taint tolerated, holding fewer unfinished pods
 * than its `allocatable.pods`; of those the one with the fewest pods (ties by name). A pod that fits nowhere gets PodScheduled=False, reason
 * Unschedulable, with upstream's message (`0/2 nodes are available: ...`), and is tried again
 * when a node changes. One worker: each decision sees the previous one's binding.
 */
export class Scheduler {
  readonly runner: Runner;
  readonly #store: Store;
  readonly #events: EventRecorder;
  readonly #pods: Informer<Pod>;
  readonly #nodes: Informer<Node>;
  /** node → keys of the unfinished pods bound to it */
  readonly #perNode = new Map<string, Set<string>>();
  /** pod key → node, for bindings written and not yet seen by the pod informer */
  readonly #assumed = new Map<string, string>();
  readonly #unschedulable = new Set<string>();

  constructor(opts: SchedulerOptions) {
    this.#store = opts.store;
    this.#events = opts.events;
    this.#pods = opts.informers.for<Pod>('Pod');
    this.#nodes = opts.informers.for<Node>('Node');
    this.runner = new Runner({
      name: 'scheduler',
      reconciler: this,
      log: opts.log,
      informers: [this.#pods, this.#nodes],
      workers: 1,
    });
    this.#pods.addHandler({
      onAdd: (p) => this.#onPod(p),
      onUpdate: (old, p) => {
        if (old.spec?.nodeName && old.spec.nodeName !== p.spec?.nodeName) this.#perNode.get(old.spec.nodeName)?.delete(keyOf(p));
        this.#onPod(p);
      },
      onDelete: (p) => {
        const key = keyOf(p);
        const freed = !!p.spec?.nodeName && !!this.#perNode.get(p.spec.nodeName)?.delete(key);
        this.#assumed.delete(key);
        this.#unschedulable.delete(key);
        // upstream's AssignedPodDelete: a freed slot may fit a pod that was Too many pods
        if (freed) this.#retryUnschedulable();
      },
    });
    this.#nodes.addHandler({
      onAdd: () => this.#retryUnschedulable(),
      onUpdate: (old, n) => {
        if (JSON.stringify(schedulingView(old)) !== JSON.stringify(schedulingView(n))) this.#retryUnschedulable();
      },
    });
  }

  start(): Promise<void> {
    return this.runner.start();
  }

  stop(): Promise<void> {
    return this.runner.stop();
  }

  #onPod(p: Stored<Pod>): void {
    const key = keyOf(p);
    const node = p.spec?.nodeName;
    if (node) {
      this.#assumed.delete(key);
      this.#unschedulable.delete(key);
      let s = this.#perNode.get(node);
      if (!s) {
        s = new Set();
        this.#perNode.set(node, s);
      }
      if (!isPodFinished(p)) s.add(key);
      else if (s.delete(key)) this.#retryUnschedulable();
      return;
    }
    if (needsScheduling(p)) this.runner.enqueue(key);
  }

  #retryUnschedulable(): void {
    for (const key of this.#unschedulable) this.runner.enqueue(key);
  }

  async reconcile(key: string, { log }: ReconcileContext): Promise<ReconcileResult | void> {
    const pod = this.#pods.getByKey(key);
    if (!pod || !needsScheduling(pod) || this.#assumed.has(key)) {
      this.#unschedulable.delete(key);
      return;
    }
    const nodes = this.#nodes.list();
    const reasons = new Map<string, number>();
    let best: { name: string; load: number } | undefined;
    for (const n of nodes) {
      const load = this.#load(n.metadata.name);
      const why = unfit(pod, n) ?? (load >= maxPods(n) ? TOO_MANY_PODS : undefined);
      if (why) {
        reasons.set(why, (reasons.get(why) ?? 0) + 1);
        continue;
      }
      if (!best || load < best.load || (load === best.load && n.metadata.name < best.name)) best = { name: n.metadata.name, load };
    }

    if (!best) {
      const message = nodes.length ? unschedulableMessage(nodes.length, reasons) : 'no nodes available to schedule pods';
      this.#unschedulable.add(key);
      await this.#setScheduled(pod, 'False', 'Unschedulable', message, () =>
        this.#events.event(pod, 'Warning', 'FailedScheduling', message),
      );
      log.debug({ message }, 'pod is unschedulable');
      return { requeueAfterMs: UNSCHEDULABLE_RETRY_MS };
    }

    const bound = await this.#store.mutate<Pod>('Pod', pod.metadata.namespace, pod.metadata.name, (p) => {
      if (p.metadata?.uid !== pod.metadata.uid || p.spec?.nodeName) return false;
      p.spec!.nodeName = best.name;
    });
    if (!bound || bound.spec?.nodeName !== best.name) return;
    this.#unschedulable.delete(key);
    if (!this.#pods.getByKey(key)?.spec?.nodeName) this.#assumed.set(key, best.name);
    await this.#setScheduled(bound, 'True', undefined, undefined);
    this.#events.event(bound, 'Normal', 'Scheduled', `Successfully assigned ${key} to ${best.name}`);
    log.debug({ node: best.name }, 'bound pod');
  }

  /** unfinished pods on the node, including bindings the cache has not shown yet */
  #load(node: string): number {
    let n = this.#perNode.get(node)?.size ?? 0;
    for (const v of this.#assumed.values()) if (v === node) n++;
    return n;
  }

  /** PodScheduled condition on the pod's status; `onChange` runs only when it changed */
  async #setScheduled(pod: Stored<Pod>, status: string, reason: string | undefined, message: string | undefined, onChange?: () => void) {
    const cur = podCondition(pod, 'PodScheduled');
    if (cur && cur.status === status && cur.reason === reason && cur.message === message) return;
    await this.#store.mutate<Pod>(
      'Pod',
      pod.metadata.namespace,
      pod.metadata.name,
      (p) => {
        if (p.metadata?.uid !== pod.metadata.uid) return false;
        const st = ((p as Mutable<Pod>).status ??= {}) as Mutable<PodStatus>;
        const c: StatusCondition = { type: 'PodScheduled', status };
        if (reason) c.reason = reason;
        if (message) c.message = message;
        const before = JSON.stringify(st.conditions ?? []);
        st.conditions = setCondition(st.conditions as StatusCondition[] | undefined, c, { now: rfc3339(new Date()) }) as PodStatus['conditions'];
        return JSON.stringify(st.conditions) !== before;
      },
      { subresource: 'status' },
    );
    onChange?.();
  }
}

/** upstream NodeResourcesFit's reason when a node holds `allocatable.pods` pods already */
const TOO_MANY_PODS = 'Too many pods';

/**
 * Upstream's FitError text with the DefaultPreemption post-filter's part, e.g.
 * `0/1 nodes are available: 1 Too many pods. preemption: 0/1 nodes are available: 1 No
 * preemption victims found for incoming pod.` kubeloop does not preempt: a full node has no
 * victims (pods without priority classes), every other reason is one preemption cannot help.
 */
export function unschedulableMessage(total: number, reasons: ReadonlyMap<string, number>): string {
  const counts = (m: Iterable<[string, number]>) => [...m].map(([r, c]) => `${c} ${r}`).sort().join(', ');
  const preemption = new Map<string, number>();
  for (const [r, c] of reasons) {
    const p = r === TOO_MANY_PODS ? 'No preemption victims found for incoming pod' : 'Preemption is not helpful for scheduling';
    preemption.set(p, (preemption.get(p) ?? 0) + c);
  }
  return `0/${total} nodes are available: ${counts(reasons)}. preemption: 0/${total} nodes are available: ${counts(preemption)}.`;
}

/** the node's `status.allocatable.pods` (the kubelet's --max-pods); a node that reports none is not limited */
function maxPods(n: Node): number {
  const v = Number(n.status?.allocatable?.pods ?? n.status?.capacity?.pods);
  return Number.isInteger(v) && v >= 0 ? v : Infinity;
}

function needsScheduling(p: Pod): boolean {
  const s = p.spec?.schedulerName;
  return !p.spec?.nodeName && isPodActive(p) && (!s || s === DEFAULT_SCHEDULER);
}

/** why the pod cannot go to this node (upstream's wording), or undefined when it can */
function unfit(pod: Pod, node: Node): string | undefined {
  if (node.spec?.unschedulable) return 'node(s) were unschedulable';
  const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
  if (ready?.status !== 'True') return 'node(s) were not ready';
  return specUnfitFor(pod.spec, node);
}

function schedulingView(n: Node): unknown {
  return [n.metadata?.labels, n.spec?.unschedulable, n.spec?.taints, n.status?.conditions?.find((c) => c.type === 'Ready')?.status, maxPods(n)];
}
