/** One ready backend of a service port. `id` is `host:port` (`[v6]:port`), the identity used for sets and affinity. */
export interface Endpoint {
  readonly host: string;
  readonly port: number;
  readonly id: string;
}

/**
 * An endpoint as a balancer holds it, with totals since it joined (kept while it stays in the
 * set): what `next()` returns, so the connection it serves can count itself in.
 */
export interface BalancedEndpoint extends Endpoint {
  /** TCP connections spliced to it / UDP flows opened to it */
  connections: number;
  /** TCP dials to it that failed (refused, timed out) */
  failed: number;
  /** client → endpoint (TCP: counted when the connection ends) */
  bytesIn: number;
  /** endpoint → client (TCP: counted when the connection ends) */
  bytesOut: number;
}

export interface AffinityConfig {
  type: 'None' | 'ClientIP';
  /** 0 means the Kubernetes default, 10800 s */
  timeoutSeconds: number;
}

/** `v1.DefaultClientIPServiceAffinitySeconds` */
export const DEFAULT_AFFINITY_SECONDS = 10800;

export interface RoundRobinOptions {
  affinity?: AffinityConfig;
  /** ms clock; injectable for tests */
  now?: () => number;
  /** a number in [0, 1); injectable for tests */
  random?: () => number;
}

interface Sticky {
  endpoint: BalancedEndpoint;
  lastUsed: number;
}

export function endpointId(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Balancer state of one service port (`ns/name:portName`), shared by all its portals:
 * kube-proxy's userspace `LoadBalancerRR` entry.
 *
 * - `next()` returns `endpoints[index]` and advances the index.
 * - The list is reshuffled and the index reset only when the *set* of endpoints changes;
 *   the same set in another order changes nothing.
 * - ClientIP affinity is keyed by client IP alone; an entry is used while
 *   `trunc((now - lastUsed) / 1 s) < timeoutSeconds` and refreshed on use. Entries pointing at
 *   removed endpoints are dropped at once; `bypassAffinity` (after a failed dial) picks the next
 *   endpoint and re-pins the client to it.
 */
export class RoundRobin {
  #endpoints: BalancedEndpoint[] = [];
  #index = 0;
  #affinity: AffinityConfig = { type: 'None', timeoutSeconds: DEFAULT_AFFINITY_SECONDS };
  readonly #sticky = new Map<string, Sticky>();
  readonly #now: () => number;
  readonly #random: () => number;

  constructor(o: RoundRobinOptions = {}) {
    this.#now = o.now ?? Date.now;
    this.#random = o.random ?? Math.random;
    if (o.affinity) this.setAffinity(o.affinity);
  }

  get endpoints(): readonly Endpoint[] {
    return this.#endpoints;
  }

  /** the same list, with each endpoint's totals */
  get balanced(): readonly BalancedEndpoint[] {
    return this.#endpoints;
  }

  get affinity(): Readonly<AffinityConfig> {
    return this.#affinity;
  }

  /** whether `next()` looks at the client IP (ClientIP affinity); otherwise any value will do */
  get sticky(): boolean {
    return this.#affinity.type === 'ClientIP';
  }

  /** number of client IPs currently pinned */
  get stickyClients(): number {
    return this.#sticky.size;
  }

  /**
   * Takes effect at once (upstream only applied a changed timeout after the port was re-created).
   * Switching the type clears all pins.
   */
  setAffinity(a: AffinityConfig): void {
    const timeoutSeconds = a.timeoutSeconds > 0 ? a.timeoutSeconds : DEFAULT_AFFINITY_SECONDS;
    if (a.type !== this.#affinity.type) this.#sticky.clear();
    this.#affinity = { type: a.type, timeoutSeconds };
  }

  /** Replaces the endpoint set; returns whether the set changed (and so was reshuffled). */
  setEndpoints(eps: readonly Endpoint[]): boolean {
    if (sameSet(this.#endpoints, eps)) return false;
    const kept = new Map(this.#endpoints.map((e) => [e.id, e]));
    const ids = new Set<string>();
    const list: BalancedEndpoint[] = [];
    for (const e of eps) {
      if (ids.has(e.id)) continue;
      ids.add(e.id);
      list.push(kept.get(e.id) ?? { host: e.host, port: e.port, id: e.id, connections: 0, failed: 0, bytesIn: 0, bytesOut: 0 });
    }
    for (const [ip, s] of this.#sticky) if (!ids.has(s.endpoint.id)) this.#sticky.delete(ip);
    this.#shuffle(list);
    this.#endpoints = list;
    this.#index = 0;
    return true;
  }

  /** The endpoint for a new connection/flow from `clientIP`, or undefined when there is none. */
  next(clientIP: string, bypassAffinity = false): BalancedEndpoint | undefined {
    const n = this.#endpoints.length;
    if (n === 0) return undefined;
    const sticky = this.#affinity.type === 'ClientIP';
    if (sticky && !bypassAffinity) {
      const s = this.#sticky.get(clientIP);
      if (s) {
        const now = this.#now();
        if (Math.trunc((now - s.lastUsed) / 1000) < this.#affinity.timeoutSeconds) {
          s.lastUsed = now;
          return s.endpoint;
        }
      }
    }
    if (this.#index >= n) this.#index = 0;
    const ep = this.#endpoints[this.#index]!;
    this.#index = (this.#index + 1) % n;
    if (sticky) {
      const s = this.#sticky.get(clientIP);
      if (s) {
        s.endpoint = ep;
        s.lastUsed = this.#now();
      } else {
        this.#sticky.set(clientIP, { endpoint: ep, lastUsed: this.#now() });
      }
    }
    return ep;
  }

  /** Drops pins whose age reached the timeout (upstream `CleanupStaleStickySessions`). */
  cleanupStaleSessions(): void {
    if (this.#sticky.size === 0) return;
    const now = this.#now();
    const ttl = this.#affinity.timeoutSeconds;
    for (const [ip, s] of this.#sticky) if (Math.trunc((now - s.lastUsed) / 1000) >= ttl) this.#sticky.delete(ip);
  }

  #shuffle(a: BalancedEndpoint[]): void {
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.#random() * (i + 1));
      const t = a[i]!;
      a[i] = a[j]!;
      a[j] = t;
    }
  }
}

function sameSet(a: readonly Endpoint[], b: readonly Endpoint[]): boolean {
  const ids = new Set(b.map((e) => e.id));
  if (a.length !== ids.size) return false;
  for (const e of a) if (!ids.has(e.id)) return false;
  return true;
}
