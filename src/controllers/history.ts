import type { Logger } from 'pino';
import { isApiError } from '../api/errors.js';
import type { ControllerRevision, KObject, PodTemplateSpec, Stored } from '../api/types.js';
import type { Informer } from '../store/informer.js';
import type { Store } from '../store/types.js';
import { canonicalJson, fnv1a32, safeEncode } from './names.js';
import { controllerRef, ownerRefFor } from './pod-util.js';

/** label on StatefulSet and DaemonSet pods naming the revision they were made from */
export const CONTROLLER_REVISION_HASH = 'controller-revision-hash';

export type Revision = Stored<ControllerRevision>;

/** An owner of revisions: a StatefulSet or DaemonSet. */
export type RevisionOwner = Stored<KObject & { spec?: { template?: PodTemplateSpec; revisionHistoryLimit?: number }; status?: { collisionCount?: number } }>;

/**
 * What a revision stores: upstream's patch form `{"spec":{"template":{...,"$patch":"replace"}}}`,
 * which `kubectl rollout history --revision` prints and `kubectl rollout undo` applies.
 */
export function revisionData(template: PodTemplateSpec | undefined): { spec: { template: Record<string, unknown> } } {
  return { spec: { template: { ...(structuredClone(template ?? {}) as Record<string, unknown>), $patch: 'replace' } } };
}

/** the pod template a revision holds */
export function revisionTemplate(r: ControllerRevision): PodTemplateSpec {
  const t = (r.data as { spec?: { template?: Record<string, unknown> } } | undefined)?.spec?.template ?? {};
  const { $patch: _p, ...rest } = t;
  return structuredClone(rest) as PodTemplateSpec;
}

/** upstream `controller.ComputeHash` over the revision's data and the collision count */
export function revisionHash(template: PodTemplateSpec | undefined, collisionCount: number | undefined): string {
  const input = canonicalJson(revisionData(template)) + (collisionCount ? `#${collisionCount}` : '');
  return safeEncode(String(fnv1a32(input)));
}

const sameData = (r: ControllerRevision, template: PodTemplateSpec | undefined) =>
  canonicalJson(r.data) === canonicalJson(revisionData(template));

export const byRevision = (a: Revision, b: Revision): number =>
  a.revision - b.revision || (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0);

export interface HistoryResult {
  /** every revision of the owner, oldest first */
  revisions: Revision[];
  /** the revision of the owner's current template */
  update: Revision;
  /** the collision count to record in status (grows when a hash collides) */
  collisionCount: number;
}

/**
 * ControllerRevision bookkeeping shared by the StatefulSet and DaemonSet controllers (upstream
 * `pkg/controller/history`): one revision per distinct template, named `<owner>-<hash>`, numbered
 * in order of use; going back to an earlier template renumbers its revision as the newest
 * (that is what `kubectl rollout undo` relies on); old revisions beyond `revisionHistoryLimit`
 * that no pod uses are deleted.
 */
export class History {
  readonly #store: Store;
  readonly #revisions: Informer<ControllerRevision>;

  constructor(store: Store, revisions: Informer<ControllerRevision>) {
    this.#store = store;
    this.#revisions = revisions;
  }

  /** the owner's revisions in the cache, oldest first */
  list(owner: RevisionOwner): Revision[] {
    return this.#revisions
      .list(owner.metadata.namespace)
      .filter((r) => controllerRef(r)?.uid === owner.metadata.uid)
      .sort(byRevision);
  }

  /** Finds or creates the revision of the owner's template; see {@link HistoryResult}. */
  async sync(owner: RevisionOwner, labels: Record<string, string>, log: Logger): Promise<HistoryResult> {
    const revisions = this.list(owner);
    const template = owner.spec?.template;
    const next = (revisions.at(-1)?.revision ?? 0) + 1;
    const equal = revisions.filter((r) => sameData(r, template));
    let collisionCount = owner.status?.collisionCount ?? 0;
    if (equal.length) {
      const found = equal.at(-1)!;
      if (found === revisions.at(-1)) return { revisions, update: found, collisionCount };
      // an earlier template is back (a rollback): its revision becomes the newest
      const bumped = await this.#store.mutate<ControllerRevision>('ControllerRevision', found.metadata.namespace, found.metadata.name, (r) => {
        if (r.revision >= next) return false;
        r.revision = next;
      });
      if (!bumped) throw new Error(`controller revision ${found.metadata.name} vanished`);
      log.debug({ revision: found.metadata.name, number: next }, 'template seen before: revision renumbered');
      return { revisions: [...revisions.filter((r) => r !== found), bumped].sort(byRevision), update: bumped, collisionCount };
    }
    for (let attempt = 0; attempt < 10; attempt++) {
      const name = `${owner.metadata.name}-${revisionHash(template, collisionCount)}`;
      const rev: ControllerRevision = {
        apiVersion: 'apps/v1',
        kind: 'ControllerRevision',
        metadata: { name, namespace: owner.metadata.namespace, labels: { ...labels }, ownerReferences: [ownerRefFor(owner)] },
        data: revisionData(template),
        revision: next,
      };
      try {
        const created = await this.#store.create(rev);
        log.debug({ revision: name, number: next }, 'created controller revision');
        return { revisions: [...revisions, created], update: created, collisionCount };
      } catch (err) {
        if (!isApiError(err, 'AlreadyExists')) throw err;
        const existing = await this.#store.tryGet<ControllerRevision>('ControllerRevision', owner.metadata.namespace, name);
        if (existing && controllerRef(existing)?.uid === owner.metadata.uid && sameData(existing, template)) {
          // ours, not yet in the cache
          return { revisions: [...revisions.filter((r) => r.metadata.name !== name), existing].sort(byRevision), update: existing, collisionCount };
        }
        collisionCount++;
      }
    }
    throw new Error(`cannot name a controller revision for ${owner.metadata.name}: too many hash collisions`);
  }

  /**
   * Deletes the oldest revisions beyond `revisionHistoryLimit` (default 10), never one in
   * `live` (the current and update revisions, and those pods still run).
   */
  async truncate(owner: RevisionOwner, revisions: Revision[], live: ReadonlySet<string>): Promise<void> {
    const limit = owner.spec?.revisionHistoryLimit ?? 10;
    const old = revisions.filter((r) => !live.has(r.metadata.name));
    const excess = old.length - limit;
    for (const r of old.slice(0, Math.max(0, excess))) {
      try {
        await this.#store.delete('ControllerRevision', r.metadata.namespace, r.metadata.name, { preconditions: { uid: r.metadata.uid } });
      } catch (err) {
        if (!isApiError(err, 'NotFound') && !isApiError(err, 'Conflict')) throw err;
      }
    }
  }
}
