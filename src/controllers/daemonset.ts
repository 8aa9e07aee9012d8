import type { Logger } from 'pino';
import type { ControllerRevision, DaemonSet, Mutable, Node, Pod, Stored } from '../api/types.js';
import { keyOf } from '../api/types.js';
import type { Informer, InformerFactory } from '../store/informer.js';
import type { Store } from '../store/types.js';
import { claimPods } from './claim.js';
import { scaledValue } from './deployment-util.js';
import type { EventRecorder } from '../store/events.js';
import { PodControl } from './pod-control.js';
import { CONTROLLER_REVISION_HASH, History } from './history.js';
import { canonicalJson } from './names.js';
import { NamespaceIndex, dependentHandlers, ownersToSync } from './ns-index.js';
import { specUnfitFor } from './node-fit.js';
import { mergeStatus } from './status.js';
import { isPodAvailable, isPodFinished, isPodReady, isTerminating, msUntilAvailable, ownerRefFor, splitKey, workloadSelector } from './pod-util.js';
import { type ReconcileContext, type ReconcileResult, Runner } from './runner.js';

export const TEMPLATE_GENERATION = 'pod-template-generation';

type DS = Stored<DaemonSet>;
type P = Stored<Pod>;
type Toleration = NonNullable<NonNullable<Pod['spec']>['tolerations']>[number];

/** upstream `AddOrUpdateDaemonPodTolerations`: daemon pods run on nodes that are unready, unreachable, cordoned or under pressure */
const DAEMON_TOLERATIONS: Toleration[] = [
  { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute' },
  { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute' },
  { key: 'node.kubernetes.io/disk-pressure', operator: 'Exists', effect: 'NoSchedule' },
  { key: 'node.kubernetes.io/memory-pressure', operator: 'Exists', effect: 'NoSchedule' },
  { key: 'node.kubernetes.io/pid-pressure', operator: 'Exists', effect: 'NoSchedule' },
  { key: 'node.kubernetes.io/unschedulable', operator: 'Exists', effect: 'NoSchedule' },
];

export interface DaemonSetControllerOptions {
  store: Store;
  informers: InformerFactory;
  log: Logger;
  events: EventRecorder;
  workers?: number;
}


/**
 * Runs one pod of each DaemonSet on every node it selects (the template's `nodeSelector` and
 * required node affinity over the node's labels; taints other than the ones daemon pods always
 * tolerate), as upstream's controller: follows nodes as they come, go and are relabelled,
 * deletes pods from nodes that no longer qualify (at once, with no grace, from nodes that no
 * longer exist: nothing would stop them there), replaces failed pods, and rolls a new template
 * out node by node (`maxUnavailable`, or `maxSurge`: the new pod first). Templates are recorded
 * as ControllerRevisions; pods carry `controller-revision-hash`.
 *
 * Pods are bound to their node directly (`spec.nodeName`), as DaemonSets did before the
 * default scheduler placed them.
 */
export class DaemonSetController {
  readonly runner: Runner;
  readonly #store: Store;
  readonly #events: EventRecorder;
  readonly #sets: Informer<DaemonSet>;
  readonly #nodes: Informer<Node>;
  readonly #pods: Informer<Pod>;
  readonly #setsByNs: NamespaceIndex<DaemonSet>;
  readonly #podsByNs: NamespaceIndex<Pod>;
  readonly #history: History;
  readonly #podControl: PodControl;

  constructor(opts: DaemonSetControllerOptions) {
    this.#store = opts.store;
    this.#events = opts.events;
    this.#podControl = new PodControl({ store: opts.store, events: opts.events });
    this.#sets = opts.informers.for<DaemonSet>('DaemonSet');
    this.#nodes = opts.informers.for<Node>('Node');
    this.#pods = opts.informers.for<Pod>('Pod');
    const revisions = opts.informers.for<ControllerRevision>('ControllerRevision');
    this.#setsByNs = new NamespaceIndex(this.#sets);
    this.#podsByNs = new NamespaceIndex(this.#pods);
    this.#history = new History(this.#store, revisions);
    this.runner = new Runner({
      name: 'daemonset',
      reconciler: this,
      log: opts.log,
      informers: [this.#sets, this.#nodes, this.#pods, revisions],
      workers: opts.workers ?? 2,
    });
    this.#sets.addHandler({
      onAdd: (d) => this.runner.enqueue(keyOf(d)),
      onUpdate: (_o, d) => this.runner.enqueue(keyOf(d)),
      onDelete: (d) => {
        this.#podControl.forget(keyOf(d));
        this.runner.enqueue(keyOf(d));
      },
    });
    this.#pods.addHandler(dependentHandlers((p) => this.#enqueueFor(p)));
    const all = () => {
      for (const d of this.#sets.list()) this.runner.enqueue(keyOf(d));
    };
    this.#nodes.addHandler({
      onAdd: all,
      onDelete: all,
      onUpdate: (old, n) => {
        if (canonicalJson(placementView(old)) !== canonicalJson(placementView(n))) all();
      },
    });
  }

  start(): Promise<void> {
    return this.runner.start();
  }

  stop(): Promise<void> {
    return this.runner.stop();
  }

  #enqueueFor(pod: P): void {
    for (const d of ownersToSync(pod, 'DaemonSet', this.#sets, this.#setsByNs, (o) => workloadSelector(o.spec?.selector))) {
      this.runner.enqueue(keyOf(d));
    }
  }


  async reconcile(key: string, { log }: ReconcileContext): Promise<ReconcileResult | void> {
    const ds = this.#sets.getByKey(key) as DS | undefined;
    if (!ds) {
      this.#podControl.forget(key);
      return;
    }
    const selector = workloadSelector(ds.spec?.selector);
    if (!selector) {
      log.warn('empty or invalid selector: not acting on this DaemonSet');
      return;
    }
    if (isTerminating(ds)) return;
    const [namespace] = splitKey(key);
    const { revisions, update, collisionCount } = await this.#history.sync(ds, ds.spec?.selector?.matchLabels ?? {}, log);
    const hash = update.metadata.name.slice(ds.metadata.name.length + 1);
    const pods = await claimPods({ store: this.#store, owner: ds, selector, pods: this.#podsByNs.list(namespace), log });

    const nodes = new Map(this.#nodes.list().map((n) => [n.metadata.name, n]));
    const byNode = new Map<string, P[]>();
    for (const p of pods) {
      const n = p.spec?.nodeName ?? '';
      byNode.set(n, [...(byNode.get(n) ?? []), p]);
    }
    const shouldRun = new Map<string, boolean>();
    for (const n of nodes.values()) shouldRun.set(n.metadata.name, nodeShouldRun(ds, n));

    const synced = this.#podControl.satisfied(key, (k) => this.#pods.getByKey(k));
    let requeueMs: number | undefined;
    if (synced) {
      const changed = await this.#manage(ds, hash, nodes, byNode, shouldRun, log);
      if (!changed && (ds.spec?.updateStrategy?.type ?? 'RollingUpdate') === 'RollingUpdate') {
        await this.#rollingUpdate(ds, hash, byNode, shouldRun, log);
      }
    }

    // status
    const now = Date.now();
    const minReady = ds.spec?.minReadySeconds ?? 0;
    const s = {
      observedGeneration: ds.metadata.generation,
      desiredNumberScheduled: 0,
      currentNumberScheduled: 0,
      numberMisscheduled: 0,
      numberReady: 0,
      numberAvailable: 0,
      numberUnavailable: 0,
      updatedNumberScheduled: 0,
      collisionCount,
    };
    for (const [node, run] of shouldRun) {
      const active = (byNode.get(node) ?? []).filter((p) => !isTerminating(p));
      if (!run) {
        if (active.length) s.numberMisscheduled++;
        continue;
      }
      s.desiredNumberScheduled++;
      if (!active.length) continue;
      s.currentNumberScheduled++;
      const newest = active.find((p) => p.metadata.labels?.[CONTROLLER_REVISION_HASH] === hash);
      if (newest) s.updatedNumberScheduled++;
      const pod = newest ?? active[0];
      if (isPodReady(pod)) s.numberReady++;
      if (isPodAvailable(pod, minReady, now)) s.numberAvailable++;
      const wait = msUntilAvailable(pod, minReady, now);
      if (wait !== undefined) requeueMs = Math.min(requeueMs ?? Infinity, wait + 50);
    }
    s.numberUnavailable = s.desiredNumberScheduled - s.numberAvailable;
    await mergeStatus<DaemonSet>(this.#store, 'DaemonSet', ds, s);
    const live = new Set([update.metadata.name, ...pods.map((p) => `${ds.metadata.name}-${p.metadata.labels?.[CONTROLLER_REVISION_HASH]}`)]);
    await this.#history.truncate(ds, revisions, live);
    return requeueMs === undefined ? undefined : { requeueAfterMs: requeueMs };
  }

  /** one pod per node that should run one, none elsewhere; true when it created or deleted something */
  async #manage(ds: DS, hash: string, nodes: Map<string, Node>, byNode: Map<string, P[]>, shouldRun: Map<string, boolean>, log: Logger): Promise<boolean> {
    const create: string[] = [];
    const remove: { pod: P; force: boolean }[] = [];
    for (const [node, pods] of byNode) {
      if (node === '' || nodes.has(node)) continue;
      // a node that is gone runs nothing: remove its pods without waiting for an agent
      for (const p of pods) remove.push({ pod: p, force: true });
    }
    for (const [node, run] of shouldRun) {
      const pods = byNode.get(node) ?? [];
      const failed = pods.filter((p) => isPodFinished(p) && !isTerminating(p));
      const active = pods.filter((p) => !isPodFinished(p) && !isTerminating(p));
      for (const p of failed) {
        this.#events.event(ds, 'Warning', 'FailedDaemonPod', `Found failed daemon pod ${p.metadata.namespace}/${p.metadata.name} on node ${node}, will try to kill it`);
        remove.push({ pod: p, force: false });
      }
      if (!run) {
        for (const p of active) remove.push({ pod: p, force: false });
        continue;
      }
      if (active.length === 0) {
        create.push(node);
        continue;
      }
      const surge = (ds.spec?.updateStrategy?.type ?? 'RollingUpdate') === 'RollingUpdate' && surgeOf(ds, 1) > 0;
      // more than one: keep the oldest (during a surge update, one old and one new are expected)
      const sorted = [...active].sort((a, b) => Date.parse(a.metadata.creationTimestamp) - Date.parse(b.metadata.creationTimestamp));
      if (surge) {
        const news = sorted.filter((p) => p.metadata.labels?.[CONTROLLER_REVISION_HASH] === hash);
        const olds = sorted.filter((p) => p.metadata.labels?.[CONTROLLER_REVISION_HASH] !== hash);
        for (const p of [...news.slice(1), ...olds.slice(1)]) remove.push({ pod: p, force: false });
      } else {
        for (const p of sorted.slice(1)) remove.push({ pod: p, force: false });
      }
    }
    if (!create.length && !remove.length) return false;
    log.debug({ create: create.length, delete: remove.length }, 'syncing daemon pods');
    await Promise.all([...create.map((n) => this.#createPod(ds, hash, n)), ...remove.map((r) => this.#deletePod(ds, r.pod, r.force))]);
    return true;
  }

  /** upstream `rollingUpdate`: replace old pods node by node within maxUnavailable, or surge first with maxSurge */
  async #rollingUpdate(ds: DS, hash: string, byNode: Map<string, P[]>, shouldRun: Map<string, boolean>, log: Logger): Promise<void> {
    const desired = [...shouldRun.values()].filter(Boolean).length;
    const maxSurge = surgeOf(ds, desired);
    const maxUnavailable = maxSurge > 0 ? 0 : Math.max(1, scaledValue(ds.spec?.updateStrategy?.rollingUpdate?.maxUnavailable as number | string | undefined, desired, true, '1'));
    const minReady = ds.spec?.minReadySeconds ?? 0;
    const now = Date.now();
    const available = (p: P) => isPodAvailable(p, minReady, now);
    const toDelete: P[] = [];
    const toSurge: string[] = [];
    let unavailable = 0;
    let surging = 0;
    const candidates: P[] = [];
    for (const [node, run] of shouldRun) {
      if (!run) continue;
      const active = (byNode.get(node) ?? []).filter((p) => !isTerminating(p) && !isPodFinished(p));
      const news = active.filter((p) => p.metadata.labels?.[CONTROLLER_REVISION_HASH] === hash);
      const olds = active.filter((p) => p.metadata.labels?.[CONTROLLER_REVISION_HASH] !== hash);
      if (news.length > 1 || olds.length > 1) continue;
      const [newPod] = news;
      const [oldPod] = olds;
      if (maxSurge > 0) {
        if (oldPod && newPod) {
          surging++;
          if (available(newPod)) toDelete.push(oldPod);
        } else if (oldPod) {
          toSurge.push(node);
        } else if (!newPod || !available(newPod)) {
          unavailable++;
        }
        continue;
      }
      if (!oldPod) {
        if (!newPod || !available(newPod)) unavailable++;
      } else if (!available(oldPod)) {
        toDelete.push(oldPod); // not serving anyway: replace at once
      } else {
        candidates.push(oldPod);
      }
    }
    if (maxSurge > 0) {
      const room = Math.max(0, maxSurge - surging);
      const nodes = toSurge.slice(0, room);
      if (nodes.length || toDelete.length) log.debug({ surge: nodes, replace: toDelete.map((p) => p.metadata.name) }, 'rolling update (surge)');
      await Promise.all([...nodes.map((n) => this.#createPod(ds, hash, n)), ...toDelete.map((p) => this.#deletePod(ds, p, false))]);
      return;
    }
    const room = Math.max(0, maxUnavailable - unavailable);
    toDelete.push(...candidates.slice(0, room));
    if (!toDelete.length) return;
    log.debug({ replace: toDelete.map((p) => p.metadata.name), maxUnavailable, unavailable }, 'rolling update');
    await Promise.all(toDelete.map((p) => this.#deletePod(ds, p, false)));
  }

  async #createPod(ds: DS, hash: string, node: string): Promise<void> {
    const t = ds.spec!.template;
    const spec = structuredClone(t.spec!) as Mutable<NonNullable<Pod['spec']>>;
    spec.nodeName = node;
    const tolerations = [...(spec.tolerations ?? [])];
    for (const tol of DAEMON_TOLERATIONS) {
      if (!tolerations.some((x) => x.key === tol.key && x.effect === tol.effect)) tolerations.push(tol);
    }
    spec.tolerations = tolerations;
    const pod: Pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        generateName: `${ds.metadata.name}-`,
        labels: { ...(t.metadata?.labels ?? {}), [CONTROLLER_REVISION_HASH]: hash, [TEMPLATE_GENERATION]: String(ds.metadata.generation ?? 1) },
        annotations: t.metadata?.annotations,
        ownerReferences: [ownerRefFor(ds)],
      },
      spec,
    };
    await this.#podControl.create(ds, pod);
  }

  #deletePod(ds: DS, pod: P, force: boolean): Promise<void> {
    return this.#podControl.delete(ds, pod, { force });
  }
}

function surgeOf(ds: DaemonSet, desired: number): number {
  if ((ds.spec?.updateStrategy?.type ?? 'RollingUpdate') !== 'RollingUpdate') return 0;
  const v = ds.spec?.updateStrategy?.rollingUpdate?.maxSurge as number | string | undefined;
  return v === undefined ? 0 : scaledValue(v, desired, true, '0');
}

/** what of a node decides where daemon pods run */
function placementView(n: Node): unknown {
  return [n.metadata?.labels, n.spec?.taints, n.spec?.unschedulable];
}

/** upstream `NodeShouldRunDaemonPod`: node selector, required node affinity, taints */
export function nodeShouldRun(ds: DaemonSet, node: Node): boolean {
  return specUnfitFor(ds.spec?.template?.spec, node, DAEMON_TOLERATIONS) === undefined;
}
