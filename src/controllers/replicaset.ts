import type { Logger } from 'pino';
import { type Selector, fromMap, matches } from '../api/labels.js';
import type { Mutable, Pod, PodTemplateSpec, ReplicaSet, ReplicationController, Stored } from '../api/types.js';
import { clone, keyOf } from '../api/types.js';
import type { Informer, InformerFactory } from '../store/informer.js';
import type { Store } from '../store/types.js';
import { setCondition, removeCondition, type StatusCondition } from './conditions.js';
import { type EventRecorder, rfc3339 } from '../store/events.js';
import { PodControl } from './pod-control.js';
import type { TokenBucket } from '../util/token-bucket.js';
import { canonicalJson } from './names.js';
import { NamespaceIndex, ownersToSync } from './ns-index.js';
import {
  controllerRef,
  isPodActive,
  isPodAvailable,
  isPodReady,
  isTerminating,
  msUntilAvailable,
  ownerRefFor,
  podCondition,
  splitKey,
  totalRestarts,
  workloadSelector,
} from './pod-util.js';
import { type ReconcileContext, type ReconcileResult, Runner } from './runner.js';

/** upstream `BurstReplicas`: at most this many pods created or deleted per reconcile */
const BURST_REPLICAS = 500;

type Owner = ReplicaSet | ReplicationController;

/** What differs between ReplicaSet and the legacy ReplicationController. */
interface Flavour {
  kind: 'ReplicaSet' | 'ReplicationController';
  controller: string;
  /** undefined: a selector that must not be acted on (empty: would select everything) */
  selector(o: Owner): Selector | undefined;
}

const REPLICA_SET: Flavour = {
  kind: 'ReplicaSet',
  controller: 'replicaset',
  selector: (o) => workloadSelector((o as ReplicaSet).spec?.selector),
};

const REPLICATION_CONTROLLER: Flavour = {
  kind: 'ReplicationController',
  controller: 'replicationcontroller',
  selector: (o) => {
    const rc = o as ReplicationController;
    // an RC without a selector selects its template's labels (upstream defaulting)
    const m = rc.spec?.selector && Object.keys(rc.spec.selector).length ? rc.spec.selector : rc.spec?.template?.metadata?.labels;
    return m && Object.keys(m).length ? fromMap(m) : undefined;
  },
};

export interface ReplicaSetControllerOptions {
  store: Store;
  informers: InformerFactory;
  log: Logger;
  events: EventRecorder;
  workers?: number;
  /** `legacy`: manage ReplicationControllers instead of ReplicaSets */
  legacy?: boolean;
  /** shared bound on pod creations per second (each create waits for a token) */
  podCreates?: TokenBucket;
}

/**
 * Keeps `spec.replicas` active pods for each ReplicaSet (or ReplicationController): creates pods
 * from the template, deletes the least valuable ones first (unscheduled, pending, not ready,
 * newest), adopts matching orphans, releases pods whose labels stop matching, replaces failed
 * pods, and reports status (replicas, fullyLabeled, ready, available after `minReadySeconds`).
 */
export class ReplicaSetController {
  readonly runner: Runner;
  readonly #store: Store;
  readonly #events: EventRecorder;
  readonly #flavour: Flavour;
  readonly #owners: Informer<Owner>;
  readonly #pods: Informer<Pod>;
  readonly #podsByNs: NamespaceIndex<Pod>;
  readonly #ownersByNs: NamespaceIndex<Owner>;
  readonly #podControl: PodControl;

  constructor(opts: ReplicaSetControllerOptions) {
    this.#store = opts.store;
    this.#events = opts.events;
    this.#podControl = new PodControl({ store: opts.store, events: opts.events, podCreates: opts.podCreates });
    this.#flavour = opts.legacy ? REPLICATION_CONTROLLER : REPLICA_SET;
    this.#owners = opts.informers.for<Owner>(this.#flavour.kind);
    this.#pods = opts.informers.for<Pod>('Pod');
    this.#podsByNs = new NamespaceIndex(this.#pods);
    this.#ownersByNs = new NamespaceIndex(this.#owners);
    this.runner = new Runner({
      name: this.#flavour.controller,
      reconciler: this,
      log: opts.log,
      informers: [this.#owners, this.#pods],
      workers: opts.workers ?? 4,
    });

    this.#owners.addHandler({
      onAdd: (o) => this.runner.enqueue(keyOf(o)),
      onUpdate: (_old, o) => this.runner.enqueue(keyOf(o)),
      onDelete: (o) => {
        this.#podControl.forget(keyOf(o));
        this.runner.enqueue(keyOf(o));
      },
    });
    this.#pods.addHandler({
      onAdd: (p) => this.#enqueueFor(p),
      onUpdate: (old, p) => {
        const oldRef = controllerRef(old);
        const ref = controllerRef(p);
        if (oldRef && oldRef.uid !== ref?.uid) this.#enqueueFor(old);
        else if (!oldRef && canonicalJson(old.metadata.labels) !== canonicalJson(p.metadata.labels)) this.#enqueueFor(old);
        this.#enqueueFor(p);
      },
      onDelete: (p) => this.#enqueueFor(p),
    });
  }

  start(): Promise<void> {
    return this.runner.start();
  }

  stop(): Promise<void> {
    return this.runner.stop();
  }

  /** a pod concerns its controller, or, when orphaned, every owner whose selector matches it */
  #enqueueFor(pod: Stored<Pod>): void {
    const f = this.#flavour;
    for (const o of ownersToSync(pod, f.kind, this.#owners, this.#ownersByNs, (x) => f.selector(x))) this.runner.enqueue(keyOf(o));
  }


  async reconcile(key: string, { log, signal }: ReconcileContext): Promise<ReconcileResult | void> {
    const owner = this.#owners.getByKey(key);
    if (!owner) {
      this.#podControl.forget(key);
      return;
    }
    const selector = this.#flavour.selector(owner);
    if (!selector) {
      log.warn('empty selector: it would select every pod; not acting on it');
      return;
    }
    const [namespace] = splitKey(key);
    const owned = await this.#claimPods(owner, selector, namespace, log);
    const active = owned.filter(isPodActive);

    let failure: { reason: string; message: string } | undefined;
    const needsSync = this.#podControl.satisfied(key, (k) => this.#pods.getByKey(k));
    if (needsSync && !isTerminating(owner)) {
      signal.throwIfAborted();
      failure = await this.#manageReplicas(owner, active, log);
    }

    const now = Date.now();
    const minReady = owner.spec?.minReadySeconds ?? 0;
    const templateLabels = owner.spec?.template?.metadata?.labels ?? {};
    const status = {
      replicas: active.length,
      fullyLabeledReplicas: active.filter((p) => labelsContain(p.metadata.labels, templateLabels)).length,
      readyReplicas: active.filter(isPodReady).length,
      availableReplicas: active.filter((p) => isPodAvailable(p, minReady, now)).length,
      observedGeneration: owner.metadata.generation,
    };
    await this.#writeStatus(owner, status, failure);

    if (failure) throw new Error(failure.message);
    // a ready pod becomes available after minReadySeconds without any event: look again then
    let soonest: number | undefined;
    for (const p of active) {
      const ms = msUntilAvailable(p, minReady, now);
      if (ms !== undefined && (soonest === undefined || ms < soonest)) soonest = ms;
    }
    return soonest === undefined ? undefined : { requeueAfterMs: soonest + 50 };
  }

  /** upstream `ClaimPods`: ours that still match, adopted orphans; release ours that do not match */
  async #claimPods(owner: Stored<Owner>, selector: Selector, namespace: string | undefined, log: Logger) {
    const uid = owner.metadata.uid;
    const owned: Stored<Pod>[] = [];
    let canAdopt: boolean | undefined;
    for (const pod of this.#podsByNs.list(namespace)) {
      const ref = controllerRef(pod);
      const selected = matches(selector, pod.metadata.labels);
      if (ref) {
        if (ref.uid !== uid) continue;
        if (selected) owned.push(pod);
        else if (!isTerminating(owner)) await this.#release(owner, pod, log);
        continue;
      }
      if (!selected || isTerminating(pod) || isTerminating(owner)) continue;
      // adopt only if the owner is still what we think it is (upstream RecheckDeletionTimestamp)
      canAdopt ??= await this.#stillLive(owner);
      if (!canAdopt) continue;
      const adopted = await this.#store.mutate<Pod>('Pod', pod.metadata.namespace, pod.metadata.name, (p) => {
        if (p.metadata?.uid !== pod.metadata.uid || controllerRef(p) || !matches(selector, p.metadata?.labels)) return false;
        p.metadata!.ownerReferences = [...(p.metadata!.ownerReferences ?? []), ownerRefFor(owner)];
      });
      if (adopted && controllerRef(adopted)?.uid === uid) {
        log.info({ pod: pod.metadata.name }, 'adopted orphan pod');
        owned.push(adopted);
      }
    }
    return owned;
  }

  async #release(owner: Stored<Owner>, pod: Stored<Pod>, log: Logger): Promise<void> {
    await this.#store.mutate<Pod>('Pod', pod.metadata.namespace, pod.metadata.name, (p) => {
      const refs = p.metadata?.ownerReferences ?? [];
      const kept = refs.filter((r) => r.uid !== owner.metadata.uid);
      if (kept.length === refs.length) return false;
      p.metadata!.ownerReferences = kept.length ? kept : undefined;
    });
    log.info({ pod: pod.metadata.name }, 'released pod whose labels no longer match');
  }

  /** the cached owner now wants fewer replicas than `owner` did (or is another object, or gone) */
  #shrunk(owner: Stored<Owner>): boolean {
    const cur = this.#owners.get(owner.metadata.namespace, owner.metadata.name);
    return !cur || cur.metadata.uid !== owner.metadata.uid || (cur.spec?.replicas ?? 1) < (owner.spec?.replicas ?? 1);
  }

  async #stillLive(owner: Stored<Owner>): Promise<boolean> {
    const fresh = await this.#store.tryGet<Owner>(this.#flavour.kind, owner.metadata.namespace, owner.metadata.name);
    return !!fresh && fresh.metadata.uid === owner.metadata.uid && !isTerminating(fresh);
  }

  /** create or delete pods; returns the failure to report, if any */
  async #manageReplicas(owner: Stored<Owner>, active: Stored<Pod>[], log: Logger) {
    const want = owner.spec?.replicas ?? 1;
    const diff = active.length - want;
    if (diff < 0) {
      const n = Math.min(-diff, BURST_REPLICAS);
      log.debug({ have: active.length, want, creating: n }, 'too few replicas');
      const template = owner.spec?.template;
      if (!template) return { reason: 'FailedCreate', message: 'the spec has no pod template' };
      let err: unknown;
      // upstream slowStartBatch: 1, 2, 4, ... at a time, stop at the first failure
      let done = 0;
      for (let batch = 1; done < n && !err; batch *= 2) {
        const size = Math.min(batch, n - done);
        const results = await Promise.allSettled(Array.from({ length: size }, () => this.#createPod(owner, template)));
        done += size;
        for (const r of results) if (r.status === 'rejected') err ??= r.reason;
      }
      if (err) return { reason: 'FailedCreate', message: (err as Error).message ?? String(err) };
      return undefined;
    }
    if (diff > 0) {
      const n = Math.min(diff, BURST_REPLICAS);
      const victims = podsToDelete(active, n);
      log.debug({ have: active.length, want, deleting: n }, 'too many replicas');
      const results = await Promise.allSettled(victims.map((pod) => this.#podControl.delete(owner, pod)));
      const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult | undefined;
      if (failed) return { reason: 'FailedDelete', message: (failed.reason as Error).message ?? String(failed.reason) };
    }
    return undefined;
  }

  async #createPod(owner: Stored<Owner>, template: PodTemplateSpec): Promise<void> {
    const tm = clone(template.metadata ?? {});
    const pod: Pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        generateName: `${owner.metadata.name}-`,
        labels: tm.labels,
        annotations: tm.annotations,
        finalizers: tm.finalizers,
        ownerReferences: [ownerRefFor(owner)],
      },
      spec: clone(template.spec!),
    };
    // scaled down or gone while this create waited its turn: the rest of the batch is not wanted
    await this.#podControl.create(owner, pod, { rateLimited: true, stillWanted: () => !this.#shrunk(owner) });
  }

  async #writeStatus(
    owner: Stored<Owner>,
    s: { replicas: number; fullyLabeledReplicas: number; readyReplicas: number; availableReplicas: number; observedGeneration?: number },
    failure: { reason: string; message: string } | undefined,
  ): Promise<void> {
    const uid = owner.metadata.uid;
    await this.#store.mutate<Owner>(
      this.#flavour.kind,
      owner.metadata.namespace,
      owner.metadata.name,
      (o) => {
        if (o.metadata?.uid !== uid) return false;
        const before = canonicalJson(o.status);
        const m = o as Mutable<Owner>;
        const st = (m.status ??= { replicas: 0 }) as Mutable<NonNullable<ReplicaSet['status']>>;
        st.replicas = s.replicas;
        st.fullyLabeledReplicas = s.fullyLabeledReplicas;
        st.readyReplicas = s.readyReplicas;
        st.availableReplicas = s.availableReplicas;
        if (s.observedGeneration !== undefined) st.observedGeneration = s.observedGeneration;
        const conds = st.conditions as StatusCondition[] | undefined;
        st.conditions = (
          failure
            ? setCondition(conds, { type: 'ReplicaFailure', status: 'True', ...failure }, { now: rfc3339(new Date()) })
            : removeCondition(conds, 'ReplicaFailure')
        ) as typeof st.conditions;
        return canonicalJson(o.status) !== before;
      },
      { subresource: 'status' },
    );
  }
}

function labelsContain(labels: Readonly<Record<string, string>> | undefined, want: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(want)) if (labels?.[k] !== v) return false;
  return true;
}

const PHASE_ORDER: Record<string, number> = { Pending: 0, Unknown: 1, Running: 2 };

/**
 * The `n` pods to delete first (upstream `ActivePodsWithRanks`): unscheduled before scheduled,
 * pending before unknown before running, not ready before ready, more pods of ours on the same
 * node before fewer, ready for less time before longer, more restarts before fewer, newer before older.
 */
export function podsToDelete(pods: Stored<Pod>[], n: number): Stored<Pod>[] {
  const perNode = new Map<string, number>();
  for (const p of pods) if (p.spec?.nodeName) perNode.set(p.spec.nodeName, (perNode.get(p.spec.nodeName) ?? 0) + 1);
  const readySince = (p: Pod) => Date.parse(podCondition(p, 'Ready')?.lastTransitionTime ?? '') || 0;
  const created = (p: Stored<Pod>) => Date.parse(p.metadata.creationTimestamp) || 0;
  const ranked = [...pods].sort((a, b) => {
    const an = a.spec?.nodeName ?? '';
    const bn = b.spec?.nodeName ?? '';
    if (an !== bn && (!an || !bn)) return an ? 1 : -1;
    const ap = PHASE_ORDER[a.status?.phase ?? ''] ?? 0;
    const bp = PHASE_ORDER[b.status?.phase ?? ''] ?? 0;
    if (ap !== bp) return ap - bp;
    const ar = isPodReady(a);
    if (ar !== isPodReady(b)) return ar ? 1 : -1;
    const ac = perNode.get(an) ?? 0;
    const bc = perNode.get(bn) ?? 0;
    if (ac !== bc) return bc - ac;
    if (ar) {
      const at = readySince(a);
      const bt = readySince(b);
      if (at !== bt) return bt - at;
    }
    const rs = totalRestarts(b) - totalRestarts(a);
    if (rs !== 0) return rs;
    const ct = created(b) - created(a);
    if (ct !== 0) return ct;
    return a.metadata.name < b.metadata.name ? 1 : -1;
  });
  return ranked.slice(0, n);
}
