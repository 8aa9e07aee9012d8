/**
 * metrics.k8s.io/v1beta1 PodMetrics and NodeMetrics (the Metrics API `kubectl top` and the
 * HorizontalPodAutoscaler read): answered by the API server from the node agents' samples of
 * /proc (server/metrics.ts, agent/endpoint/metrics.ts), never stored; get and list only.
 */
import { defineKind, infoOf } from '../kind.js';

type Rec = Record<string, unknown>;
const isRec = (v: unknown): v is Rec => v !== null && typeof v === 'object' && !Array.isArray(v);

/** one container's or node's usage as metrics.k8s.io reports it */
export interface ResourceUsage {
  /** nanocores, e.g. `12345678n` */
  cpu: string;
  /** kibibytes of working set, e.g. `10240Ki` */
  memory: string;
}

export interface PodMetrics {
  kind: 'PodMetrics';
  apiVersion: 'metrics.k8s.io/v1beta1';
  metadata: { name: string; namespace: string; creationTimestamp: string; labels?: Record<string, string> };
  /** the end of the sampled window */
  timestamp: string;
  /** the window the CPU rate was taken over, e.g. `15.002s` */
  window: string;
  containers: { name: string; usage: ResourceUsage }[];
}

export interface NodeMetrics {
  kind: 'NodeMetrics';
  apiVersion: 'metrics.k8s.io/v1beta1';
  metadata: { name: string; creationTimestamp: string; labels?: Record<string, string> };
  timestamp: string;
  window: string;
  usage: ResourceUsage;
}

const sum = (o: Rec, k: 'cpu' | 'memory'): string => {
  if (isRec(o.usage)) return String(o.usage[k] ?? '');
  const cs = Array.isArray(o.containers) ? o.containers.filter(isRec) : [];
  return cs.map((c) => String(isRec(c.usage) ? (c.usage[k] ?? '') : '')).join(',');
};

// metrics-server's table: Name, CPU, Memory, Window
const columns = [
  { name: 'CPU', value: (o: Rec) => sum(o, 'cpu') },
  { name: 'Memory', value: (o: Rec) => sum(o, 'memory') },
  { name: 'Window', value: (o: Rec) => String(o.window ?? '') },
];

export const podMetrics = defineKind({
  info: infoOf('PodMetrics', 'metrics.k8s.io/v1beta1', 'pods'),
  columns,
  verbs: ['get', 'list'],
  virtual: true,
});

export const nodeMetrics = defineKind({
  info: infoOf('NodeMetrics', 'metrics.k8s.io/v1beta1', 'nodes', { namespaced: false }),
  columns,
  verbs: ['get', 'list'],
  virtual: true,
});
