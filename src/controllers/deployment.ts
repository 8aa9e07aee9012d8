import type { Logger } from 'pino';
import { type Selector, matches } from '../api/labels.js';
import type { Deployment, Pod, ReplicaSet, Stored } from '../api/types.js';
import { clone, keyOf } from '../api/types.js';
import type { Informer, InformerFactory } from '../store/informer.js';
import type { Store } from '../store/types.js';
import { DeploymentSync } from './deployment-sync.js';
import { type D, type RS, selectorOf } from './deployment-util.js';
import type { EventRecorder } from '../store/events.js';
import { NamespaceIndex, ownersToSync } from './ns-index.js';
import { controllerRef, isTerminating, ownerRefFor, splitKey } from './pod-util.js';
import { type ReconcileContext, type ReconcileResult, Runner } from './runner.js';

export { equalIgnoreHash, maxSurge, maxUnavailable, scaledValue, templateHash, POD_TEMPLATE_HASH, REVISION } from './deployment-util.js';

export interface DeploymentControllerOptions {
  store: Store;
  informers: InformerFactory;
  log: Logger;
  events: EventRecorder;
  workers?: number;
}

/**
 * Rolls a Deployment's pod template out through ReplicaSets, as upstream's deployment
 * controller: one ReplicaSet per distinct template, named `<deployment>-<pod-template-hash>`;
 * revisions in `deployment.kubernetes.io/revision` (a template seen before reuses its ReplicaSet
 * under the next revision, which is what `kubectl rollout undo` relies on); RollingUpdate paced
 * by maxSurge / maxUnavailable, or Recreate; proportional scaling of a resize mid-rollout; pause;
 * `revisionHistoryLimit`; the status and Available / Progressing conditions
 * `kubectl rollout status` reads.
 */
export class DeploymentController {
  readonly runner: Runner;
  readonly #store: Store;
  readonly #events: EventRecorder;
  readonly #deployments: Informer<Deployment>;
  readonly #rses: Informer<ReplicaSet>;
  readonly #rsByNs: NamespaceIndex<ReplicaSet>;
  readonly #deploymentsByNs: NamespaceIndex<Deployment>;
  readonly #podsByNs: NamespaceIndex<Pod>;

  constructor(opts: DeploymentControllerOptions) {
    this.#store = opts.store;
    this.#events = opts.events;
    this.#deployments = opts.informers.for<Deployment>('Deployment');
    this.#rses = opts.informers.for<ReplicaSet>('ReplicaSet');
    const pods = opts.informers.for<Pod>('Pod');
    this.#rsByNs = new NamespaceIndex(this.#rses);
    this.#deploymentsByNs = new NamespaceIndex(this.#deployments);
    this.#podsByNs = new NamespaceIndex(pods);
    this.runner = new Runner({
      name: 'deployment',
      reconciler: this,
      log: opts.log,
      informers: [this.#deployments, this.#rses, pods],
      workers: opts.workers ?? 4,
    });

    this.#deployments.addHandler({
      onAdd: (d) => this.runner.enqueue(keyOf(d)),
      onUpdate: (_o, d) => this.runner.enqueue(keyOf(d)),
      onDelete: (d) => this.runner.enqueue(keyOf(d)),
    });
    this.#rses.addHandler({
      onAdd: (rs) => this.#enqueueFor(rs),
      onUpdate: (old, rs) => {
        if (controllerRef(old)?.uid !== controllerRef(rs)?.uid) this.#enqueueFor(old);
        this.#enqueueFor(rs);
      },
      onDelete: (rs) => this.#enqueueFor(rs),
    });
    // Recreate waits for the old pods to be gone: their deletion is the signal
    pods.addHandler({
      onDelete: (p) => {
        const ref = controllerRef(p);
        if (ref?.kind !== 'ReplicaSet') return;
        const rs = this.#rses.get(p.metadata.namespace, ref.name);
        const dref = rs && controllerRef(rs);
        if (dref?.kind !== 'Deployment') return;
        const d = this.#deployments.get(p.metadata.namespace, dref.name);
        if (d && d.metadata.uid === dref.uid && d.spec?.strategy?.type === 'Recreate') this.runner.enqueue(keyOf(d));
      },
    });
  }

  start(): Promise<void> {
    return this.runner.start();
  }

  stop(): Promise<void> {
    return this.runner.stop();
  }

  #enqueueFor(rs: Stored<ReplicaSet>): void {
    for (const d of ownersToSync(rs, 'Deployment', this.#deployments, this.#deploymentsByNs, selectorOf)) this.runner.enqueue(keyOf(d));
  }


  async reconcile(key: string, { log }: ReconcileContext): Promise<ReconcileResult | void> {
    const stored = this.#deployments.getByKey(key);
    if (!stored) return;
    const run = new DeploymentSync(this.#store, this.#events, clone(stored) as D, stored, log);
    const selector = selectorOf(stored);
    if (!selector) {
      this.#events.event(stored, 'Warning', 'SelectingAll', 'This deployment is selecting all pods. A non-empty selector is required.');
      await run.writeStatus(run.d.status ?? {});
      return;
    }
    const [namespace] = splitKey(key);
    const rsList = await this.#claimReplicaSets(stored, selector, namespace, log);
    if (isTerminating(stored)) {
      await run.syncStatusOnly(rsList);
      return;
    }
    run.checkPausedConditions();
    if (stored.spec?.paused) return run.sync(rsList);
    if (run.isScalingEvent(rsList)) return run.sync(rsList);
    if (stored.spec?.strategy?.type === 'Recreate') return run.rolloutRecreate(rsList, (rsUids) => this.#oldPodsRunning(namespace, rsUids));
    return run.rolloutRolling(rsList);
  }

  /** any pod of these replica sets not finished (terminating ones count: they still run) */
  #oldPodsRunning(namespace: string | undefined, rsUids: Set<string>): boolean {
    for (const p of this.#podsByNs.list(namespace)) {
      const ref = controllerRef(p);
      if (!ref || !rsUids.has(ref.uid)) continue;
      if (p.status?.phase !== 'Failed' && p.status?.phase !== 'Succeeded') return true;
    }
    return false;
  }

  /** upstream `ClaimReplicaSets` */
  async #claimReplicaSets(d: D, selector: Selector, namespace: string | undefined, log: Logger): Promise<RS[]> {
    const uid = d.metadata.uid;
    const out: RS[] = [];
    let canAdopt: boolean | undefined;
    for (const rs of this.#rsByNs.list(namespace)) {
      const ref = controllerRef(rs);
      const selected = matches(selector, rs.metadata.labels);
      if (ref) {
        if (ref.uid !== uid) continue;
        if (selected) out.push(rs);
        else if (!isTerminating(d)) {
          await this.#store.mutate<ReplicaSet>('ReplicaSet', namespace, rs.metadata.name, (r) => {
            const refs = r.metadata?.ownerReferences ?? [];
            const kept = refs.filter((x) => x.uid !== uid);
            if (kept.length === refs.length) return false;
            r.metadata!.ownerReferences = kept.length ? kept : undefined;
          });
          log.info({ rs: rs.metadata.name }, 'released replica set whose labels no longer match');
        }
        continue;
      }
      if (!selected || isTerminating(rs) || isTerminating(d)) continue;
      canAdopt ??= await (async () => {
        const fresh = await this.#store.tryGet<Deployment>('Deployment', namespace, d.metadata.name);
        return !!fresh && fresh.metadata.uid === uid && !isTerminating(fresh);
      })();
      if (!canAdopt) continue;
      const adopted = await this.#store.mutate<ReplicaSet>('ReplicaSet', namespace, rs.metadata.name, (r) => {
        if (r.metadata?.uid !== rs.metadata.uid || controllerRef(r)) return false;
        r.metadata!.ownerReferences = [...(r.metadata!.ownerReferences ?? []), ownerRefFor(d)];
      });
      if (adopted && controllerRef(adopted)?.uid === uid) {
        log.info({ rs: rs.metadata.name }, 'adopted orphan replica set');
        out.push(adopted);
      }
    }
    return out;
  }
}

