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
 * `ack`), so a port can be bound again at once. A worker that dies is started again; workers
 * exit when the proxy's IPC channel closes, even if it was killed.
 *
 * Totals stay monotonic: what a worker counted for a portal or an endpoint is kept when the
 * portal leaves it (affinity switched on), when its balancer goes, and when it dies (as of its
 * last report), until the portal is retired or the endpoint leaves the set. Bytes of
 * connections still draining in a worker after that are not counted.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { type ListenerCounters, type PortalSpec, addCounters, newCounters } from './portal.js';
import type { Endpoint } from './round-robin.js';
import type { DataPath } from '../../util/uv.js';
import type { FromWorker, ToWorker, WorkerEndpointStats, WorkerListenerStats } from './worker-messages.js';

type EndpointTotals = Omit<WorkerEndpointStats, 'servicePort' | 'id'>;

export interface ProxyWorkersOptions {
  /** worker processes to run (the proxy itself is one more) */
  count: number;
  log: Logger;
  dialTimeoutsMs: readonly number[];
  /** the workers use the proxy's data path: the sockets passed are of its kind */
  dataPath: DataPath;
  /** a worker that answers no `close`/`stop` within this is killed; default 3000 */
  ackTimeoutMs?: number;
}

interface Shared {
  spec: PortalSpec;
  /** a raw libuv handle (`uv` path) or a `net.Server` (`net` path) */
  handle: object;
  ranges?: readonly string[];
}

const RESTART_MIN_MS = 1000;
const RESTART_MAX_MS = 30_000;
/** a worker that lived this long resets the restart back-off */
const STABLE_MS = 10_000;

class Worker {
  readonly child: ChildProcess;
  readonly startedAt = Date.now();
  ready = false;
  exited = false;
  readonly acks = new Map<number, (final?: WorkerListenerStats) => void>();
  listeners = new Map<string, WorkerListenerStats>();
  /** by `servicePort \0 id` */
  endpoints = new Map<string, WorkerEndpointStats>();
  readonly exit: Promise<void>;
  markExited!: () => void;

  constructor(child: ChildProcess) {
    this.child = child;
    this.exit = new Promise((r) => (this.markExited = r));
  }
}

const epKey = (servicePort: string, id: string): string => `${servicePort}\0${id}`;

export class ProxyWorkers {
  readonly #o: ProxyWorkersOptions;
  readonly #log: Logger;
  readonly #workers = new Set<Worker>();
  readonly #shared = new Map<string, Shared>();
  /** service port → portals shared (endpoint updates go only to service ports with one) */
  readonly #servicePorts = new Map<string, number>();
  /** service port → its current endpoints (sent with `listen`; kept until `forgetServicePort`) */
  readonly #endpoints = new Map<string, Endpoint[]>();
  /** what workers counted for portals / endpoints they no longer report (see the top) */
  readonly #retiredListeners = new Map<string, ListenerCounters>();
  readonly #retiredEndpoints = new Map<string, EndpointTotals>();
  #seq = 0;
  #stopped = false;
  #restartDelayMs = RESTART_MIN_MS;

  constructor(o: ProxyWorkersOptions) {
    this.#o = o;
    this.#log = o.log;
  }

  /** Starts the workers; returns at once (portals are passed to each worker when it is ready). */
  start(): void {
    if (this.#stopped) return;
    for (let i = 0; i < this.#o.count; i++) this.#spawn();
  }

  /** pids of the running workers */
  pids(): number[] {
    return [...this.#workers].filter((w) => !w.exited && w.child.pid).map((w) => w.child.pid!);
  }

  /** Workers accept on this listening socket too, from now until `unshare`. */
  share(spec: PortalSpec, handle: object, endpoints: readonly Endpoint[], ranges?: readonly string[]): void {
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
    else this.#servicePorts.delete(s.spec.servicePort);
    await Promise.all(
      [...this.#workers]
        .filter((w) => w.ready)
        .map(async (w) => {
          const final = await this.#request(w, (seq) => ({ t: 'close', id, seq }));
          // the totals at the close, else (it died meanwhile) as of its last report
          const last = final ?? w.listeners.get(id);
          w.listeners.delete(id);
          if (last) this.#retireListener(id, last.counters);
        }),
    );
  }

  /** The portal is gone for good (closed by the proxy): its kept totals go too. */
  forget(id: string): void {
    this.#retiredListeners.delete(id);
  }

  /** The service port is gone: its endpoints' kept totals go too. */
  forgetServicePort(servicePort: string): void {
    this.#endpoints.delete(servicePort);
    for (const k of this.#retiredEndpoints.keys()) if (k.startsWith(`${servicePort}\0`)) this.#retiredEndpoints.delete(k);
  }

  /** The endpoint set of a service port changed (totals of endpoints that left are dropped, as the proxy's own are). */
  setEndpoints(servicePort: string, endpoints: readonly Endpoint[]): void {
    const ids = new Set(endpoints.map((e) => e.id));
    for (const k of this.#retiredEndpoints.keys()) {
      if (k.startsWith(`${servicePort}\0`) && !ids.has(k.slice(servicePort.length + 1))) this.#retiredEndpoints.delete(k);
    }
    const eps = plain(endpoints);
    this.#endpoints.set(servicePort, eps);
    if (!this.#servicePorts.has(servicePort)) return;
    this.#broadcast({ t: 'endpoints', servicePort, endpoints: eps });
  }

  setRanges(id: string, ranges: readonly string[] | undefined): void {
    const s = this.#shared.get(id);
    if (!s) return;
    s.ranges = ranges;
    this.#broadcast({ t: 'ranges', id, ranges });
  }

  /** the workers' totals for one portal (zero when they never had it) */
  listenerTotals(id: string): { active: number; counters: ListenerCounters } {
    const out = { active: 0, counters: { ...(this.#retiredListeners.get(id) ?? newCounters()) } };
    for (const w of this.#workers) {
      const s = w.listeners.get(id);
      if (!s) continue;
      out.active += s.active;
      addCounters(out.counters, s.counters);
    }
    return out;
  }

  /** how many workers accept on the portal, as of their last report (a worker reports within 250 ms of taking it) */
  accepting(id: string): number {
    let n = 0;
    for (const w of this.#workers) if (!w.exited && w.listeners.has(id)) n++;
    return n;
  }

  /** the workers' totals for one endpoint of one service port, or undefined when none has any */
  endpointTotals(servicePort: string, id: string): EndpointTotals | undefined {
    const key = epKey(servicePort, id);
    const retired = this.#retiredEndpoints.get(key);
    let out: EndpointTotals | undefined = retired && { ...retired };
    for (const w of this.#workers) {
      const e = w.endpoints.get(key);
      if (!e) continue;
      out ??= { connections: 0, failed: 0, bytesIn: 0, bytesOut: 0 };
      addEndpoint(out, e);
    }
    return out;
  }

  /** Ends every worker's connections and the workers themselves. Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#restartTimers) clearTimeout(t);
    this.#restartTimers.clear();
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
    // the worker file beside this one: worker.js from dist/ (plain node), worker.ts from src/ (tsx, by URL so any cwd works)
    const fromSource = import.meta.url.endsWith('.ts');
    const entry = fileURLToPath(new URL(fromSource ? './worker.ts' : './worker.js', import.meta.url));
    let child: ChildProcess;
    try {
      child = fork(entry, ['--dial-timeouts', this.#o.dialTimeoutsMs.join(','), '--log-level', this.#log.level, '--data-path', this.#o.dataPath], {
        execArgv: fromSource ? ['--import', import.meta.resolve('tsx')] : [],
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
        serialization: 'json',
      });
    } catch (err) {
      this.#log.warn({ err }, 'cannot start a proxy worker');
      this.#scheduleRestart(false);
      return;
    }
    const w = new Worker(child);
    this.#workers.add(w);
    child.on('message', (m: FromWorker) => this.#onMessage(w, m));
    child.on('error', (err) => {
      this.#log.warn({ err, pid: child.pid }, 'proxy worker error');
      // a failed spawn (EAGAIN, EMFILE, ...) emits 'error' and never 'exit'
      if (child.pid === undefined) this.#gone(w);
    });
    child.once('exit', (code, signal) => {
      if (!this.#stopped) this.#log.warn({ pid: child.pid, code, signal }, 'proxy worker exited; starting another');
      this.#gone(w);
    });
  }

  /** A worker ended (or never started): keep its totals, settle what waits on it, start another. */
  #gone(w: Worker): void {
    if (w.exited) return;
    w.exited = true;
    this.#workers.delete(w);
    for (const [id, l] of w.listeners) if (this.#shared.has(id)) this.#retireListener(id, l.counters);
    for (const e of w.endpoints.values()) this.#retireEndpoint(e);
    // w.listeners stays readable: an `unshare` waiting on this worker folds its portal from it
    for (const ack of w.acks.values()) ack();
    w.acks.clear();
    w.markExited();
    this.#scheduleRestart(Date.now() - w.startedAt >= STABLE_MS);
  }

  #scheduleRestart(wasStable: boolean): void {
    if (this.#stopped) return;
    if (wasStable) this.#restartDelayMs = RESTART_MIN_MS;
    const delay = this.#restartDelayMs;
    this.#restartDelayMs = Math.min(RESTART_MAX_MS, delay * 2);
    const t = setTimeout(() => {
      this.#restartTimers.delete(t);
      if (!this.#stopped) this.#spawn();
    }, delay);
    t.unref();
    this.#restartTimers.add(t);
  }

  readonly #restartTimers = new Set<NodeJS.Timeout>();

  #retireListener(id: string, c: ListenerCounters): void {
    const r = this.#retiredListeners.get(id);
    if (r) addCounters(r, c);
    else this.#retiredListeners.set(id, { ...c });
  }

  /** kept only while the endpoint is in its service port's current set */
  #retireEndpoint(e: WorkerEndpointStats): void {
    if (!this.#endpoints.get(e.servicePort)?.some((x) => x.id === e.id)) return;
    const key = epKey(e.servicePort, e.id);
    const r = this.#retiredEndpoints.get(key) ?? { connections: 0, failed: 0, bytesIn: 0, bytesOut: 0 };
    addEndpoint(r, e);
    this.#retiredEndpoints.set(key, r);
  }

  #onMessage(w: Worker, m: FromWorker): void {
    switch (m.t) {
      case 'ready':
        w.ready = true;
        this.#log.debug({ pid: w.child.pid }, 'proxy worker ready');
        for (const s of this.#shared.values()) this.#sendListen(w, s);
        return;
      case 'ack':
        w.acks.get(m.seq)?.(m.final);
        w.acks.delete(m.seq);
        return;
      case 'stats': {
        w.listeners = new Map(m.listeners.filter((l) => this.#shared.has(l.id)).map((l) => [l.id, l]));
        const next = new Map(m.endpoints.map((e) => [epKey(e.servicePort, e.id), e]));
        // an endpoint it no longer reports: its balancer went (no portal of that port left there)
        for (const [k, e] of w.endpoints) if (!next.has(k)) this.#retireEndpoint(e);
        w.endpoints = next;
        return;
      }
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

  /**
   * Sends a message that is answered by `ack` (resolving to its `final`); resolves without one
   * when the worker ends. A worker that does not answer in time is killed.
   */
  #request(w: Worker, make: (seq: number) => ToWorker): Promise<WorkerListenerStats | undefined> {
    if (w.exited || !w.child.connected) return Promise.resolve(undefined);
    const seq = ++this.#seq;
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.#log.warn({ pid: w.child.pid }, 'proxy worker did not answer in time; killing it');
        w.child.kill('SIGKILL');
      }, this.#o.ackTimeoutMs ?? 3000);
      w.acks.set(seq, (final) => {
        clearTimeout(t);
        resolve(final);
      });
      w.child.send(make(seq), (err) => {
        if (err) this.#log.debug({ err, pid: w.child.pid }, 'message to a proxy worker not sent');
      });
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

function addEndpoint(to: EndpointTotals, e: EndpointTotals): void {
  to.connections += e.connections;
  to.failed += e.failed;
  to.bytesIn += e.bytesIn;
  to.bytesOut += e.bytesOut;
}

function plain(eps: readonly Endpoint[]): Endpoint[] {
  return eps.map((e) => ({ host: e.host, port: e.port, id: e.id }));
}
