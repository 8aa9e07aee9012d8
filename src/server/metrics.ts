/**
 * The Metrics API (metrics.k8s.io/v1beta1 PodMetrics and NodeMetrics), metrics-server's role:
 * each node agent endpoint samples its own pods from /proc (agent/endpoint/metrics.ts) and the
 * API server asks the endpoints of the nodes concerned — published in each Node's status as for
 * logs and exec — and answers `kubectl top` and the HorizontalPodAutoscaler controller.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { request } from 'node:https';
import type { NodeMetrics, PodMetrics } from '../api/kinds/metrics.js';
import { ApiError } from '../api/errors.js';
import { matches, parse as parseLabelSelector } from '../api/labels.js';
import { kibibytes, nanocores } from '../api/quantity.js';
import type { Node, Pod, Stored } from '../api/types.js';
import type { Store } from '../store/types.js';
import type { AgentClientTls } from './agent-forward.js';
import { sendJson } from './http.js';
import type { ResourceRoute } from './route.js';
import { tableVersion, toTable } from './table.js';

/** what a node agent's `GET /metrics/resource` answers (agent/endpoint/metrics.ts NodeUsageReport) */
interface Report {
  timestamp: string;
  windowSeconds: number;
  node: { cpuCores: number; memoryBytes: number };
  pods: { namespace: string; name: string; timestamp: string; windowSeconds: number; containers: { name: string; cpuCores: number; memoryBytes: number }[] }[];
}

const MAX_REPORT = 16 << 20;
const TIMEOUT_MS = 5000;

const windowString = (s: number): string => `${Number(s.toFixed(3))}s`;

export class MetricsClient {
  readonly #store: Store;
  readonly #tls: AgentClientTls | undefined;

  constructor(o: { store: Store; tls: AgentClientTls | undefined }) {
    this.#store = o.store;
    this.#tls = o.tls;
  }

  /** one node's report, or undefined when its agent cannot be reached (the node then reports nothing, as metrics-server skips a failed scrape) */
  async #report(node: Stored<Node>): Promise<Report | undefined> {
    const host = node.status?.addresses?.find((a) => a.type === 'InternalIP')?.address;
    const port = node.status?.daemonEndpoints?.kubeletEndpoint?.Port;
    const tls = this.#tls;
    if (!host || !port || !tls) return undefined;
    return new Promise((resolve) => {
      const req = request({ host, port, path: '/metrics/resource', method: 'GET', ca: tls.ca, cert: tls.cert, key: tls.key, servername: undefined, agent: false, timeout: TIMEOUT_MS }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_REPORT) req.destroy();
          else chunks.push(c);
        });
        res.on('end', () => {
          if (res.statusCode !== 200) return resolve(undefined);
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Report);
          } catch {
            resolve(undefined);
          }
        });
        res.on('error', () => resolve(undefined));
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(undefined));
      req.end();
    });
  }

  async #reports(nodeName?: string): Promise<{ node: Stored<Node>; report: Report }[]> {
    const nodes = nodeName ? [await this.#store.tryGet<Node>('Node', undefined, nodeName)].filter((n): n is Stored<Node> => !!n) : (await this.#store.list<Node>('Node')).items;
    const out = await Promise.all(nodes.map(async (node) => ({ node, report: await this.#report(node) })));
    return out.filter((r): r is { node: Stored<Node>; report: Report } => r.report !== undefined);
  }

  /** PodMetrics of the pods in `namespace` (all namespaces when undefined) matching `labelSelector` */
  async podMetrics(namespace: string | undefined, labelSelector?: string, name?: string): Promise<PodMetrics[]> {
    const sel = parseLabelSelector(labelSelector);
    const pods = name
      ? [await this.#store.tryGet<Pod>('Pod', namespace, name)].filter((p): p is Stored<Pod> => !!p)
      : (await this.#store.list<Pod>('Pod', { namespace, labelSelector })).items;
    const wanted = new Map(pods.filter((p) => matches(sel, p.metadata.labels ?? {})).map((p) => [`${p.metadata.namespace}/${p.metadata.name}`, p]));
    if (!wanted.size) return [];
    const nodeNames = new Set([...wanted.values()].map((p) => p.spec?.nodeName).filter((n): n is string => !!n));
    const reports = await this.#reports(nodeNames.size === 1 ? [...nodeNames][0] : undefined);
    const out: PodMetrics[] = [];
    for (const { report } of reports) {
      for (const u of report.pods) {
        const pod = wanted.get(`${u.namespace}/${u.name}`);
        if (!pod) continue;
        out.push({
          kind: 'PodMetrics',
          apiVersion: 'metrics.k8s.io/v1beta1',
          metadata: { name: u.name, namespace: u.namespace, creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), ...(pod.metadata.labels ? { labels: pod.metadata.labels } : {}) },
          timestamp: u.timestamp,
          window: windowString(u.windowSeconds),
          containers: u.containers.map((c) => ({ name: c.name, usage: { cpu: nanocores(c.cpuCores), memory: kibibytes(c.memoryBytes) } })),
        });
      }
    }
    return out.sort((a, b) => (a.metadata.namespace + '/' + a.metadata.name < b.metadata.namespace + '/' + b.metadata.name ? -1 : 1));
  }

  /** NodeMetrics of the nodes matching `labelSelector` (or the one named) */
  async nodeMetrics(labelSelector?: string, name?: string): Promise<NodeMetrics[]> {
    const sel = parseLabelSelector(labelSelector);
    const out: NodeMetrics[] = [];
    for (const { node, report } of await this.#reports(name)) {
      if (!matches(sel, node.metadata.labels ?? {})) continue;
      out.push({
        kind: 'NodeMetrics',
        apiVersion: 'metrics.k8s.io/v1beta1',
        metadata: { name: node.metadata.name, creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), ...(node.metadata.labels ? { labels: node.metadata.labels } : {}) },
        timestamp: report.timestamp,
        window: windowString(report.windowSeconds),
        usage: { cpu: nanocores(report.node.cpuCores), memory: kibibytes(report.node.memoryBytes) },
      });
    }
    return out.sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));
  }
}

/** `GET /apis/metrics.k8s.io/v1beta1/[namespaces/{ns}/]pods[/{name}]` and `.../nodes[/{name}]`, JSON or Table */
export async function serveMetrics(req: IncomingMessage, res: ServerResponse, route: ResourceRoute, query: URLSearchParams, client: MetricsClient): Promise<void> {
  const pods = route.resource === 'pods';
  const selector = query.get('labelSelector') ?? undefined;
  if (query.get('fieldSelector')) throw new ApiError('BadRequest', 'the Metrics API takes no fieldSelector: select with labelSelector');
  const items: (PodMetrics | NodeMetrics)[] = pods ? await client.podMetrics(route.namespace, selector, route.name) : await client.nodeMetrics(selector, route.name);
  const kind = pods ? 'PodMetrics' : 'NodeMetrics';
  if (route.name !== undefined && items.length === 0) {
    throw new ApiError('NotFound', `${pods ? 'podmetrics' : 'nodemetrics'}.metrics.k8s.io "${route.name}" not found`, { kind: route.resource, name: route.name, group: 'metrics.k8s.io' });
  }
  const tv = tableVersion(req.headers.accept);
  if (tv) {
    const objs = items as unknown as Parameters<typeof toTable>[1];
    sendJson(res, 200, toTable(kind, objs, { includeObject: query.get('includeObject') === 'Object' ? 'Object' : query.get('includeObject') === 'None' ? 'None' : 'Metadata', version: tv }), `application/json;as=Table;v=${tv};g=meta.k8s.io`);
    return;
  }
  if (route.name !== undefined) sendJson(res, 200, items[0]);
  else sendJson(res, 200, { kind: `${kind}List`, apiVersion: 'metrics.k8s.io/v1beta1', metadata: {}, items });
}
