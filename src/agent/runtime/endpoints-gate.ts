import type { Endpoints, Stored } from '../../api/types.js';
import { keyOf } from '../../api/types.js';
import type { Informer } from '../../store/informer.js';

/**
 * After the last Endpoints drops a pod, how long the proxy gets to apply it before the pod is
 * signalled. The proxy reacts to the same watch event in this process within a few event-loop
 * turns; the margin covers its serialized sync and a dial already in flight.
 */
export const PROXY_SETTLE_MS = 150;

/**
 * Tells the node agent whether any Endpoints object still lists a pod as a ready address, so
 * that graceful termination can wait for the pod to be out of every Service (and out of the
 * proxy's rotation) before the first SIGTERM: the ordering that makes rollouts drop nothing.
 * Fed by the Endpoints informer; no call into the endpoints controller or the proxy.
 */
export class EndpointsGate {
  /** address key (`ip` or `ip|uid`) → keys of the Endpoints listing it in `addresses` */
  readonly #listed = new Map<string, Set<string>>();
  /** ip → when the last Endpoints stopped listing it */
  readonly #droppedAt = new Map<string, number>();
  readonly #waiters = new Map<string, Set<() => void>>();
  readonly #byEndpoints = new Map<string, Set<string>>();

  constructor(informer: Informer<Endpoints>) {
    informer.addHandler({
      onAdd: (e) => this.#set(e),
      onUpdate: (_o, e) => this.#set(e),
      onDelete: (e) => this.#set(e, true),
    });
  }

  /** the pod's IP is a ready address of some Endpoints */
  listed(ip: string): boolean {
    return (this.#listed.get(ip)?.size ?? 0) > 0;
  }

  /**
   * Resolves once no Endpoints lists `ip` and {@link PROXY_SETTLE_MS} have passed since the last
   * one dropped it (at once when it was never listed recently), or after `maxMs` regardless.
   */
  async waitUnlisted(ip: string, maxMs: number): Promise<'unlisted' | 'timeout'> {
    const deadline = Date.now() + maxMs;
    if (this.listed(ip)) {
      const ok = await new Promise<boolean>((resolve) => {
        const done = (v: boolean) => {
          clearTimeout(timer);
          this.#waiters.get(ip)?.delete(wake);
          resolve(v);
        };
        const wake = () => done(true);
        const timer = setTimeout(() => done(false), Math.max(0, maxMs));
        let set = this.#waiters.get(ip);
        if (!set) {
          set = new Set();
          this.#waiters.set(ip, set);
        }
        set.add(wake);
      });
      if (!ok) return 'timeout';
    }
    const dropped = this.#droppedAt.get(ip);
    if (dropped !== undefined) {
      const wait = Math.min(dropped + PROXY_SETTLE_MS - Date.now(), deadline - Date.now());
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    return 'unlisted';
  }

  #set(e: Stored<Endpoints>, deleted = false): void {
    const key = keyOf(e);
    const now = new Set<string>();
    if (!deleted) for (const s of e.subsets ?? []) for (const a of s.addresses ?? []) now.add(a.ip);
    const before = this.#byEndpoints.get(key) ?? new Set<string>();
    for (const ip of before) {
      if (now.has(ip)) continue;
      const s = this.#listed.get(ip);
      s?.delete(key);
      if (!s || s.size === 0) {
        this.#listed.delete(ip);
        this.#droppedAt.set(ip, Date.now());
        for (const w of [...(this.#waiters.get(ip) ?? [])]) w();
        this.#waiters.delete(ip);
      }
    }
    for (const ip of now) {
      let s = this.#listed.get(ip);
      if (!s) {
        s = new Set();
        this.#listed.set(ip, s);
      }
      s.add(key);
    }
    if (now.size) this.#byEndpoints.set(key, now);
    else this.#byEndpoints.delete(key);
    // forget old drop times (bounded memory)
    if (this.#droppedAt.size > 4096) {
      const cutoff = Date.now() - 60_000;
      for (const [ip, t] of this.#droppedAt) if (t < cutoff) this.#droppedAt.delete(ip);
    }
  }
}
