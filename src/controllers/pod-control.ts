/**
 * Creating and deleting a controller's pods, with expectations, in one place (upstream's
 * `PodControl` plus the `ControllerExpectations` bookkeeping each of its callers does around it).
 * Used by the ReplicaSet/ReplicationController, DaemonSet and Job controllers; the StatefulSet
 * controller keeps its own (upstream's StatefulPodControl: fixed names, its own event texts, no
 * expectations).
 *
 * - `create`: the pod gets a generated name from its `metadata.generateName` (tried again on a
 *   taken name, as the API server does), the create is expected before it is written and the
 *   expectation cancelled if it fails; optionally it first waits for a turn of the shared pod
 *   create rate, and is dropped if the owner no longer wants it by then.
 * - `delete`: by uid precondition (the pod, not a successor of the same name), expected first;
 *   NotFound and Conflict mean the pod is already gone or is another pod: nothing to do.
 * - Events as upstream: SuccessfulCreate `Created pod: <name>` / FailedCreate `Error creating: …`,
 *   SuccessfulDelete `Deleted pod: <name>` / FailedDelete `Error deleting: …`.
 */
import { isApiError } from '../api/errors.js';
import { type KObject, type Pod, type Stored, keyOf } from '../api/types.js';
import type { EventRecorder } from '../store/events.js';
import type { Store } from '../store/types.js';
import type { TokenBucket } from '../util/token-bucket.js';
import { Expectations } from './expectations.js';
import { generateName } from './names.js';
import { isTerminating } from './pod-util.js';

type Owner = Stored<KObject>;

export interface PodControlOptions {
  store: Store;
  events: EventRecorder;
  /** the pod create rate shared by the workload controllers; unset: no limit */
  podCreates?: TokenBucket;
}

export class PodControl {
  readonly #store: Store;
  readonly #events: EventRecorder;
  readonly #podCreates: TokenBucket | undefined;
  readonly #expectations = new Expectations();

  constructor(o: PodControlOptions) {
    this.#store = o.store;
    this.#events = o.events;
    this.#podCreates = o.podCreates;
  }

  /** Are all of the owner's creates and deletes visible in the cache (`cached`: the pod informer's view), or expired? Only then may it count its pods. */
  satisfied(ownerKey: string, cached: (podKey: string) => Stored<Pod> | undefined): boolean {
    return this.#expectations.satisfied(
      ownerKey,
      (k) => cached(k) !== undefined,
      (k) => {
        const p = cached(k);
        return !p || isTerminating(p);
      },
    );
  }

  /** The owner is gone: drop what it expected. */
  forget(ownerKey: string): void {
    this.#expectations.forget(ownerKey);
  }

  /**
   * Creates `pod` (its `metadata.generateName` set, its owner reference to `owner` included) under
   * a generated name. False when `stillWanted` said no after waiting for a create turn.
   */
  async create(owner: Owner, pod: Pod, o: { rateLimited?: boolean; stillWanted?: () => boolean } = {}): Promise<boolean> {
    const ownerKey = keyOf(owner);
    const prefix = pod.metadata?.generateName ?? `${owner.metadata.name}-`;
    for (let attempt = 0; ; attempt++) {
      const name = generateName(prefix);
      const podKey = `${owner.metadata.namespace}/${name}`;
      this.#expectations.expectCreate(ownerKey, podKey);
      try {
        if (o.rateLimited && this.#podCreates && !(await this.#podCreates.take(o.stillWanted))) {
          this.#expectations.cancel(ownerKey, podKey);
          return false;
        }
        await this.#store.create({ ...pod, metadata: { ...pod.metadata, name, generateName: prefix, namespace: owner.metadata.namespace } });
        this.#events.event(owner, 'Normal', 'SuccessfulCreate', `Created pod: ${name}`);
        return true;
      } catch (e) {
        this.#expectations.cancel(ownerKey, podKey);
        // a random name taken: try another, as the API server does for generateName
        if (isApiError(e, 'AlreadyExists') && attempt < 3) continue;
        this.#events.event(owner, 'Warning', 'FailedCreate', `Error creating: ${(e as Error).message}`);
        throw e;
      }
    }
  }

  /** Deletes `pod` (this very pod: uid precondition); `force` skips the grace period. */
  async delete(owner: Owner, pod: Stored<Pod>, o: { force?: boolean } = {}): Promise<void> {
    const ownerKey = keyOf(owner);
    const podKey = keyOf(pod);
    this.#expectations.expectDelete(ownerKey, podKey);
    try {
      await this.#store.delete('Pod', pod.metadata.namespace, pod.metadata.name, {
        preconditions: { uid: pod.metadata.uid },
        ...(o.force ? { gracePeriodSeconds: 0 } : {}),
      });
    } catch (e) {
      this.#expectations.cancel(ownerKey, podKey);
      if (isApiError(e, 'NotFound') || isApiError(e, 'Conflict')) return;
      this.#events.event(owner, 'Warning', 'FailedDelete', `Error deleting: ${(e as Error).message}`);
      throw e;
    }
    this.#events.event(owner, 'Normal', 'SuccessfulDelete', `Deleted pod: ${pod.metadata.name}`);
  }
}
