/**
 * Network programming latency with 1,000 Services × 5 endpoints loaded: the time from a change
 * in the store to the proxy routing a *new connection* to the change, observed from outside
 * (a client connecting to the ClusterIP until a real backend answers).
 *
 * In one process: the embedded store, every controller (the endpoints controller turns pods into
 * Endpoints, as upstream), the proxy; the node agent is stood in for by writing pod statuses
 * (IP, Ready) directly. Two kinds of samples, one at a time:
 * - pod Ready: a probe Service whose only pod is not ready; t0 just before the pod's status
 *   write flips Ready → the endpoints controller writes Endpoints → the proxy syncs → the first
 *   connection that reaches the backend;
 * - Service created: a Ready pod exists; t0 just before the Service is created → ClusterIP
 *   allocation, Endpoints, listener opened → the first connection answered.
 * The probe loop retries a connection every ~1 ms, so the resolution is about 1 ms.
 *
 *   node --import tsx bench/programming.ts [--quick]
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import type { Mutable, Node, Pod, PodStatus, Service } from '../src/api/types.js';
import { ControllerManager } from '../src/controllers/index.js';
import { createEmbeddedStore } from '../src/store/embedded.js';
import { InformerFactory } from '../src/store/informer.js';
import { Proxy } from '../src/agent/proxy/index.js';

const SERVICE_CIDR = '127.160.0.0/16';
const POD_CIDR = '127.161.0.0/16';
const NODE = '127.0.160.1';
const BACKEND = { host: '127.161.255.1', port: 8080 };

export interface ProgrammingResult {
  services: number;
  endpointsPerService: number;
  loadSeconds: number;
  podReadyMs: number[];
  serviceCreateMs: number[];
  /** the proxy's own kube-proxy-style figure for the pod-Ready changes (sync end − Endpoints trigger time) */
  metricProgrammingMs: number[];
  syncMs: number[];
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
};

export function summarize(r: ProgrammingResult): Record<string, number> {
  const f = (x: number) => Number(x.toFixed(2));
  return {
    services: r.services,
    endpointsPerService: r.endpointsPerService,
    samples: r.podReadyMs.length,
    podReadyP50Ms: f(pct(r.podReadyMs, 50)),
    podReadyP99Ms: f(pct(r.podReadyMs, 99)),
    serviceCreateP50Ms: f(pct(r.serviceCreateMs, 50)),
    serviceCreateP99Ms: f(pct(r.serviceCreateMs, 99)),
    metricP50Ms: f(pct(r.metricProgrammingMs, 50)),
    metricP99Ms: f(pct(r.metricProgrammingMs, 99)),
    syncP50Ms: f(pct(r.syncMs, 50)),
    syncP99Ms: f(pct(r.syncMs, 99)),
  };
}

function podIP(n: number): string {
  return `127.161.${(n >> 8) & 255}.${n & 255}`;
}

/** resolves when a connection to `host:port` is answered by the backend (bounded) */
async function probe(host: string, port: number, t0: number, timeoutMs = 10_000): Promise<number> {
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host, port });
      // an attempt that is accepted but never answered must not stall the run
      const timer = setTimeout(() => done(false), 1000);
      const done = (v: boolean): void => {
        clearTimeout(timer);
        s.destroy();
        resolve(v);
      };
      s.once('data', () => done(true));
      s.once('error', () => done(false));
      s.once('close', () => done(false));
    });
    const t = performance.now();
    if (ok) return t - t0;
    if (t - t0 > timeoutMs) throw new Error(`no route to ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

export async function benchProgramming(o: { quick?: boolean; services?: number; samples?: number } = {}): Promise<ProgrammingResult> {
  const services = o.services ?? 1000;
  const perService = 5;
  const samples = o.samples ?? (o.quick ? 30 : 100);
  const log = pino({ level: 'silent' });
  const store = await createEmbeddedStore({ serviceCidr: SERVICE_CIDR, podCidr: POD_CIDR, allowLoopbackEndpoints: true, log });
  const informers = new InformerFactory(store);
  const controllers = new ControllerManager({ store, informers, log, podCidr: POD_CIDR, allowLoopbackEndpoints: true });
  const proxy = new Proxy({ informers, log, nodeAddresses: [NODE] });
  const metricProgrammingMs: number[] = [];
  const syncMs: number[] = [];
  let recording = false;
  const unobserve = proxy.observe((e) => {
    if (!recording) return;
    syncMs.push(e.durationSeconds * 1000);
    for (const s of e.programmingSeconds) metricProgrammingMs.push(s * 1000);
  });
  const backend = net.createServer((s) => {
    s.on('error', () => undefined);
    s.end('x');
  });
  try {
    await new Promise<void>((r) => backend.listen({ ...BACKEND, backlog: 1024 }, r));
    await controllers.start();
    await proxy.start();
    await store.create<Node>({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'bench-node' }, spec: {} });

    const setStatus = (name: string, ip: string, ready: boolean) =>
      store.mutate<Pod>(
        'Pod',
        'default',
        name,
        (p) => {
          const st = ((p as Mutable<Pod>).status ??= {}) as Mutable<PodStatus>;
          st.phase = 'Running';
          st.podIP = ip;
          st.podIPs = [{ ip }];
          st.conditions = [{ type: 'Ready', status: ready ? 'True' : 'False', lastTransitionTime: new Date().toISOString() }];
        },
        { subresource: 'status' },
      );
    const createPod = (name: string, app: string) =>
      store.create<Pod>({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace: 'default', labels: { app } },
        spec: { nodeName: 'bench-node', containers: [{ name: 'c', image: 'echo', ports: [{ name: 'http', containerPort: 8080 }] }] },
      });
    const createService = (name: string, app: string) =>
      store.create<Service>({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name, namespace: 'default' },
        spec: { selector: { app }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
      });

    // the load: 1,000 Services × 5 ready pods (addresses nobody dials)
    const t0 = performance.now();
    let ip = 1;
    for (let i = 0; i < services; i++) {
      await createService(`load-${i}`, `load-${i}`);
      for (let k = 0; k < perService; k++) {
        await createPod(`load-${i}-${k}`, `load-${i}`);
        await setStatus(`load-${i}-${k}`, podIP(ip++), true);
      }
    }
    // probe Services (pod-Ready samples): one not-ready pod each, at the backend's address
    for (let i = 0; i < samples; i++) {
      await createService(`ready-${i}`, `ready-${i}`);
      await createPod(`ready-${i}`, `ready-${i}`);
      await setStatus(`ready-${i}`, BACKEND.host, false);
      await createPod(`create-${i}`, `create-${i}`);
      await setStatus(`create-${i}`, BACKEND.host, true);
    }
    // settled: every loaded Service has its 5 endpoints in the proxy's listeners and balancers
    const end = Date.now() + 120_000;
    for (;;) {
      const eps = await store.list<{ subsets?: Array<{ addresses?: unknown[] }> } & Service>('Endpoints', { namespace: 'default' });
      const full = eps.items.filter((e) => (e.subsets ?? []).reduce((n, s) => n + (s.addresses?.length ?? 0), 0) === perService).length;
      if (full >= services && proxy.listeners().length >= services + samples) break;
      if (Date.now() > end) throw new Error(`load did not settle: ${full}/${services} Endpoints full, ${proxy.listeners().length} listeners`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await proxy.synced();
    const loadSeconds = (performance.now() - t0) / 1000;

    const podReadyMs: number[] = [];
    const serviceCreateMs: number[] = [];
    for (let i = 0; i < samples; i++) {
      const svc = await store.get<Service>('Service', 'default', `ready-${i}`);
      // the metric is taken for the pod-Ready samples only: a Service's trigger time is its
      // creationTimestamp, which has whole seconds
      recording = true;
      const s0 = performance.now();
      await setStatus(`ready-${i}`, BACKEND.host, true);
      podReadyMs.push(await probe(svc.spec!.clusterIP!, 80, s0));
      await proxy.synced();
      recording = false;

      const c0 = performance.now();
      const created = await createService(`create-${i}`, `create-${i}`);
      serviceCreateMs.push(await probe(created.spec!.clusterIP!, 80, c0));
    }
    return { services, endpointsPerService: perService, loadSeconds, podReadyMs, serviceCreateMs, metricProgrammingMs, syncMs };
  } finally {
    unobserve();
    await proxy.stop();
    await controllers.stop();
    informers.stop();
    await store.close();
    await new Promise<void>((r) => backend.close(() => r()));
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const quick = process.argv.includes('--quick');
  const r = await benchProgramming({ quick });
  console.log(JSON.stringify({ loadSeconds: Number(r.loadSeconds.toFixed(1)), ...summarize(r) }, null, 2));
}
