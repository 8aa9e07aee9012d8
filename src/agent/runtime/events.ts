import type { Logger } from 'pino';
import type { Event, Pod } from '../../api/types.js';
import type { Store } from '../../store/types.js';

const rfc3339 = (d: Date): string => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

/**
 * The kubelet's events about pods (`Started`, `Killing`, `Unhealthy`, `BackOff`, `Failed`), as
 * `kubectl describe pod` shows them. Fire and forget: never throws, never blocks the pod. A repeat
 * of (pod, reason, message) bumps `count` of the earlier Event; a token bucket bounds the rate.
 */
export class PodEvents {
  readonly #store: Store;
  readonly #log: Logger;
  readonly #host: string;
  readonly #seen = new Map<string, { namespace: string; name: string; count: number }>();
  #tokens = 50;
  #refilledAt = Date.now();
  #closed = false;
  readonly #pending = new Set<Promise<void>>();

  constructor(o: { store: Store; log: Logger; nodeName: string }) {
    this.#store = o.store;
    this.#log = o.log;
    this.#host = o.nodeName;
  }

  event(pod: Pod, type: 'Normal' | 'Warning', reason: string, message: string, fieldPath?: string): void {
    const md = pod.metadata;
    if (this.#closed || !md?.name) return;
    const now = Date.now();
    this.#tokens = Math.min(50, this.#tokens + ((now - this.#refilledAt) / 1000) * 10);
    this.#refilledAt = now;
    if (this.#tokens < 1) return;
    this.#tokens -= 1;
    const p = this.#write(pod, type, reason, message, fieldPath).catch((err: unknown) => {
      this.#log.debug({ err: (err as Error).message, reason }, 'event not written');
    });
    this.#pending.add(p);
    void p.finally(() => this.#pending.delete(p));
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#pending]);
  }

  async #write(pod: Pod, type: string, reason: string, message: string, fieldPath: string | undefined): Promise<void> {
    const md = pod.metadata!;
    const namespace = md.namespace || 'default';
    const agg = JSON.stringify([md.uid, type, reason, message, fieldPath]);
    const ts = rfc3339(new Date());
    const seen = this.#seen.get(agg);
    if (seen) {
      const count = ++seen.count;
      const ok = await this.#store.mutate<Event>('Event', seen.namespace, seen.name, (ev) => {
        ev.count = Math.max(ev.count ?? 1, count);
        ev.lastTimestamp = ts;
      });
      if (ok) return;
      this.#seen.delete(agg);
    }
    const name = `${md.name}.${(BigInt(Date.now()) * 1_000_000n + BigInt(process.hrtime()[1] % 1_000_000)).toString(16)}`;
    await this.#store.create<Event>({
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name, namespace },
      involvedObject: { apiVersion: 'v1', kind: 'Pod', namespace, name: md.name, uid: md.uid, ...(fieldPath ? { fieldPath } : {}) },
      reason,
      message,
      type,
      count: 1,
      firstTimestamp: ts,
      lastTimestamp: ts,
      source: { component: 'kubelet', host: this.#host },
      reportingComponent: 'kubelet',
      reportingInstance: this.#host,
    });
    if (this.#seen.size >= 4096) this.#seen.delete(this.#seen.keys().next().value!);
    this.#seen.set(agg, { namespace, name, count: 1 });
  }
}
