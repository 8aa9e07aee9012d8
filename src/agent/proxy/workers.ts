/**
 * Data-plane worker processes (`--proxy-processes N`): the proxy binds every TCP portal itself
 * and passes the listening socket to N−1 worker processes (worker.ts) over IPC, as Node's
 * `cluster` does; the kernel then hands each new connection to one of the processes accepting
 * on it, so the splicing of a load test spreads over several cores instead of one event loop.
 *
 * ```
 *  Proxier ──share(portal, socket)──► ProxyWorkers ──IPC: listen + fd──► worker 1..N−1
 *          ──setEndpoints / setRanges─►             ──IPC──────────────►  (TcpListener,
 *          ◄──totals (metrics)─────────             ◄──stats every 250 ms  RoundRobin)
 * ```
 * What stays with the proxy alone: UDP portals, and TCP portals of Services with ClientIP
 * session affinity (a pin lives in one process's memory, so only one process may choose).
 * Round robin is kept per process: over many connections every endpoint gets its share, but
 * two consecutive connections may reach the same endpoint when different processes took them.
 *
 * A portal is closed everywhere before `unshare` resolves (the proxy waits for each worker's
 * `ack`), so a port can be bound again at once. A worker that dies is started again (its
 * totals are lost); workers exit when the proxy's IPC channel closes, even if it was killed.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { ListenerCounters, PortalSpec } from './portal.js';
import type { Endpoint } from './round-robin.js';
import type { UvTcp } from '../../util/uv.js';
import type { FromWorker, ToWorker, WorkerEndpointStats, WorkerListenerStats } from './worker-messages.js';

export interface ProxyWorkersOptions {
  /** worker processes to run (the proxy itself is one more) */
  count: number;
  log: Logger;
  dialTimeoutsMs: readonly number[];
  /** a worker that answers no `close`/`stop` within this is killed; default 3000 */
  ackTimeoutMs?: number;
}

interface Shared {
  spec: PortalSpec;
  handle: UvTcp;
  ranges?: readonly string[];
}

const RESTART_MIN_MS = 1000;
const RESTART_MAX_MS = 30_000;

class Worker {
  readonly child: ChildProcess;
  ready = false;
  exited = false;
  readonly acks = new Map<number, () => void>();
  listeners = new Map<string, WorkerListenerStats>();
  endpoints = new Map<string, WorkerEndpointStats>();
  readonly exit: Promise<void>;

  constructor(child: ChildProcess) {
    this.child = child;
    this.exit = new Promise((r) => child.once('exit', () => r()));
  }
}

export class ProxyWorkers {
  readonly #o: ProxyWorkersOptions;
  readonly #log: Logger;
  readonly #workers = new Set<Worker>();
  readonly #shared = new Map<string, Shared>();
  /** service port → portals shared (endpoint updates go only to service ports with one) */
  readonly #servicePorts = new Map<string, number>();
  /** service port → its endpoints, as last sent (for workers that start later) */
  readonly #endpoints = new Map<string, Endpoint[]>();
  #seq = 0;
  #stopped = false;
  #restartDelayMs = RESTART_MIN_MS;
  #restartTimer: NodeJS.Timeout | undefined;

  constructor(o: ProxyWorkersOptions) {
    this.#o = o;
    this.#log = o.log;
  }

  /** Starts the workers; returns at once (portals are passed to each worker when it is ready). */
  start(): void {
    for (let i = 0; i < this.#o.count; i++) this.#spawn();
  }

  /** pids of the running workers */
  pids(): number[] {
    return [...this.#workers].filter((w) => !w.exited && w.child.pid).map((w) => w.child.pid!);
  }

  /** Workers accept on this listening socket too, from now until `unshare`. */
  share(spec: PortalSpec, handle: UvTcp, endpoints: readonly Endpoint[], ranges?: readonly string[]): void {
    if (this.#stopped || this.#shared.has(spec.id)) return;
    const s: Shared = { spec, handle, ranges };
    this.#shared.set(spec.id, s);
    this.#servicePorts.set(spec.servicePort, (this.#servicePorts.get(spec.servicePort) ?? 0) + 1);
    this.#endpoints.set(spec.servicePort, plain(endpoints));
    for (const w of this.#workers) if (w.ready) this.#sendListen(w, s);
  }

  isShared(id: string): boolean {
    return this.#shared.has(id);
  }

  /** Stops every worker accepting on the portal; resolves when each has closed its socket. */
  async unshare(id: string): Promise<void> {
    const s = this.#shared.get(id);
    if (!s) return;
    this.#shared.delete(id);
    const n = (this.#servicePorts.get(s.spec.servicePort) ?? 1) - 1;
    if (n > 0) this.#servicePorts.set(s.spec.servicePort, n);
    else {
      this.#servicePorts.delete(s.spec.servicePort);
      this.#endpoints.delete(s.spec.servicePort);
    }
    await Promise.all([...this.#workers].filter((w) => w.ready).map((w) => this.#request(w, (seq) => ({ t: 'close', id, seq }))));
    for (const w of this.#workers) w.listeners.delete(id);
  }

  setEndpoints(servicePort: string, endpoints: readonly Endpoint[]): void {
    if (!this.#servicePorts.has(servicePort)) return;
    const eps = plain(endpoints);
    this.#endpoints.set(servicePort, eps);
    this.#broadcast({ t: 'endpoints', servicePort, endpoints: eps });
  }

  setRanges(id: string, ranges: readonly string[] | undefined): void {
    const s = this.#shared.get(id);
    if (!s || sameList(s.ranges, ranges)) return;
    s.ranges = ranges;
    this.#broadcast({ t: 'ranges', id, ranges });
  }

  /** the workers' totals for one portal (zero when it is not shared) */
  listenerTotals(id: string): { active: number; counters: ListenerCounters } {
    const out = { active: 0, counters: { accepted: 0, failed: 0, denied: 0, bytesIn: 0, bytesOut: 0 } };
    for (const w of this.#workers) {
      const s = w.listeners.get(id);
      if (!s) continue;
      out.active += s.active;
      for (const k of Object.keys(out.counters) as Array<keyof ListenerCounters>) out.counters[k] += s.counters[k];
    }
    return out;
  }

  /** the workers' totals for one endpoint of one service port, or undefined when none has any */
  endpointTotals(servicePort: string, id: string): Omit<WorkerEndpointStats, 'servicePort' | 'id'> | undefined {
    let out: Omit<WorkerEndpointStats, 'servicePort' | 'id'> | undefined;
    const key = `${servicePort}\0${id}`;
    for (const w of this.#workers) {
      const e = w.endpoints.get(key);
      if (!e) continue;
      out ??= { connections: 0, failed: 0, bytesIn: 0, bytesOut: 0 };
      out.connections += e.connections;
      out.failed += e.failed;
      out.bytesIn += e.bytesIn;
      out.bytesOut += e.bytesOut;
    }
    return out;
  }

  /** Ends every worker's connections and the workers themselves. Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
    this.#shared.clear();
    this.#servicePorts.clear();
    this.#endpoints.clear();
    await Promise.all(
      [...this.#workers].map(async (w) => {
        if (w.ready) await this.#request(w, (seq) => ({ t: 'stop', seq }));
        else w.child.kill('SIGKILL');
        const t = setTimeout(() => w.child.kill('SIGKILL'), this.#o.ackTimeoutMs ?? 3000);
        await w.exit;
        clearTimeout(t);
      }),
    );
  }

  #spawn(): void {
    const entry = fileURLToPath(new URL('./worker.ts', import.meta.url));
    const child = fork(entry, ['--dial-timeouts', this.#o.dialTimeoutsMs.join(','), '--log-level', this.#log.level], {
      // the worker is TypeScript like the rest: the same loader, by URL so any cwd works
      execArgv: ['--import', import.meta.resolve('tsx')],
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      serialization: 'json',
    });
    const w = new Worker(child);
    this.#workers.add(w);
    child.on('message', (m: FromWorker) => this.#onMessage(w, m));
    child.on('error', (err) => this.#log.warn({ err }, 'proxy worker error'));
    child.once('exit', (code, signal) => {
      w.exited = true;
      this.#workers.delete(w);
      for (const ack of w.acks.values()) ack();
      w.acks.clear();
      if (this.#stopped) return;
      this.#log.warn({ pid: child.pid, code, signal, restartInMs: this.#restartDelayMs }, 'proxy worker exited; starting another');
      this.#restartTimer = setTimeout(() => {
        this.#restartTimer = undefined;
        if (!this.#stopped) this.#spawn();
      }, this.#restartDelayMs);
      this.#restartTimer.unref();
      this.#restartDelayMs = Math.min(RESTART_MAX_MS, this.#restartDelayMs * 2);
    });
  }

  #onMessage(w: Worker, m: FromWorker): void {
    switch (m.t) {
      case 'ready':
        w.ready = true;
        this.#log.debug({ pid: w.child.pid }, 'proxy worker ready');
        for (const s of this.#shared.values()) this.#sendListen(w, s);
        return;
      case 'ack':
        w.acks.get(m.seq)?.();
        w.acks.delete(m.seq);
        return;
      case 'stats':
        w.listeners = new Map(m.listeners.filter((l) => this.#shared.has(l.id)).map((l) => [l.id, l]));
        w.endpoints = new Map(m.endpoints.map((e) => [`${e.servicePort}\0${e.id}`, e]));
        this.#restartDelayMs = RESTART_MIN_MS; // it lived long enough to report
        return;
      case 'log':
        this.#relog(m.line);
        return;
    }
  }

  #sendListen(w: Worker, s: Shared): void {
    const m: ToWorker = { t: 'listen', spec: s.spec, endpoints: this.#endpoints.get(s.spec.servicePort) ?? [], ranges: s.ranges };
    // the socket is duplicated into the worker when the message is written; until then the
    // handle must stay open, which `unshare` guarantees by queueing its `close` behind this
    w.child.send(m, s.handle as never, (err) => {
      if (err) this.#log.warn({ svc: s.spec.svc, err }, 'cannot pass a listening socket to a proxy worker');
    });
  }

  #broadcast(m: ToWorker): void {
    for (const w of this.#workers) if (w.ready && w.child.connected) w.child.send(m);
  }

  /** sends a message that is answered by `ack`; a worker that does not answer in time is killed */
  #request(w: Worker, make: (seq: number) => ToWorker): Promise<void> {
    if (w.exited || !w.child.connected) return Promise.resolve();
    const seq = ++this.#seq;
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.#log.warn({ pid: w.child.pid }, 'proxy worker did not answer in time; killing it');
        w.child.kill('SIGKILL');
      }, this.#o.ackTimeoutMs ?? 3000);
      w.acks.set(seq, () => {
        clearTimeout(t);
        resolve();
      });
      w.child.send(make(seq));
    });
  }

  #relog(line: string): void {
    try {
      const { level, msg, time: _t, pid: _p, hostname: _h, ...rest } = JSON.parse(line) as Record<string, unknown>;
      const name = this.#log.levels.labels[Number(level)] ?? 'info';
      (this.#log as unknown as Record<string, (o: object, m?: string) => void>)[name]!.call(this.#log, rest, msg as string | undefined);
    } catch {
      this.#log.warn({ line }, 'unreadable log line from a proxy worker');
    }
  }
}

function plain(eps: readonly Endpoint[]): Endpoint[] {
  return eps.map((e) => ({ host: e.host, port: e.port, id: e.id }));
}

function sameList(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  return (a ?? []).join() === (b ?? []).join() && (a === undefined) === (b === undefined);
}
