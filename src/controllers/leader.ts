/**
 * Leader election on a Lease, after client-go's `tools/leaderelection`: several daemons on one
 * store run their controllers on one of them at a time.
 *
 *   standby ──(lease free, or expired by *our* clock)──► leading ──(no renew within
 *      ▲                                                   │        renewDeadline, or
 *      └──────────────── onStoppedLeading ◄────────────────┘        someone else holds it)
 *
 * - The lease is `kube-system/kubeloop-controller-manager` (coordination.k8s.io/v1).
 * - A standby never compares its clock with the holder's `renewTime`: it records when it last
 *   saw the lease record *change* and takes over only when `leaseDurationSeconds` have passed
 *   since then on its own clock (clock skew between machines does not matter).
 * - Every write is a compare-and-set on the lease's resourceVersion: of two standbys racing
 *   for an expired lease, one wins, the other gets Conflict and stays standby.
 * - The leader renews every `retryPeriod`; when it has not renewed for `renewDeadline` (store
 *   unreachable, lease taken) it stops leading. renewDeadline < leaseDuration, so it stops
 *   before any standby may take over.
 * - A graceful `stop()` runs `onStoppedLeading` first, then releases the lease (holder cleared,
 *   duration 1 s), so the next daemon takes over at once and no two run controllers together.
 */
import type { Logger } from 'pino';
import { isApiError } from '../api/errors.js';
import { type Lease, type Stored, clone } from '../api/types.js';
import type { Store } from '../store/types.js';

export interface LeaderElectorOptions {
  store: Store;
  log: Logger;
  /** unique per daemon, e.g. `<hostname>_<random>` */
  identity: string;
  namespace?: string;
  name?: string;
  /** default 15,000 ms (stored as whole seconds, at least 1) */
  leaseDurationMs?: number;
  /** default 10,000 ms */
  renewDeadlineMs?: number;
  /** default 2,000 ms */
  retryPeriodMs?: number;
  /** start the controllers; awaited before renewing begins */
  onStartedLeading: () => void | Promise<void>;
  /** stop the controllers; awaited before the lease is released */
  onStoppedLeading: () => void | Promise<void>;
  /** told each time a different holder is observed (including ourselves) */
  onNewLeader?: (identity: string) => void;
}

export const LEASE_NAMESPACE = 'kube-system';
export const LEASE_NAME = 'kubeloop-controller-manager';
/** client-go's JitterFactor: acquire attempts wait retryPeriod × [1, 1.2) */
const JITTER = 1.2;

/** metav1.MicroTime: RFC 3339 with microseconds */
export const microTime = (ms: number): string => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');

type Spec = NonNullable<Lease['spec']>;

export class LeaderElector {
  readonly #o: Required<Omit<LeaderElectorOptions, 'onNewLeader'>> & Pick<LeaderElectorOptions, 'onNewLeader'>;
  readonly #durationS: number;
  #observed: string | undefined;
  #observedAt = 0;
  #observedHolder: string | undefined;
  #leading = false;
  #stopped = false;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;

  constructor(o: LeaderElectorOptions) {
    const leaseDurationMs = o.leaseDurationMs ?? 15_000;
    const renewDeadlineMs = o.renewDeadlineMs ?? 10_000;
    const retryPeriodMs = o.retryPeriodMs ?? 2_000;
    if (!(leaseDurationMs > renewDeadlineMs)) throw new Error(`leader election: leaseDuration (${leaseDurationMs} ms) must be greater than renewDeadline (${renewDeadlineMs} ms)`);
    if (!(renewDeadlineMs > JITTER * retryPeriodMs)) {
      throw new Error(`leader election: renewDeadline (${renewDeadlineMs} ms) must be greater than retryPeriod × ${JITTER} (${retryPeriodMs} ms)`);
    }
    if (!o.identity) throw new Error('leader election: identity must not be empty');
    this.#o = {
      namespace: LEASE_NAMESPACE,
      name: LEASE_NAME,
      ...o,
      leaseDurationMs,
      renewDeadlineMs,
      retryPeriodMs,
      log: o.log.child({ component: 'leader-election', identity: o.identity }),
    };
    this.#durationS = Math.max(1, Math.ceil(leaseDurationMs / 1000));
  }

  get isLeader(): boolean {
    return this.#leading;
  }

  /** Starts standing by / leading in the background. Idempotent. */
  start(): void {
    if (this.#loop || this.#stopped) return;
    this.#loop = this.#run().catch((err) => this.#o.log.error({ err }, 'leader election loop failed'));
  }

  /** Stops; when leading: onStoppedLeading, then the lease is released. Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const { log, retryPeriodMs, renewDeadlineMs } = this.#o;
    while (!this.#stopped) {
      // standby: try to acquire every retryPeriod (jittered, so standbys do not race in step)
      while (!this.#stopped && !(await this.#tryAcquireOrRenew())) await this.#sleep(retryPeriodMs * (1 + Math.random() * (JITTER - 1)));
      if (this.#stopped) return;
      this.#leading = true;
      log.info('acquired the lease: leading');
      await this.#callback('onStartedLeading');
      let renewedAt = Date.now();
      while (!this.#stopped) {
        await this.#sleep(retryPeriodMs);
        if (this.#stopped) break;
        const left = renewDeadlineMs - (Date.now() - renewedAt);
        const ok = left > 0 && (await this.#withDeadline(this.#tryAcquireOrRenew(), left));
        if (ok) {
          renewedAt = Date.now();
          continue;
        }
        const taken = this.#observedHolder !== undefined && this.#observedHolder !== '' && this.#observedHolder !== this.#o.identity;
        if (taken || Date.now() - renewedAt >= renewDeadlineMs) {
          log.warn({ holder: this.#observedHolder, sinceRenewMs: Date.now() - renewedAt }, taken ? 'the lease was taken: not leading' : 'could not renew the lease in time: not leading');
          break;
        }
      }
      this.#leading = false;
      await this.#callback('onStoppedLeading');
      if (this.#stopped) await this.#release();
    }
  }

  async #callback(which: 'onStartedLeading' | 'onStoppedLeading'): Promise<void> {
    try {
      await this.#o[which]();
    } catch (err) {
      this.#o.log.error({ err }, `${which} failed`);
    }
  }

  /** sleeps, or returns early on stop() */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done(): void {
        clearTimeout(t);
        resolve();
      }
      this.#wake = done;
    });
  }

  async #withDeadline(p: Promise<boolean>, ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
    try {
      return await Promise.race([p, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  #observe(spec: Spec): void {
    const text = JSON.stringify([spec.holderIdentity ?? '', spec.leaseDurationSeconds, spec.acquireTime, spec.renewTime, spec.leaseTransitions]);
    if (text !== this.#observed) {
      this.#observed = text;
      this.#observedAt = Date.now();
    }
    const holder = spec.holderIdentity ?? '';
    if (holder !== this.#observedHolder) {
      this.#observedHolder = holder;
      if (holder) this.#o.onNewLeader?.(holder);
    }
  }

  /** client-go's tryAcquireOrRenew: true when we hold the lease now. Store errors are false. */
  async #tryAcquireOrRenew(): Promise<boolean> {
    const { store, namespace, name, identity, log } = this.#o;
    const now = Date.now();
    const mine = (transitions: number, acquireTime: string): Spec => ({
      holderIdentity: identity,
      leaseDurationSeconds: this.#durationS,
      acquireTime,
      renewTime: microTime(now),
      leaseTransitions: transitions,
    });
    try {
      const cur = await store.tryGet<Lease>('Lease', namespace, name);
      if (!cur) {
        const created = await store.create<Lease>({
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name, namespace },
          spec: mine(0, microTime(now)),
        });
        this.#observe(created.spec ?? {});
        return true;
      }
      const spec = cur.spec ?? {};
      this.#observe(spec);
      const holder = spec.holderIdentity ?? '';
      const durationMs = (spec.leaseDurationSeconds ?? this.#durationS) * 1000;
      if (holder !== '' && holder !== identity && this.#observedAt + durationMs > now) return false;
      const next: Stored<Lease> = clone(cur);
      next.spec =
        holder === identity
          ? mine(spec.leaseTransitions ?? 0, spec.acquireTime ?? microTime(now))
          : mine((spec.leaseTransitions ?? 0) + 1, microTime(now));
      const updated = await store.update<Lease>(next);
      this.#observe(updated.spec ?? {});
      return true;
    } catch (err) {
      if (!isApiError(err, 'Conflict') && !isApiError(err, 'AlreadyExists')) log.warn({ err: err instanceof Error ? err.message : String(err) }, 'lease read/write failed');
      return false;
    }
  }

  /** Clears the holder so a standby takes over at once (client-go's release). */
  async #release(): Promise<void> {
    const { store, namespace, name, identity, log } = this.#o;
    try {
      const cur = await store.tryGet<Lease>('Lease', namespace, name);
      if (!cur || cur.spec?.holderIdentity !== identity) return;
      const next: Stored<Lease> = clone(cur);
      const now = microTime(Date.now());
      next.spec = { ...cur.spec, holderIdentity: '', leaseDurationSeconds: 1, acquireTime: now, renewTime: now };
      await store.update<Lease>(next);
      log.info('released the lease');
    } catch (err) {
      log.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not release the lease (a standby takes over when it expires)');
    }
  }
}
