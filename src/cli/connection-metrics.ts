import { Counter, Gauge, type Registry } from 'prom-client';
import type { ConnectionStats } from '../util/fd-budget.js';

/**
 * The descriptor budget on /metrics, one series per capped component (util/fd-budget.ts),
 * read from the components at scrape time:
 *
 * | metric | what |
 * |---|---|
 * | `kubeloop_connections_open{component}` | connections open now |
 * | `kubeloop_connections_max{component}` | the cap |
 * | `kubeloop_connections_rejected_total{component}` | connections closed at accept because the cap was reached |
 *
 * `component` is `dns_tcp`, `api` or `metrics`; a component that is not running has no series.
 */
export function connectionMetrics(registry: Registry, sources: Readonly<Record<string, () => ConnectionStats | undefined>>): void {
  const each = (set: (component: string, s: ConnectionStats) => void): void => {
    for (const [component, read] of Object.entries(sources)) {
      const s = read();
      if (s) set(component, s);
    }
  };
  const labelNames = ['component'] as const;
  const registers = [registry];
  new Gauge({
    name: 'kubeloop_connections_open',
    help: 'Open connections of a component with a connection cap (DNS over TCP, API, metrics)',
    labelNames,
    registers,
    collect() {
      this.reset();
      each((component, s) => this.set({ component }, s.open));
    },
  });
  new Gauge({
    name: 'kubeloop_connections_max',
    help: 'The connection cap of a component (--dns-tcp-max-connections, --api-max-connections, --metrics-max-connections, scaled down when RLIMIT_NOFILE is small)',
    labelNames,
    registers,
    collect() {
      this.reset();
      each((component, s) => this.set({ component }, s.cap));
    },
  });
  new Counter({
    name: 'kubeloop_connections_rejected_total',
    help: 'Connections closed right after accept because the component was at its cap',
    labelNames,
    registers,
    collect() {
      this.reset();
      each((component, s) => this.inc({ component }, s.rejected));
    },
  });
}
