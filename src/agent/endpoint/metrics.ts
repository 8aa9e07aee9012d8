/**
 * This node's resource metrics, as the kubelet's resource metrics feed metrics-server: every
 * `resolutionMs` one /proc scan (proc-stats.ts) records each running container's cumulative
 * CPU time and resident memory over its process tree; a container's CPU usage is the rate
 * between its last two samples (reported with that `window` and the later sample's
 * `timestamp`), its memory the working set of the later one (resident pages: shared pages are
 * counted in every process that maps them). A pod is reported once each of its running
 * containers has two samples, as metrics-server reports nothing for a pod it has seen once.
 *
 * The node's usage is the sum of its pods' (simulated nodes share one host, so the host's
 * /proc/stat would report the same machine once per node).
 */
import type { Logger } from 'pino';
import type { RunningContainer } from '../runtime/index.js';
import { childrenOf, procUnits, scanProc, treeUsage } from './proc-stats.js';

interface Sample {
  /** monotonic ms */
  at: number;
  /** wall clock ms */
  wall: number;
  pid: number;
  /** CPU seconds so far */
  cpu: number;
  /** resident bytes */
  memory: number;
}

/** one container's usage over the last window: cores and bytes */
export interface ContainerUsage {
  name: string;
  cpuCores: number;
  memoryBytes: number;
}

/** a pod's usage as the agent reports it to the API server (server/metrics.ts makes PodMetrics of it) */
export interface PodUsage {
  namespace: string;
  name: string;
  /** RFC 3339, the end of the window */
  timestamp: string;
  windowSeconds: number;
  containers: ContainerUsage[];
}

/** what `GET /metrics/resource` answers */
export interface NodeUsageReport {
  timestamp: string;
  windowSeconds: number;
  node: { cpuCores: number; memoryBytes: number };
  pods: PodUsage[];
}

export interface MetricsSamplerOptions {
  /** this node's running app containers */
  containers(): RunningContainer[];
  /** between two samples (metrics-server's --metric-resolution), default 15 s */
  resolutionMs?: number;
  log: Logger;
}

export const DEFAULT_METRICS_RESOLUTION_MS = 15_000;

export class MetricsSampler {
  readonly #o: MetricsSamplerOptions;
  /** `uid/container` → its previous and latest samples */
  readonly #samples = new Map<string, [Sample | undefined, Sample]>();
  /** the containers as of the latest scan */
  #running: RunningContainer[] = [];
  #timer: NodeJS.Timeout | undefined;
  #busy = false;

  constructor(o: MetricsSamplerOptions) {
    this.#o = o;
  }

  /** Samples now and every `resolutionMs` until `stop()`. Idempotent. */
  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => void this.sample(), this.#o.resolutionMs ?? DEFAULT_METRICS_RESOLUTION_MS);
    this.#timer.unref();
    void this.sample();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One scan (skipped while the previous one runs). */
  async sample(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      const running = this.#o.containers();
      if (running.length === 0) {
        this.#samples.clear();
        this.#running = [];
        return;
      }
      const { clkTck, pageSize } = await procUnits();
      const procs = await scanProc();
      const at = performance.now();
      const wall = Date.now();
      const children = childrenOf(procs);
      const seen = new Set<string>();
      for (const c of running) {
        const u = treeUsage(procs, children, c.pid);
        if (!u) continue;
        const key = `${c.uid}/${c.container}`;
        seen.add(key);
        const cur: Sample = { at, wall, pid: c.pid, cpu: u.ticks / clkTck, memory: u.rssPages * pageSize };
        const prev = this.#samples.get(key)?.[1];
        // a restarted container starts its counters again
        this.#samples.set(key, [prev && prev.pid === c.pid ? prev : undefined, cur]);
      }
      for (const k of this.#samples.keys()) if (!seen.has(k)) this.#samples.delete(k);
      this.#running = running;
    } catch (err) {
      this.#o.log.warn({ err }, 'cannot sample /proc for pod metrics');
    } finally {
      this.#busy = false;
    }
  }

  /** The pods with a rate for every running container, and their sum as the node's usage. */
  report(): NodeUsageReport {
    const byPod = new Map<string, { c: RunningContainer; usage?: ContainerUsage; last?: Sample; window: number }[]>();
    for (const c of this.#running) {
      const key = `${c.namespace}/${c.pod}`;
      const s = this.#samples.get(`${c.uid}/${c.container}`);
      const entry: { c: RunningContainer; usage?: ContainerUsage; last?: Sample; window: number } = { c, window: 0 };
      if (s?.[0]) {
        const [a, b] = s;
        const secs = (b.at - a.at) / 1000;
        if (secs > 0) {
          entry.usage = { name: c.container, cpuCores: Math.max(0, b.cpu - a.cpu) / secs, memoryBytes: b.memory };
          entry.last = b;
          entry.window = secs;
        }
      }
      const list = byPod.get(key);
      if (list) list.push(entry);
      else byPod.set(key, [entry]);
    }
    const pods: PodUsage[] = [];
    let cpu = 0;
    let memory = 0;
    let latest = 0;
    let window = 0;
    for (const entries of byPod.values()) {
      if (entries.some((e) => !e.usage)) continue;
      const last = Math.max(...entries.map((e) => e.last!.wall));
      const w = Math.max(...entries.map((e) => e.window));
      const containers = entries.map((e) => e.usage!);
      pods.push({ namespace: entries[0].c.namespace, name: entries[0].c.pod, timestamp: iso(last), windowSeconds: w, containers });
      for (const c of containers) {
        cpu += c.cpuCores;
        memory += c.memoryBytes;
      }
      latest = Math.max(latest, last);
      window = Math.max(window, w);
    }
    const res = this.#o.resolutionMs ?? DEFAULT_METRICS_RESOLUTION_MS;
    return { timestamp: iso(latest || Date.now()), windowSeconds: window || res / 1000, node: { cpuCores: cpu, memoryBytes: memory }, pods };
  }
}

const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
