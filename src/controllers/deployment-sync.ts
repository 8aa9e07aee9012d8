import type { Logger } from 'pino';
import { isApiError } from '../api/errors.js';
import type { Deployment, LabelSelector, Mutable, ReplicaSet } from '../api/types.js';
import { clone } from '../api/types.js';
import type { Store } from '../store/types.js';
import { getCondition } from './conditions.js';
import type { EventRecorder } from '../store/events.js';
import { canonicalJson } from './names.js';
import { controllerRef, isTerminating, ownerRefFor } from './pod-util.js';
import type { ReconcileResult } from './runner.js';
import {
  byCreation,
  type D,
  type DCondition,
  deploymentComplete,
  deploymentProgressing,
  DESIRED_REPLICAS,
  type DStatus,
  equalIgnoreHash,
  FOUND_NEW_RS,
  hasProgressDeadline,
  intAnnotation,
  isSaturated,
  maxSurge,
  maxUnavailable,
  MIN_AVAILABLE,
  MIN_UNAVAILABLE,
  NEW_RS_AVAILABLE,
  NEW_RS_CREATED,
  newRSNewReplicas,
  nowTime,
  PAUSED,
  POD_TEMPLATE_HASH,
  progressDeadlineSeconds,
  replicaSetFraction,
  RESUMED,
  REVISION,
  type RS,
  RS_UPDATED,
  setDeploymentCondition,
  setNewReplicaSetAnnotations,
  setReplicasAnnotations,
  splitNewAndOld,
  stripHash,
  sumSpec,
  templateHash,
  TIMED_OUT,
  timedOut,
  withNew,
} from './deployment-util.js';

/** One reconcile of one Deployment: `d` is a private copy whose status is updated as upstream's is. */
export class DeploymentSync {
  readonly d: D;
  readonly #stored: D;
  readonly #store: Store;
  readonly #events: EventRecorder;
  readonly #log: Logger;

  constructor(store: Store, events: EventRecorder, d: D, stored: D, log: Logger) {
    this.#store = store;
    this.#events = events;
    this.d = d;
    this.#stored = stored;
    this.#log = log;
  }

  get #replicas(): number {
    return this.d.spec?.replicas ?? 1;
  }

  // ── the three ways through a reconcile ────────────────────────────────────────────────

  /** paused, or a resize: scale proportionally, no rollout */
  async sync(rsList: RS[]): Promise<ReconcileResult | void> {
    let { newRS, oldRSs } = await this.#getAllReplicaSetsAndSyncRevision(rsList, false);
    ({ newRS, oldRSs } = await this.#scale(newRS, oldRSs));
    if (this.d.spec?.paused) oldRSs = await this.#cleanup(oldRSs);
    const all = withNew(oldRSs, newRS);
    await this.writeStatus(this.#calculateStatus(all, newRS));
  }

  async rolloutRolling(rsList: RS[]): Promise<ReconcileResult | void> {
    let { newRS, oldRSs } = await this.#getAllReplicaSetsAndSyncRevision(rsList, true);
    newRS = newRS!;
    const up = await this.#reconcileNewReplicaSet(withNew(oldRSs, newRS), newRS);
    newRS = up.rs;
    if (up.scaled) return this.#syncRolloutStatus(withNew(oldRSs, newRS), newRS);
    const down = await this.#reconcileOldReplicaSets(oldRSs, newRS);
    oldRSs = down.oldRSs;
    if (down.scaled) return this.#syncRolloutStatus(withNew(oldRSs, newRS), newRS);
    if (deploymentComplete(this.d, this.d.status)) oldRSs = await this.#cleanup(oldRSs);
    return this.#syncRolloutStatus(withNew(oldRSs, newRS), newRS);
  }

  async rolloutRecreate(rsList: RS[], oldPodsRunning: (rsUids: Set<string>) => boolean): Promise<ReconcileResult | void> {
    let { newRS, oldRSs } = await this.#getAllReplicaSetsAndSyncRevision(rsList, false);
    let scaledDown = false;
    for (let i = 0; i < oldRSs.length; i++) {
      if ((oldRSs[i].spec?.replicas ?? 0) === 0) continue;
      const r = await this.#scaleReplicaSet(oldRSs[i], 0);
      oldRSs[i] = r.rs;
      scaledDown ||= r.scaled;
    }
    if (scaledDown) return this.#syncRolloutStatus(withNew(oldRSs, newRS), newRS);
    const oldUids = new Set(oldRSs.map((r) => r.metadata.uid));
    if (oldRSs.some((r) => (r.status?.replicas ?? 0) > 0) || oldPodsRunning(oldUids)) {
      return this.#syncRolloutStatus(withNew(oldRSs, newRS), newRS);
    }
    if (!newRS) ({ newRS, oldRSs } = await this.#getAllReplicaSetsAndSyncRevision(rsList, true));
    newRS = (await this.#scaleReplicaSet(newRS!, this.#replicas)).rs;
    if (deploymentComplete(this.d, this.d.status)) oldRSs = await this.#cleanup(oldRSs);
    return this.#syncRolloutStatus(withNew(oldRSs, newRS), newRS);
  }

  async syncStatusOnly(rsList: RS[]): Promise<void> {
    const { newRS, oldRSs } = await this.#getAllReplicaSetsAndSyncRevision(rsList, false);
    await this.writeStatus(this.#calculateStatus(withNew(oldRSs, newRS), newRS));
  }

  /** a replica set annotated for another size than `spec.replicas`: the user resized */
  isScalingEvent(rsList: RS[]): boolean {
    const { newRS, oldRSs } = splitNewAndOld(this.d, rsList);
    for (const rs of withNew(oldRSs, newRS)) {
      if ((rs.spec?.replicas ?? 0) === 0) continue;
      const desired = intAnnotation(rs, DESIRED_REPLICAS);
      if (desired !== undefined && desired !== this.#replicas) return true;
    }
    return false;
  }

  /** Progressing=Unknown DeploymentPaused / DeploymentResumed, on the private copy */
  checkPausedConditions(): void {
    if (!hasProgressDeadline(this.d)) return;
    const cond = getCondition(this.d.status?.conditions, 'Progressing');
    if (cond?.reason === TIMED_OUT) return;
    const pausedCond = cond?.reason === PAUSED;
    if (this.d.spec?.paused && !pausedCond) {
      this.#setCondition(this.#status(), 'Progressing', 'Unknown', PAUSED, 'Deployment is paused');
    } else if (!this.d.spec?.paused && pausedCond) {
      this.#setCondition(this.#status(), 'Progressing', 'Unknown', RESUMED, 'Deployment is resumed');
    }
  }

  // ── replica sets ──────────────────────────────────────────────────────────────────────

  /**
   * The replica set of the current template (created when asked and missing) with its
   * revision brought up to date, and the others. upstream `getAllReplicaSetsAndSyncRevision`
   */
  async #getAllReplicaSetsAndSyncRevision(rsList: RS[], create: boolean): Promise<{ newRS: RS | undefined; oldRSs: RS[] }> {
    const { newRS: existing, oldRSs } = splitNewAndOld(this.d, rsList);
    const maxOld = Math.max(0, ...oldRSs.map((r) => intAnnotation(r, REVISION) ?? 0));
    const newRevision = maxOld + 1;
    if (existing) {
      let rs = existing;
      const copy = clone(existing) as Mutable<ReplicaSet>;
      const annotationsChanged = setNewReplicaSetAnnotations(this.d, copy, newRevision, true);
      const minReadyChanged = (copy.spec!.minReadySeconds ?? 0) !== (this.d.spec?.minReadySeconds ?? 0);
      if (annotationsChanged || minReadyChanged) {
        copy.spec!.minReadySeconds = this.d.spec?.minReadySeconds;
        rs = await this.#store.update(copy as RS);
      }
      await this.#setDeploymentRevision(rs.metadata.annotations?.[REVISION]);
      if (hasProgressDeadline(this.d) && !getCondition(this.d.status?.conditions, 'Progressing')) {
        this.#setCondition(this.#status(), 'Progressing', 'True', FOUND_NEW_RS, `Found new replica set "${rs.metadata.name}"`);
      }
      return { newRS: rs, oldRSs };
    }
    if (!create) return { newRS: undefined, oldRSs };

    const template = stripHash(this.d.spec!.template);
    const hash = templateHash(template, this.d.status?.collisionCount);
    const rsTemplate = clone(template);
    rsTemplate.metadata = { ...(rsTemplate.metadata ?? {}), labels: { ...(rsTemplate.metadata?.labels ?? {}), [POD_TEMPLATE_HASH]: hash } };
    const selector = clone(this.d.spec!.selector) as LabelSelector;
    selector.matchLabels = { ...(selector.matchLabels ?? {}), [POD_TEMPLATE_HASH]: hash };
    const name = `${this.d.metadata.name}-${hash}`;
    const draft: Mutable<ReplicaSet> = {
      apiVersion: 'apps/v1',
      kind: 'ReplicaSet',
      metadata: {
        name,
        namespace: this.d.metadata.namespace,
        labels: rsTemplate.metadata.labels,
        annotations: {},
        ownerReferences: [ownerRefFor(this.d)],
      },
      spec: { replicas: 0, minReadySeconds: this.d.spec?.minReadySeconds, selector, template: rsTemplate },
    };
    const replicas = newRSNewReplicas(this.d, oldRSs, draft as RS);
    draft.spec!.replicas = replicas;
    setNewReplicaSetAnnotations(this.d, draft, newRevision, false);

    let created: RS;
    try {
      created = await this.#store.create(draft as RS);
    } catch (err) {
      if (!isApiError(err, 'AlreadyExists')) {
        this.#events.event(this.d, 'Warning', 'FailedCreate', `Failed to create new replica set "${name}": ${(err as Error).message}`);
        throw err;
      }
      // ours with this template (a cache behind the store): use it; anyone else's: a hash collision
      const other = await this.#store.tryGet<ReplicaSet>('ReplicaSet', this.d.metadata.namespace, name);
      if (other && controllerRef(other)?.uid === this.d.metadata.uid && equalIgnoreHash(other.spec?.template, template)) {
        return { newRS: other, oldRSs };
      }
      const status = this.#status();
      status.collisionCount = (status.collisionCount ?? 0) + 1;
      await this.writeStatus(status);
      throw new Error(`replica set name "${name}" is taken by another template; retrying with collisionCount ${status.collisionCount}`);
    }
    this.#log.info({ rs: name, replicas }, 'created new replica set');
    if (replicas > 0) {
      this.#events.event(this.d, 'Normal', 'ScalingReplicaSet', `Scaled up replica set ${name} from 0 to ${replicas}`);
    }
    await this.#setDeploymentRevision(created.metadata.annotations?.[REVISION]);
    if (hasProgressDeadline(this.d)) {
      this.#setCondition(this.#status(), 'Progressing', 'True', NEW_RS_CREATED, `Created new replica set "${name}"`);
    }
    return { newRS: created, oldRSs };
  }

  async #setDeploymentRevision(revision: string | undefined): Promise<void> {
    if (!revision || this.d.metadata.annotations?.[REVISION] === revision) return;
    const updated = await this.#store.mutate<Deployment>('Deployment', this.d.metadata.namespace, this.d.metadata.name, (d) => {
      if (d.metadata?.uid !== this.d.metadata.uid || d.metadata.annotations?.[REVISION] === revision) return false;
      d.metadata.annotations = { ...(d.metadata.annotations ?? {}), [REVISION]: revision };
    });
    if (updated) this.d.metadata.annotations = { ...(this.d.metadata.annotations ?? {}), [REVISION]: revision };
  }

  /** upstream `scaleReplicaSetAndRecordEvent`: size and the desired/max annotations */
  async #scaleReplicaSet(rs: RS, newScale: number): Promise<{ rs: RS; scaled: boolean }> {
    const old = rs.spec?.replicas ?? 0;
    const copy = clone(rs) as Mutable<ReplicaSet>;
    const annotationsChanged = setReplicasAnnotations(copy, this.#replicas, this.#replicas + maxSurge(this.d));
    const sizeChanged = old !== newScale;
    if (!sizeChanged && !annotationsChanged) return { rs, scaled: false };
    copy.spec!.replicas = newScale;
    const updated = await this.#store.update(copy as RS);
    if (sizeChanged) {
      const dir = newScale > old ? 'up' : 'down';
      this.#log.debug({ rs: rs.metadata.name, from: old, to: newScale }, `scaled ${dir}`);
      this.#events.event(this.d, 'Normal', 'ScalingReplicaSet', `Scaled ${dir} replica set ${rs.metadata.name} from ${old} to ${newScale}`);
    }
    return { rs: updated, scaled: sizeChanged };
  }

  async #reconcileNewReplicaSet(all: RS[], newRS: RS): Promise<{ rs: RS; scaled: boolean }> {
    const want = this.#replicas;
    const have = newRS.spec?.replicas ?? 0;
    if (have === want) return { rs: newRS, scaled: false };
    if (have > want) return this.#scaleReplicaSet(newRS, want);
    return this.#scaleReplicaSet(newRS, newRSNewReplicas(this.d, all.filter((r) => r !== newRS), newRS));
  }

  /** upstream `reconcileOldReplicaSets`: scale old ones down as far as maxUnavailable allows */
  async #reconcileOldReplicaSets(oldRSs: RS[], newRS: RS): Promise<{ oldRSs: RS[]; scaled: boolean }> {
    const oldPods = sumSpec(oldRSs);
    if (oldPods === 0) return { oldRSs, scaled: false };
    const allPods = oldPods + (newRS.spec?.replicas ?? 0);
    const minAvailable = this.#replicas - maxUnavailable(this.d);
    const newUnavailable = (newRS.spec?.replicas ?? 0) - (newRS.status?.availableReplicas ?? 0);
    const maxScaledDown = allPods - minAvailable - newUnavailable;
    if (maxScaledDown <= 0) return { oldRSs, scaled: false };

    const sorted = [...oldRSs].sort(byCreation);
    // first the unhealthy: replicas that are not available cost nothing to remove
    let cleaned = 0;
    for (let i = 0; i < sorted.length && cleaned < maxScaledDown; i++) {
      const rs = sorted[i];
      const spec = rs.spec?.replicas ?? 0;
      const unhealthy = spec - (rs.status?.availableReplicas ?? 0);
      if (spec === 0 || unhealthy <= 0) continue;
      const n = Math.min(maxScaledDown - cleaned, unhealthy);
      sorted[i] = (await this.#scaleReplicaSet(rs, spec - n)).rs;
      cleaned += n;
    }
    // then available ones, down to minAvailable
    let scaledDown = 0;
    const available = sorted.reduce((s, r) => s + (r.status?.availableReplicas ?? 0), 0) + (newRS.status?.availableReplicas ?? 0);
    if (available > minAvailable) {
      const total = available - minAvailable;
      for (let i = 0; i < sorted.length && scaledDown < total; i++) {
        const spec = sorted[i].spec?.replicas ?? 0;
        if (spec === 0) continue;
        const n = Math.min(spec, total - scaledDown);
        sorted[i] = (await this.#scaleReplicaSet(sorted[i], spec - n)).rs;
        scaledDown += n;
      }
    }
    return { oldRSs: sorted, scaled: cleaned + scaledDown > 0 };
  }

  /** upstream `scale`: a resize outside a rollout, proportional over the active replica sets */
  async #scale(newRS: RS | undefined, oldRSs: RS[]): Promise<{ newRS: RS | undefined; oldRSs: RS[] }> {
    const want = this.#replicas;
    const active = withNew(oldRSs, newRS).filter((r) => (r.spec?.replicas ?? 0) > 0);
    const replace = (rs: RS) => {
      if (newRS && rs.metadata.uid === newRS.metadata.uid) newRS = rs;
      oldRSs = oldRSs.map((o) => (o.metadata.uid === rs.metadata.uid ? rs : o));
    };
    let target: RS | undefined;
    if (active.length === 0) target = newRS ?? [...oldRSs].sort(byCreation).at(-1);
    else if (active.length === 1) target = active[0];
    if (active.length <= 1) {
      if (target) replace((await this.#scaleReplicaSet(target, want)).rs);
      return { newRS, oldRSs };
    }
    if (newRS && isSaturated(this.d, newRS)) {
      for (const rs of oldRSs) if ((rs.spec?.replicas ?? 0) > 0) replace((await this.#scaleReplicaSet(rs, 0)).rs);
      return { newRS, oldRSs };
    }
    if (this.d.spec?.strategy?.type === 'Recreate') return { newRS, oldRSs };

    // proportional: every active replica set grows or shrinks by its share
    const allowed = want > 0 ? want + maxSurge(this.d) : 0;
    const toAdd = allowed - sumSpec(active);
    if (toAdd === 0) return { newRS, oldRSs };
    const ordered = [...active].sort((a, b) => {
      const d = (b.spec?.replicas ?? 0) - (a.spec?.replicas ?? 0);
      if (d !== 0) return d;
      return toAdd > 0 ? byCreation(b, a) : byCreation(a, b);
    });
    const sizes = new Map<string, number>();
    let added = 0;
    for (const rs of ordered) {
      let share = 0;
      if (toAdd !== added) {
        const fraction = replicaSetFraction(rs, this.d);
        const left = toAdd - added;
        share = toAdd > 0 ? Math.min(fraction, left) : Math.max(fraction, left);
      }
      sizes.set(rs.metadata.uid, (rs.spec?.replicas ?? 0) + share);
      added += share;
    }
    const first = ordered[0];
    sizes.set(first.metadata.uid, Math.max(0, sizes.get(first.metadata.uid)! + (toAdd - added)));
    for (const rs of ordered) replace((await this.#scaleReplicaSet(rs, sizes.get(rs.metadata.uid)!)).rs);
    return { newRS, oldRSs };
  }

  /** upstream `cleanupDeployment`: delete the oldest empty replica sets beyond revisionHistoryLimit */
  async #cleanup(oldRSs: RS[]): Promise<RS[]> {
    const limit = this.d.spec?.revisionHistoryLimit ?? 10;
    const alive = oldRSs.filter((r) => !isTerminating(r));
    const diff = alive.length - limit;
    if (diff <= 0) return oldRSs;
    const byRevision = [...alive].sort((a, b) => (intAnnotation(a, REVISION) ?? 0) - (intAnnotation(b, REVISION) ?? 0) || byCreation(a, b));
    const deleted = new Set<string>();
    for (const rs of byRevision.slice(0, diff)) {
      if ((rs.status?.replicas ?? 0) !== 0 || (rs.spec?.replicas ?? 0) !== 0) continue;
      if ((rs.metadata.generation ?? 0) > (rs.status?.observedGeneration ?? 0)) continue;
      try {
        await this.#store.delete('ReplicaSet', rs.metadata.namespace, rs.metadata.name, { preconditions: { uid: rs.metadata.uid } });
        this.#log.debug({ rs: rs.metadata.name }, 'deleted old replica set beyond revisionHistoryLimit');
      } catch (err) {
        if (!isApiError(err, 'NotFound')) throw err;
      }
      deleted.add(rs.metadata.uid);
    }
    return oldRSs.filter((r) => !deleted.has(r.metadata.uid));
  }

  // ── status ────────────────────────────────────────────────────────────────────────────

  #status(): DStatus {
    return (this.d.status ??= {});
  }

  #setCondition(status: DStatus, type: string, s: string, reason: string, message: string): void {
    status.conditions = setDeploymentCondition(status.conditions, { type, status: s, reason, message }, nowTime());
  }

  #calculateStatus(all: RS[], newRS: RS | undefined): DStatus {
    const available = all.reduce((s, r) => s + (r.status?.availableReplicas ?? 0), 0);
    const total = sumSpec(all);
    const status: DStatus = {
      observedGeneration: this.d.metadata.generation,
      replicas: all.reduce((s, r) => s + (r.status?.replicas ?? 0), 0),
      updatedReplicas: newRS?.status?.replicas ?? 0,
      readyReplicas: all.reduce((s, r) => s + (r.status?.readyReplicas ?? 0), 0),
      availableReplicas: available,
      unavailableReplicas: Math.max(0, total - available),
      collisionCount: this.d.status?.collisionCount,
      conditions: [...(this.d.status?.conditions ?? [])],
    };
    if (available >= this.#replicas - maxUnavailable(this.d)) {
      this.#setCondition(status, 'Available', 'True', MIN_AVAILABLE, 'Deployment has minimum availability.');
    } else {
      this.#setCondition(status, 'Available', 'False', MIN_UNAVAILABLE, 'Deployment does not have minimum availability.');
    }
    return status;
  }

  /** upstream `syncRolloutStatus`: Progressing follows progress, completion and the deadline */
  async #syncRolloutStatus(all: RS[], newRS: RS | undefined): Promise<ReconcileResult | void> {
    const status = this.#calculateStatus(all, newRS);
    const deadline = hasProgressDeadline(this.d);
    if (!deadline) status.conditions = status.conditions?.filter((c) => c.type !== 'Progressing');
    const current = getCondition(this.d.status?.conditions, 'Progressing');
    const complete = status.replicas === status.updatedReplicas && current?.reason === NEW_RS_AVAILABLE;
    const now = nowTime();
    if (deadline && !complete) {
      const rsName = newRS?.metadata.name;
      if (deploymentComplete(this.d, status)) {
        const msg = rsName ? `ReplicaSet "${rsName}" has successfully progressed.` : 'Deployment has successfully progressed.';
        this.#setCondition(status, 'Progressing', 'True', NEW_RS_AVAILABLE, msg);
      } else if (deploymentProgressing(this.d, status)) {
        const msg = rsName ? `ReplicaSet "${rsName}" is progressing.` : 'Deployment is progressing.';
        // progress moves lastUpdateTime even when the reason stays the same
        const cond: DCondition = { type: 'Progressing', status: 'True', reason: RS_UPDATED, message: msg, lastUpdateTime: now, lastTransitionTime: now };
        if (current?.status === 'True') cond.lastTransitionTime = current.lastTransitionTime;
        status.conditions = [...(status.conditions ?? []).filter((c) => c.type !== 'Progressing'), cond];
      } else if (timedOut(this.d, status)) {
        const msg = rsName ? `ReplicaSet "${rsName}" has timed out progressing.` : 'Deployment has timed out progressing.';
        this.#setCondition(status, 'Progressing', 'False', TIMED_OUT, msg);
        this.#events.event(this.d, 'Warning', TIMED_OUT, msg);
      }
    }
    const failure = all.map((r) => getCondition(r.status?.conditions, 'ReplicaFailure')).find((c) => c?.status === 'True');
    if (failure) {
      status.conditions = setDeploymentCondition(status.conditions, { type: 'ReplicaFailure', status: 'True', reason: failure.reason, message: failure.message }, now);
    } else {
      status.conditions = status.conditions?.filter((c) => c.type !== 'ReplicaFailure');
    }
    await this.writeStatus(status);
    // look again when the deadline would pass (upstream requeueStuckDeployment)
    const cond = getCondition(status.conditions, 'Progressing');
    if (deadline && cond && cond.reason !== NEW_RS_AVAILABLE && cond.reason !== TIMED_OUT && cond.status === 'True' && !deploymentComplete(this.d, status)) {
      const from = Date.parse(cond.lastUpdateTime ?? '');
      if (Number.isFinite(from)) {
        const left = from + progressDeadlineSeconds(this.d) * 1000 - Date.now();
        return { requeueAfterMs: Math.max(left, 0) + 1000 };
      }
    }
  }

  async writeStatus(status: DStatus): Promise<void> {
    status.observedGeneration = this.d.metadata.generation;
    if (!status.conditions?.length) delete status.conditions;
    if (status.collisionCount === undefined) delete status.collisionCount;
    this.d.status = status;
    if (canonicalJson(status) === canonicalJson(this.#stored.status)) return;
    const uid = this.#stored.metadata.uid;
    await this.#store.mutate<Deployment>(
      'Deployment',
      this.#stored.metadata.namespace,
      this.#stored.metadata.name,
      (d) => {
        if (d.metadata?.uid !== uid) return false;
        d.status = clone(status);
      },
      { subresource: 'status' },
    );
  }
}

