import type { Logger } from 'pino';
import type { Event, KObject } from '../api/types.js';
import { isApiError } from '../api/errors.js';
import type { Store } from './types.js';

export type EventType = 'Normal' | 'Warning';

export interface EventRecorderOptions {
  store: Store;
  log: Logger;
  /** `source.component` / `reportingComponent`, e.g. `replicaset-controller` or `kubelet` */
  component: string;
  /** `source.host` / `reportingInstance` (the node, for the kubelet's events) */
  host?: string;
  /** token bucket: events written at most `burst` at once, refilled at `perSecond` */
  burst?: number;
  perSecond?: number;
}

interface Seen {
  namespace: string;
  name: string;
  count: number;
  first: string;
}

const AGGREGATE_CACHE_MAX = 4096;

/**
 * Writes `Event` objects for what users look for in `kubectl describe` / `get events`.
 *
 * Fire and forget: `event()` never throws and never blocks a reconcile. A repeat of the same
 * (object, type, reason, message) bumps `count` and `lastTimestamp` of the earlier Event instead
 * of writing a new one, like client-go's correlator. A token bucket bounds the write rate;
 * events over it are dropped (logged at debug).
 */
export class EventRecorder {
  readonly #store: Store;
  readonly #log: Logger;
  readonly #component: string;
  readonly #host: string | undefined;
  readonly #burst: number;
  readonly #perSecond: number;
  #tokens: number;
  #refilledAt = Date.now();
  readonly #seen = new Map<string, Seen>();
  readonly #pending = new Set<Promise<void>>();
  #closed = false;

  constructor(opts: EventRecorderOptions) {
    this.#store = opts.store;
    this.#component = opts.component;
    this.#host = opts.host;
    this.#log = opts.log.child({ component: 'events', source: opts.component });
    this.#burst = opts.burst ?? 50;
    this.#perSecond = opts.perSecond ?? 10;
    this.#tokens = this.#burst;
  }

  /** `fieldPath` names the part of the object, e.g. `spec.containers{web}` for a container. */
  event(obj: KObject, type: EventType, reason: string, message: string, fieldPath?: string): void {
    if (this.#closed || !obj.metadata?.name) return;
    if (!this.#take()) {
      this.#log.debug({ reason, obj: `${obj.kind}/${obj.metadata.name}` }, 'event dropped: rate bound reached');
      return;
    }
    const p = this.#write(obj, type, reason, message, fieldPath).catch((err: unknown) => {
      this.#log.debug({ err: (err as Error).message, reason }, 'event not written');
    });
    this.#pending.add(p);
    void p.finally(() => this.#pending.delete(p));
  }

  /** Stop recording and wait for writes already started. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#pending]);
  }

  #take(): boolean {
    const now = Date.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#refilledAt) / 1000) * this.#perSecond);
    this.#refilledAt = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  async #write(obj: KObject, type: EventType, reason: string, message: string, fieldPath: string | undefined): Promise<void> {
    const md = obj.metadata!;
    const namespace = md.namespace || 'default';
    const aggKey = JSON.stringify([obj.kind, namespace, md.name, md.uid, type, reason, message, fieldPath]);
    const now = new Date();
    const ts = rfc3339(now);
    const seen = this.#seen.get(aggKey);
    if (seen) {
      seen.count++;
      const count = seen.count;
      const updated = await this.#store.mutate<Event>('Event', seen.namespace, seen.name, (ev) => {
        ev.count = Math.max(ev.count ?? 1, count);
        ev.lastTimestamp = ts;
      });
      if (updated) return;
      this.#seen.delete(aggKey);
    }
    const name = `${md.name}.${(BigInt(now.getTime()) * 1_000_000n + BigInt(process.hrtime()[1] % 1_000_000)).toString(16)}`;
    const ev: Event = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name, namespace },
      involvedObject: {
        apiVersion: obj.apiVersion,
        kind: obj.kind,
        namespace: md.namespace,
        name: md.name,
        uid: md.uid,
        resourceVersion: md.resourceVersion,
        ...(fieldPath ? { fieldPath } : {}),
      },
      reason,
      message,
      type,
      count: 1,
      firstTimestamp: ts,
      lastTimestamp: ts,
      source: { component: this.#component, ...(this.#host ? { host: this.#host } : {}) },
      reportingComponent: this.#component,
      reportingInstance: this.#host ?? this.#component,
    };
    try {
      await this.#store.create(ev);
    } catch (err) {
      if (!isApiError(err, 'AlreadyExists')) throw err;
      return;
    }
    if (this.#seen.size >= AGGREGATE_CACHE_MAX) this.#seen.delete(this.#seen.keys().next().value!);
    this.#seen.set(aggKey, { namespace, name, count: 1, first: ts });
  }
}

/** `2024-05-01T12:00:00Z`: metav1.Time's wire form (seconds precision) */
export function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
