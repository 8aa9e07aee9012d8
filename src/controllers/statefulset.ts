import type { Logger } from 'pino';
import { isApiError } from '../api/errors.js';
import type {
  ControllerRevision,
  Mutable,
  OwnerReference,
  PersistentVolumeClaim,
  Pod,
  PodTemplateSpec,
  StatefulSet,
  Stored,
} from '../api/types.js';
import { keyOf } from '../api/types.js';
import type { Informer, InformerFactory } from '../store/informer.js';
import type { TokenBucket } from '../util/token-bucket.js';
import type { Store } from '../store/types.js';
import { claimPods } from './claim.js';
import type { EventRecorder } from '../store/events.js';
import { CONTROLLER_REVISION_HASH, History, type Revision, revisionTemplate } from './history.js';
import { canonicalJson } from './names.js';
import { NamespaceIndex, dependentHandlers, ownersToSync } from './ns-index.js';
import {
  isPodAvailable,
  isPodReady,
  isTerminating,
  msUntilAvailable,
  ownerRefFor,
  splitKey,
  workloadSelector,
} from './pod-util.js';
import { type ReconcileContext, type ReconcileResult, Runner } from './runner.js';
import { mergeStatus } from './status.js';

export const POD_NAME_LABEL = 'statefulset.kubernetes.io/pod-name';
export const POD_INDEX_LABEL = 'apps.kubernetes.io/pod-index';

type SS = Stored<StatefulSet>;
/** pods one sync creates at most (upstream's burst of 500); the next sync goes on */
const MAX_CREATES_PER_SYNC = 500;
type P = Stored<Pod>;

export interface StatefulSetControllerOptions {
  store: Store;
  /** shared bound on pod creations per second (each create waits for a token) */
  podCreates?: TokenBucket;
  informers: InformerFactory;
  log: Logger;
  events: EventRecorder;
  workers?: number;
}

/** `<claim template>-<set>-<ordinal>`: the claim a pod of the set mounts, kept across pod restarts */
export function claimName(template: string, set: string, ordinal: number): string {
  return `${template}-${set}-${ordinal}`;
}

/** the ordinal of a pod named `<set>-<n>`, or undefined */
export function ordinalOf(setName: string, podName: string): number | undefined {
  if (!podName.startsWith(`${setName}-`)) return undefined;
  const rest = podName.slice(setName.length + 1);
  return /^(0|[1-9]\d*)$/.test(rest) ? Number(rest) : undefined;
}

const finished = (p: Pod) => p.status?.phase === 'Failed' || p.status?.phase === 'Succeeded';
const runningAndReady = (p: Pod) => p.status?.phase === 'Running' && isPodReady(p);
const revisionOf = (p: Pod) => p.metadata?.labels?.[CONTROLLER_REVISION_HASH];

/**
 * Runs a StatefulSet as upstream's controller does: pods `<name>-<ordinal>` with a stable
 * hostname (`spec.hostname` = pod name, `spec.subdomain` = `serviceName`, so DNS answers
 * `<pod>.<service>.<ns>.svc.<zone>`) and per-ordinal PersistentVolumeClaims from
 * `volumeClaimTemplates` that outlive the pods.
 *
 * - OrderedReady: one pod at a time, in ordinal order, each Running and Ready (and available
 *   after `minReadySeconds`) before the next; scale-down removes the highest ordinal first and
 *   only while the others are healthy. Parallel: all at once.
 * - RollingUpdate: from the highest ordinal down to `partition`, one pod at a time, each
 *   replaced only after the one above it is healthy at the new revision. OnDelete: pods take
 *   the new template only when deleted.
 * - Templates are recorded as ControllerRevisions; pods carry `controller-revision-hash`; the
 *   status has currentRevision / updateRevision and the counts `kubectl rollout status` reads.
 * - Claims follow `persistentVolumeClaimRetentionPolicy` (default Retain/Retain: kept when a
 *   pod, the set or a replica goes; `Delete` gives them owner references for the garbage collector).
 */
export class StatefulSetController {
  readonly runner: Runner;
  readonly #store: Store;
  readonly #events: EventRecorder;
  readonly #sets: Informer<StatefulSet>;
  readonly #claims: Informer<PersistentVolumeClaim>;
  readonly #setsByNs: NamespaceIndex<StatefulSet>;
  readonly #podsByNs: NamespaceIndex<Pod>;
  readonly #history: History;

  readonly #podCreates: TokenBucket | undefined;

  constructor(opts: StatefulSetControllerOptions) {
    this.#store = opts.store;
    this.#podCreates = opts.podCreates;
    this.#events = opts.events;
    this.#sets = opts.informers.for<StatefulSet>('StatefulSet');
    const pods = opts.informers.for<Pod>('Pod');
    this.#claims = opts.informers.for<PersistentVolumeClaim>('PersistentVolumeClaim');
    const revisions = opts.informers.for<ControllerRevision>('ControllerRevision');
    this.#setsByNs = new NamespaceIndex(this.#sets);
    this.#podsByNs = new NamespaceIndex(pods);
    this.#history = new History(this.#store, revisions);
    this.runner = new Runner({
      name: 'statefulset',
      reconciler: this,
      log: opts.log,
      informers: [this.#sets, pods, this.#claims, revisions],
      workers: opts.workers ?? 4,
    });
    this.#sets.addHandler({
      onAdd: (s) => this.runner.enqueue(keyOf(s)),
      onUpdate: (_o, s) => this.runner.enqueue(keyOf(s)),
      onDelete: (s) => this.runner.enqueue(keyOf(s)),
    });
    pods.addHandler(dependentHandlers((p) => this.#enqueueFor(p)));
    // a claim that was being deleted is gone: a pod waiting for it can be made now
    this.#claims.addHandler({
      onDelete: (c) => {
        for (const s of this.#setsByNs.list(c.metadata.namespace)) this.runner.enqueue(keyOf(s));
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
    for (const s of ownersToSync(pod, 'StatefulSet', this.#sets, this.#setsByNs, (o) => workloadSelector(o.spec?.selector))) {
      this.runner.enqueue(keyOf(s));
    }
  }


  async reconcile(key: string, { log, signal }: ReconcileContext): Promise<ReconcileResult | void> {
    const set = this.#sets.getByKey(key) as SS | undefined;
    if (!set) return;
    const selector = workloadSelector(set.spec?.selector);
    if (!selector) {
      log.warn('empty or invalid selector: not acting on this StatefulSet');
      return;
    }
    // a set being deleted makes nothing: the garbage collector removes its pods
    if (isTerminating(set)) return;
    const [namespace] = splitKey(key);
    const { revisions, update, collisionCount } = await this.#history.sync(set, set.spec?.selector?.matchLabels ?? {}, log);
    const current = revisions.find((r) => r.metadata.name === set.status?.currentRevision) ?? update;
    const pods = await claimPods({
      store: this.#store,
      owner: set,
      selector,
      pods: this.#podsByNs.list(namespace),
      adoptable: (p) => ordinalOf(set.metadata.name, p.metadata.name) !== undefined,
      log,
    });
    signal.throwIfAborted();

    const run = new SetSync(this, set, current, update, log);
    const requeueMs = await run.converge(pods);

    const status = computeStatus(set, pods, current, update, collisionCount);
    await mergeStatus<StatefulSet>(this.#store, 'StatefulSet', set, status);
    const live = new Set([current.metadata.name, update.metadata.name, ...pods.map(revisionOf).filter((x): x is string => !!x)]);
    await this.#history.truncate(set, revisions, live);
    return requeueMs === undefined ? undefined : { requeueAfterMs: requeueMs };
  }

  // ── used by SetSync ────────────────────────────────────────────────────────────────────

  get store(): Store {
    return this.#store;
  }

  get podCreates(): TokenBucket | undefined {
    return this.#podCreates;
  }

  get events(): EventRecorder {
    return this.#events;
  }

  /** the cached set is still `set` (same uid, not being deleted) and still has `ordinal` in range */
  wantsOrdinal(set: SS, ordinal: number): boolean {
    const cur = this.#sets.get(set.metadata.namespace, set.metadata.name);
    if (!cur || cur.metadata.uid !== set.metadata.uid || isTerminating(cur)) return false;
    return ordinal < (cur.spec?.ordinals?.start ?? 0) + (cur.spec?.replicas ?? 1);
  }

  claim(namespace: string | undefined, name: string): Stored<PersistentVolumeClaim> | undefined {
    return this.#claims.get(namespace, name);
  }
}

/** upstream's status arithmetic, including `completeRollingUpdate` */
function computeStatus(set: SS, pods: P[], current: Revision, update: Revision, collisionCount: number): NonNullable<StatefulSet['status']> {
  const now = Date.now();
  const minReady = set.spec?.minReadySeconds ?? 0;
  const s = {
    observedGeneration: set.metadata.generation,
    replicas: 0,
    readyReplicas: 0,
    availableReplicas: 0,
    currentReplicas: 0,
    updatedReplicas: 0,
    currentRevision: current.metadata.name,
    updateRevision: update.metadata.name,
    collisionCount,
  };
  for (const p of pods) {
    if (isTerminating(p)) continue;
    s.replicas++;
    if (runningAndReady(p)) {
      s.readyReplicas++;
      if (isPodAvailable(p, minReady, now)) s.availableReplicas++;
    }
    if (revisionOf(p) === current.metadata.name) s.currentReplicas++;
    if (revisionOf(p) === update.metadata.name) s.updatedReplicas++;
  }
  const rolling = (set.spec?.updateStrategy?.type ?? 'RollingUpdate') === 'RollingUpdate';
  if (rolling && s.updatedReplicas === s.replicas && s.readyReplicas === s.replicas) {
    s.currentReplicas = s.updatedReplicas;
    s.currentRevision = s.updateRevision;
  }
  return s;
}

/** One pass of `updateStatefulSet` over a snapshot of the set's pods. */
class SetSync {
  readonly #c: StatefulSetController;
  readonly #set: SS;
  readonly #current: Revision;
  readonly #update: Revision;
  readonly #log: Logger;
  readonly #monotonic: boolean;
  #requeueMs: number | undefined;

  constructor(c: StatefulSetController, set: SS, current: Revision, update: Revision, log: Logger) {
    this.#c = c;
    this.#set = set;
    this.#current = current;
    this.#update = update;
    this.#log = log;
    this.#monotonic = set.spec?.podManagementPolicy !== 'Parallel';
  }

  get #name(): string {
    return this.#set.metadata.name;
  }

  get #ns(): string | undefined {
    return this.#set.metadata.namespace;
  }

  /**
   * Resolves to a requeue delay when a pod becomes available later without an event. Work and
   * memory follow the pods that exist plus at most {@link MAX_CREATES_PER_SYNC} creations, never
   * `spec.replicas` (a `replicas: 1000000000` typo must not allocate or walk a billion slots).
   */
  async converge(pods: P[]): Promise<number | undefined> {
    const set = this.#set;
    const start = set.spec?.ordinals?.start ?? 0;
    const replicas = set.spec?.replicas ?? 1;
    // ordinal - start → the pod holding that slot; only slots with a pod are present
    const slots = new Map<number, P>();
    const condemned: P[] = [];
    for (const p of pods) {
      const ord = ordinalOf(this.#name, p.metadata.name);
      if (ord !== undefined && ord >= start && ord < start + replicas && !slots.has(ord - start)) slots.set(ord - start, p);
      else condemned.push(p);
    }
    condemned.sort((a, b) => (ordinalOf(this.#name, b.metadata.name) ?? -1) - (ordinalOf(this.#name, a.metadata.name) ?? -1));
    const unhealthy = [...slots.values(), ...condemned].filter((p) => !this.#healthy(p));
    const firstUnhealthy = unhealthy.sort((a, b) => (ordinalOf(this.#name, a.metadata.name) ?? 0) - (ordinalOf(this.#name, b.metadata.name) ?? 0))[0];

    // 1. every ordinal in range: replace finished pods, create missing ones, wait for readiness.
    // Each step either finds an existing pod or makes one (OrderedReady returns after it), so the
    // walk ends after slots.size + MAX_CREATES_PER_SYNC steps; the next sync goes on.
    let creates = 0;
    for (let i = 0; i < replicas; i++) {
      const ord = start + i;
      const pod = slots.get(i);
      if (pod && finished(pod) && !isTerminating(pod)) {
        this.#c.events.event(set, 'Warning', 'RecreatingFailedPod', `StatefulSet ${this.#ns}/${this.#name} is recreating ${pod.status?.phase === 'Failed' ? 'failed' : 'terminated'} Pod ${pod.metadata.name}`);
        await this.#deletePod(pod);
        if (this.#monotonic) return undefined;
        continue;
      }
      if (!pod) {
        if (creates >= MAX_CREATES_PER_SYNC) {
          this.#requeueMs = 0;
          break;
        }
        creates++;
        if (!(await this.#ensureClaims(ord))) {
          if (this.#monotonic) return undefined;
          continue;
        }
        if (!(await this.#createPod(ord))) return 0;
        if (this.#monotonic) return undefined;
        continue;
      }
      await this.#ensureClaims(ord);
      if (!this.#monotonic) continue;
      if (isTerminating(pod) || !runningAndReady(pod)) return undefined;
      const wait = msUntilAvailable(pod, set.spec?.minReadySeconds ?? 0, Date.now());
      if (wait !== undefined) return wait + 50;
    }

    // 2. ordinals out of range, highest first
    for (const pod of condemned) {
      if (isTerminating(pod)) {
        if (this.#monotonic) return undefined;
        continue;
      }
      if (this.#monotonic && firstUnhealthy && firstUnhealthy !== pod) {
        this.#log.debug({ waitingFor: firstUnhealthy.metadata.name }, 'scale-down waits for an unhealthy pod');
        return undefined;
      }
      await this.#condemnClaims(pod);
      await this.#deletePod(pod);
      if (this.#monotonic) return undefined;
    }

    // 3. rolling update from the highest ordinal down to the partition (a missing pod ends the
    // walk, so it is bounded by the pods that exist)
    const us = set.spec?.updateStrategy;
    if ((us?.type ?? 'RollingUpdate') !== 'RollingUpdate') return this.#requeueMs;
    const partition = Math.max(0, (us?.rollingUpdate?.partition ?? 0) - start);
    for (let i = replicas - 1; i >= partition; i--) {
      const pod = slots.get(i);
      if (!pod) return this.#requeueMs;
      if (revisionOf(pod) !== this.#update.metadata.name && !isTerminating(pod)) {
        this.#log.info({ pod: pod.metadata.name, revision: this.#update.metadata.name }, 'rolling update: replacing pod');
        await this.#deletePod(pod);
        return undefined;
      }
      if (!this.#healthy(pod)) return undefined;
    }
    return this.#requeueMs;
  }

  #healthy(p: P): boolean {
    return runningAndReady(p) && !isTerminating(p) && isPodAvailable(p, this.#set.spec?.minReadySeconds ?? 0, Date.now());
  }

  /** ordinal < partition keeps the current revision; everything else gets the update revision */
  #revisionFor(ordinal: number): Revision {
    const us = this.#set.spec?.updateStrategy;
    if ((us?.type ?? 'RollingUpdate') === 'RollingUpdate' && ordinal < (this.#set.spec?.ordinals?.start ?? 0) + (us?.rollingUpdate?.partition ?? 0)) {
      return this.#current;
    }
    return this.#update;
  }

  /** false when the set no longer wants this ordinal (scaled down or gone while the create waited its turn) */
  async #createPod(ordinal: number): Promise<boolean> {
    const set = this.#set;
    const rev = this.#revisionFor(ordinal);
    const template: PodTemplateSpec = rev === this.#update ? structuredClone(set.spec!.template) : revisionTemplate(rev);
    const name = `${this.#name}-${ordinal}`;
    const spec = structuredClone(template.spec!) as Mutable<NonNullable<Pod['spec']>>;
    spec.hostname = name;
    if (set.spec?.serviceName) spec.subdomain = set.spec.serviceName;
    const volumes = [...(spec.volumes ?? [])];
    for (const ct of set.spec?.volumeClaimTemplates ?? []) {
      const vname = ct.metadata?.name ?? '';
      const v = { name: vname, persistentVolumeClaim: { claimName: claimName(vname, this.#name, ordinal) } };
      const i = volumes.findIndex((x) => x.name === vname);
      if (i >= 0) volumes[i] = v;
      else volumes.push(v);
    }
    if (volumes.length) spec.volumes = volumes;
    const pod: Pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace: this.#ns,
        labels: {
          ...(template.metadata?.labels ?? {}),
          [POD_NAME_LABEL]: name,
          [POD_INDEX_LABEL]: String(ordinal),
          [CONTROLLER_REVISION_HASH]: rev.metadata.name,
        },
        annotations: template.metadata?.annotations,
        ownerReferences: [ownerRefFor(set)],
      },
      spec,
    };
    try {
      if (this.#c.podCreates && !(await this.#c.podCreates.take(() => this.#c.wantsOrdinal(set, ordinal)))) return false;
      await this.#c.store.create(pod);
    } catch (err) {
      // the name is deterministic: an existing pod (ours, not yet cached, or one still terminating) is waited for
      if (isApiError(err, 'AlreadyExists')) return true;
      this.#c.events.event(set, 'Warning', 'FailedCreate', `create Pod ${name} in StatefulSet ${this.#name} failed error: ${(err as Error).message}`);
      throw err;
    }
    this.#c.events.event(set, 'Normal', 'SuccessfulCreate', `create Pod ${name} in StatefulSet ${this.#name} successful`);
    this.#log.debug({ pod: name, revision: rev.metadata.name }, 'created pod');
    return true;
  }

  async #deletePod(pod: P): Promise<void> {
    try {
      await this.#c.store.delete('Pod', pod.metadata.namespace, pod.metadata.name, { preconditions: { uid: pod.metadata.uid } });
    } catch (err) {
      if (isApiError(err, 'NotFound') || isApiError(err, 'Conflict')) return;
      this.#c.events.event(this.#set, 'Warning', 'FailedDelete', `delete Pod ${pod.metadata.name} in StatefulSet ${this.#name} failed error: ${(err as Error).message}`);
      throw err;
    }
    this.#c.events.event(this.#set, 'Normal', 'SuccessfulDelete', `delete Pod ${pod.metadata.name} in StatefulSet ${this.#name} successful`);
  }

  /**
   * Creates the claims of an ordinal that do not exist; false while one of them is still being
   * deleted (upstream refuses to start the pod then). Updates claim owner references to match
   * the retention policy.
   */
  async #ensureClaims(ordinal: number): Promise<boolean> {
    const set = this.#set;
    let ok = true;
    for (const ct of set.spec?.volumeClaimTemplates ?? []) {
      const name = claimName(ct.metadata?.name ?? '', this.#name, ordinal);
      const existing = this.#c.claim(this.#ns, name);
      if (existing) {
        if (isTerminating(existing)) ok = false;
        else await this.#setClaimOwners(existing, ordinal);
        continue;
      }
      const claim: PersistentVolumeClaim = {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: {
          name,
          namespace: this.#ns,
          labels: { ...(set.spec?.selector?.matchLabels ?? {}), ...(ct.metadata?.labels ?? {}) },
          annotations: ct.metadata?.annotations,
          ownerReferences: this.#claimRefs([], ordinal),
        },
        spec: structuredClone(ct.spec ?? {}),
      };
      if (!claim.metadata!.ownerReferences?.length) delete claim.metadata!.ownerReferences;
      try {
        await this.#c.store.create(claim);
        this.#c.events.event(set, 'Normal', 'SuccessfulCreate', `create Claim ${name} Pod ${this.#name}-${ordinal} in StatefulSet ${this.#name} success`);
      } catch (err) {
        if (isApiError(err, 'AlreadyExists')) continue;
        this.#c.events.event(set, 'Warning', 'FailedCreate', `create Claim ${name} for Pod ${this.#name}-${ordinal} in StatefulSet ${this.#name} failed error: ${(err as Error).message}`);
        throw err;
      }
    }
    return ok;
  }

  /** a replica being scaled away: its claims go with it when `whenScaled: Delete` */
  async #condemnClaims(pod: P): Promise<void> {
    const ord = ordinalOf(this.#name, pod.metadata.name);
    if (ord === undefined) return;
    for (const ct of this.#set.spec?.volumeClaimTemplates ?? []) {
      const existing = this.#c.claim(this.#ns, claimName(ct.metadata?.name ?? '', this.#name, ord));
      if (existing && !isTerminating(existing)) await this.#setClaimOwners(existing, ord, pod);
    }
  }

  /**
   * upstream `updateClaimOwnerRefForSetAndPod`: the set owns the claim when `whenDeleted: Delete`;
   * the pod owns it when `whenScaled: Delete` and its ordinal is being scaled away (then not
   * the set). Other owners are kept.
   */
  #claimRefs(refs: OwnerReference[], ordinal: number, condemnedPod?: P): OwnerReference[] {
    const policy = this.#set.spec?.persistentVolumeClaimRetentionPolicy;
    const podName = `${this.#name}-${ordinal}`;
    const out = refs.filter((r) => r.uid !== this.#set.metadata.uid && !(r.kind === 'Pod' && r.name === podName));
    const ref = (o: { apiVersion: string; kind: string; metadata: { name: string; uid: string } }): OwnerReference => ({
      apiVersion: o.apiVersion,
      kind: o.kind,
      name: o.metadata.name,
      uid: o.metadata.uid,
    });
    if (condemnedPod && policy?.whenScaled === 'Delete') return [...out, ref(condemnedPod)];
    if (policy?.whenDeleted === 'Delete') return [...out, ref(this.#set)];
    return out;
  }

  async #setClaimOwners(claim: Stored<PersistentVolumeClaim>, ordinal: number, condemnedPod?: P): Promise<void> {
    const want = this.#claimRefs(claim.metadata.ownerReferences ?? [], ordinal, condemnedPod);
    if (canonicalJson(want) === canonicalJson(claim.metadata.ownerReferences ?? [])) return;
    await this.#c.store.mutate<PersistentVolumeClaim>('PersistentVolumeClaim', claim.metadata.namespace, claim.metadata.name, (c) => {
      if (c.metadata?.uid !== claim.metadata.uid) return false;
      c.metadata.ownerReferences = want.length ? want : undefined;
    });
  }
}

