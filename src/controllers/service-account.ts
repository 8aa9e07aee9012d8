import type { Logger } from 'pino';
import { isApiError } from '../api/errors.js';
import type { Namespace, Stored } from '../api/types.js';
import type { Informer, InformerFactory } from '../store/informer.js';
import type { Store } from '../store/types.js';
import { type ReconcileContext, Runner } from './runner.js';

/** the ServiceAccount every namespace gets (upstream's `--service-account-names` default) */
export const DEFAULT_SERVICE_ACCOUNT = 'default';

export interface ServiceAccountControllerOptions {
  store: Store;
  informers: InformerFactory;
  log: Logger;
  workers?: number;
}

interface ServiceAccountObj {
  metadata: { name: string; namespace?: string };
}

/**
 * Upstream's serviceaccounts-controller: every namespace that is not terminating has a
 * ServiceAccount `default`, made when the namespace appears and made again when it is deleted.
 * Keyed by namespace name. (The token controller and projected token volumes are not here yet:
 * a pod gets no `/var/run/secrets/kubernetes.io/serviceaccount`.)
 */
export class ServiceAccountController {
  readonly runner: Runner;
  readonly #store: Store;
  readonly #namespaces: Informer<Namespace>;
  readonly #accounts: Informer<ServiceAccountObj & { kind?: string }>;

  constructor(o: ServiceAccountControllerOptions) {
    this.#store = o.store;
    this.#namespaces = o.informers.for<Namespace>('Namespace');
    this.#accounts = o.informers.for('ServiceAccount');
    this.runner = new Runner({ name: 'serviceaccount', reconciler: this, log: o.log, informers: [this.#namespaces, this.#accounts], workers: o.workers ?? 1 });
    this.#namespaces.addHandler({
      onAdd: (ns) => this.runner.enqueue(ns.metadata.name),
      onUpdate: (_o, ns) => this.runner.enqueue(ns.metadata.name),
    });
    this.#accounts.addHandler({
      onDelete: (sa) => sa.metadata.name === DEFAULT_SERVICE_ACCOUNT && sa.metadata.namespace && this.runner.enqueue(sa.metadata.namespace),
    });
  }

  start(): Promise<void> {
    return this.runner.start();
  }

  stop(): Promise<void> {
    return this.runner.stop();
  }

  async reconcile(namespace: string, { log }: ReconcileContext): Promise<void> {
    const ns: Stored<Namespace> | undefined = this.#namespaces.get(undefined, namespace);
    if (!ns || ns.metadata.deletionTimestamp || ns.status?.phase === 'Terminating') return;
    if (this.#accounts.get(namespace, DEFAULT_SERVICE_ACCOUNT)) return;
    try {
      await this.#store.create({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: DEFAULT_SERVICE_ACCOUNT, namespace } });
      log.debug({ namespace }, 'default ServiceAccount created');
    } catch (e) {
      // made meanwhile (the cache was behind), or the namespace is going away: nothing to do
      if (isApiError(e, 'AlreadyExists') || isApiError(e, 'Forbidden') || isApiError(e, 'NotFound')) return;
      throw e;
    }
  }
}
