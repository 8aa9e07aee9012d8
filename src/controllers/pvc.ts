import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Mutable, PersistentVolumeClaim, Pod, Stored } from '../api/types.js';
import { keyOf } from '../api/types.js';
import type { Informer, InformerFactory } from '../store/informer.js';
import type { Store } from '../store/types.js';
import type { EventRecorder } from '../store/events.js';
import { NamespaceIndex } from './ns-index.js';
import { isTerminating, splitKey } from './pod-util.js';
import { type ReconcileContext, Runner } from './runner.js';

/** upstream's finalizer: a claim in use by a pod is not removed until no pod uses it */
export const PVC_PROTECTION = 'kubernetes.io/pvc-protection';
/** where the claim's data lives, for people reading `kubectl get pvc -o yaml` */
export const VOLUME_PATH_ANNOTATION = 'kubeloop.dev/volume-path';
export const PROVISIONER = 'kubeloop.dev/local-path';

/**
 * The directory that backs a claim: `<stateDir>/volumes/<namespace>/<claim>/`. The node agent
 * computes the same path to hand it to a pod's processes.
 */
export function claimDirectory(stateDir: string, namespace: string, claim: string): string {
  return path.join(stateDir, 'volumes', namespace, claim);
}

export interface PvcControllerOptions {
  store: Store;
  informers: InformerFactory;
  log: Logger;
  events: EventRecorder;
  /** absolute; claims are backed by directories under `<stateDir>/volumes/`. Without it claims are bound but no directory is made */
  stateDir?: string;
  workers?: number;
}

const finished = (p: Pod) => p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed';
const claimsOf = (p: Pod): string[] => (p.spec?.volumes ?? []).map((v) => v.persistentVolumeClaim?.claimName).filter((c): c is string => !!c);

/**
 * kubeloop's volume provisioner and binder (upstream: the PV controller, a local-path
 * provisioner and the pvc-protection controller in one). There are no PersistentVolume
 * objects: a claim is bound to a directory.
 *
 * - A new claim gets the `kubernetes.io/pvc-protection` finalizer, its directory is created,
 *   and it is marked Bound (`spec.volumeName: pvc-<uid>`, capacity = the request).
 * - A deleted claim stays (Terminating) while a pod that has not finished uses it; then its
 *   directory is removed (reclaim policy Delete, as for dynamically provisioned volumes) and
 *   the finalizer dropped.
 *
 * Why here and not in the node agent: every simulated node shares this machine's filesystem, so
 * a claim is not node-local; the provisioner is the one component that sees a claim's whole
 * life (bound → released), exactly like upstream's local-path provisioner, a controller that
 * makes and removes directories. The node agent only hands the directory to the pod (and makes
 * it if missing, like a `hostPath` of type DirectoryOrCreate), never deletes it.
 */
export class PvcController {
  readonly runner: Runner;
  readonly #store: Store;
  readonly #events: EventRecorder;
  readonly #stateDir: string | undefined;
  readonly #claims: Informer<PersistentVolumeClaim>;
  readonly #podsByNs: NamespaceIndex<Pod>;

  constructor(opts: PvcControllerOptions) {
    if (opts.stateDir !== undefined && !path.isAbsolute(opts.stateDir)) throw new Error(`stateDir must be absolute, got "${opts.stateDir}"`);
    this.#store = opts.store;
    this.#events = opts.events;
    this.#stateDir = opts.stateDir;
    this.#claims = opts.informers.for<PersistentVolumeClaim>('PersistentVolumeClaim');
    const pods = opts.informers.for<Pod>('Pod');
    this.#podsByNs = new NamespaceIndex(pods);
    this.runner = new Runner({
      name: 'persistentvolumeclaim',
      reconciler: this,
      log: opts.log,
      informers: [this.#claims, pods],
      workers: opts.workers ?? 2,
    });
    this.#claims.addHandler({
      onAdd: (c) => this.runner.enqueue(keyOf(c)),
      onUpdate: (_o, c) => this.runner.enqueue(keyOf(c)),
    });
    // a pod that stops using a terminating claim may free it
    const released = (p: Stored<Pod>) => {
      for (const name of claimsOf(p)) {
        const c = this.#claims.get(p.metadata.namespace, name);
        if (c && isTerminating(c)) this.runner.enqueue(keyOf(c));
      }
    };
    pods.addHandler({ onUpdate: (_o, p) => finished(p) && released(p), onDelete: released });
  }

  start(): Promise<void> {
    return this.runner.start();
  }

  stop(): Promise<void> {
    return this.runner.stop();
  }

  async reconcile(key: string, { log }: ReconcileContext): Promise<void> {
    const claim = this.#claims.getByKey(key);
    if (!claim) return;
    const [namespace, name] = splitKey(key);
    const ns = namespace ?? 'default';
    const dir = this.#stateDir ? claimDirectory(this.#stateDir, ns, name) : undefined;

    if (isTerminating(claim)) {
      if (!claim.metadata.finalizers?.includes(PVC_PROTECTION)) return;
      const users = this.#podsByNs.list(namespace).filter((p) => !finished(p) && claimsOf(p).includes(name));
      if (users.length) {
        log.debug({ pods: users.map((p) => p.metadata.name) }, 'claim is in use: kept until its pods are gone');
        return;
      }
      if (dir) await rm(dir, { recursive: true, force: true });
      await this.#store.mutate<PersistentVolumeClaim>('PersistentVolumeClaim', namespace, name, (c) => {
        if (c.metadata?.uid !== claim.metadata.uid || !c.metadata.finalizers?.includes(PVC_PROTECTION)) return false;
        c.metadata.finalizers = c.metadata.finalizers.filter((f) => f !== PVC_PROTECTION);
      });
      log.info({ dir }, 'claim released: its directory was removed');
      return;
    }

    const volumeName = `pvc-${claim.metadata.uid}`;
    const needsMeta =
      !claim.metadata.finalizers?.includes(PVC_PROTECTION) ||
      claim.spec?.volumeName !== volumeName ||
      (dir !== undefined && claim.metadata.annotations?.[VOLUME_PATH_ANNOTATION] !== dir);
    if (claim.spec?.volumeName && claim.spec.volumeName !== volumeName) {
      // bound by someone else (a hand-written volumeName): there is no such PersistentVolume here
      this.#events.event(claim, 'Warning', 'VolumeMismatch', `kubeloop has no PersistentVolume "${claim.spec.volumeName}": remove spec.volumeName to get a directory of its own`);
      return;
    }
    if (dir) await mkdir(dir, { recursive: true, mode: 0o700 }); // inside the owner-only state dir
    if (needsMeta) {
      await this.#store.mutate<PersistentVolumeClaim>('PersistentVolumeClaim', namespace, name, (c) => {
        if (c.metadata?.uid !== claim.metadata.uid) return false;
        const m = c.metadata;
        if (!m.finalizers?.includes(PVC_PROTECTION)) m.finalizers = [...(m.finalizers ?? []), PVC_PROTECTION];
        m.annotations = {
          ...m.annotations,
          'pv.kubernetes.io/bind-completed': 'yes',
          'pv.kubernetes.io/bound-by-controller': 'yes',
          'volume.kubernetes.io/storage-provisioner': PROVISIONER,
          ...(dir ? { [VOLUME_PATH_ANNOTATION]: dir } : {}),
        };
        (c.spec ??= {}).volumeName = volumeName;
      });
    }
    if (claim.status?.phase !== 'Bound') {
      const storage = claim.spec?.resources?.requests?.storage;
      await this.#store.mutate<PersistentVolumeClaim>(
        'PersistentVolumeClaim',
        namespace,
        name,
        (c) => {
          if (c.metadata?.uid !== claim.metadata.uid) return false;
          (c as Mutable<PersistentVolumeClaim>).status = {
            ...c.status,
            phase: 'Bound',
            accessModes: c.spec?.accessModes ?? ['ReadWriteOnce'],
            ...(storage !== undefined ? { capacity: { storage } } : {}),
          };
        },
        { subresource: 'status' },
      );
      this.#events.event(claim, 'Normal', 'ProvisioningSucceeded', `Successfully provisioned volume ${volumeName}${dir ? ` at ${dir}` : ''}`);
      log.info({ dir }, 'claim bound');
    }
  }
}

