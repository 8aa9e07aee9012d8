import net from 'node:net';
import type { Logger } from 'pino';
import type { BalancedEndpoint, RoundRobin } from './round-robin.js';
import type { SourceRanges } from './source-ranges.js';
import { type Listener, type ListenerCounters, type PortalSpec, hostPort, newCounters } from './portal.js';

export interface TcpListenerOptions {
  spec: PortalSpec;
  balancer: RoundRobin;
  /** one dial attempt per entry, each to the next endpoint */
  dialTimeoutsMs: readonly number[];
  log: Logger;
  /** called once when a closed listener's last connection has ended */
  onDrained?(l: TcpListener): void;
  /** clients outside these ranges are reset at once */
  sourceRanges?: SourceRanges;
}

/** how often dials are checked against their deadline (the timeouts are 250 ms and up) */
const DIAL_SWEEP_MS = 25;

/**
 * A real TCP listener on one portal. Each accepted connection is paused until a backend has
 * answered, then spliced both ways with half-close propagation:
 *
 * ```
 *  client ──data/FIN──► proxy ──data/FIN──► backend      FIN on one side ends only the
 *  client ◄─data/FIN─── proxy ◄─data/FIN─── backend      other side's write; an error or
 *                                                        reset on one side resets the other
 * ```
 * `close()` stops accepting and leaves open connections to drain; `destroy()` ends them.
 *
 * The connection path is the proxy's hot path (bench/run.ts measures it): per connection it
 * allocates one `TcpConn` and the two sockets, nothing else — event handlers are module-level
 * functions shared by every connection (a per-connection closure costs an allocation, and
 * under tsx a `__name` property definition too), dial deadlines are checked by one sweep per
 * listener instead of a timer per dial, the client address is read only when affinity or
 * source ranges need it, and data is forwarded by `write()` with pause/resume backpressure
 * rather than `pipe()` (whose per-connection set-up and tear-down cost more than the copy loop).
 * Nothing is logged per connection above `trace`.
 */
export class TcpListener implements Listener {
  readonly spec: PortalSpec;
  readonly counters: ListenerCounters = newCounters();
  readonly balancer: RoundRobin;
  readonly dialTimeoutsMs: readonly number[];
  readonly log: Logger;
  sourceRanges: SourceRanges | undefined;
  readonly #server: net.Server;
  readonly #conns = new Set<TcpConn>();
  /** connections waiting for their backend's answer, checked by `#sweep` */
  readonly #dialing = new Set<TcpConn>();
  #sweeper: NodeJS.Timeout | undefined;
  readonly #onDrained: ((l: TcpListener) => void) | undefined;
  #closed = false;
  #drainedReported = false;

  constructor(o: TcpListenerOptions) {
    this.spec = o.spec;
    this.balancer = o.balancer;
    this.dialTimeoutsMs = o.dialTimeoutsMs.length ? o.dialTimeoutsMs : [250];
    this.log = o.log;
    this.#onDrained = o.onDrained;
    this.sourceRanges = o.sourceRanges;
    this.#server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true });
    this.#server.on('connection', this.#onConnection);
  }

  get active(): number {
    return this.#conns.size;
  }

  /** bytes of the connections still open (the counters hold those that ended) */
  liveBytes(): { bytesIn: number; bytesOut: number } {
    let bytesIn = 0;
    let bytesOut = 0;
    for (const c of this.#conns) {
      bytesIn += c.client.bytesRead;
      bytesOut += c.client.bytesWritten;
    }
    return { bytesIn, bytesOut };
  }

  open(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => {
        this.#server.removeListener('listening', onListening);
        this.#closed = true;
        reject(err);
      };
      const onListening = (): void => {
        this.#server.removeListener('error', onError);
        // accept errors (EMFILE, ...): the server keeps listening; log and go on
        this.#server.on('error', (err) => this.log.warn({ svc: this.spec.svc, err }, 'accept failed'));
        resolve();
      };
      this.#server.once('error', onError);
      this.#server.once('listening', onListening);
      this.#server.listen({ host: this.spec.address, port: this.spec.port, exclusive: true, backlog: 4096 });
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // the listening fd is closed synchronously; the callback would wait for every connection
    if (this.#server.listening) this.#server.close();
    this.#maybeDrained();
  }

  async destroy(): Promise<void> {
    this.#closed = true;
    const serverClosed = this.#server.listening
      ? new Promise<void>((resolve) => this.#server.close(() => resolve()))
      : Promise.resolve();
    const conns = [...this.#conns];
    for (const c of conns) c.destroy();
    await Promise.all([serverClosed, ...conns.map((c) => c.closed)]);
    this.#stopSweep();
  }

  /** @internal */
  dialStarted(c: TcpConn): void {
    this.#dialing.add(c);
    if (!this.#sweeper) {
      // the sockets being dialled keep the process alive; the sweep itself does not
      this.#sweeper = setInterval(this.#sweep, DIAL_SWEEP_MS);
      this.#sweeper.unref();
    }
  }

  /** @internal */
  dialEnded(c: TcpConn): void {
    this.#dialing.delete(c);
  }

  /** @internal */
  connEnded(c: TcpConn): void {
    this.#conns.delete(c);
    this.#dialing.delete(c);
    this.#maybeDrained();
  }

  readonly #sweep = (): void => {
    if (this.#dialing.size === 0) return this.#stopSweep();
    const now = Date.now();
    for (const c of this.#dialing) if (now >= c.deadline) c.dialTimedOut();
  };

  #stopSweep(): void {
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }

  #maybeDrained(): void {
    if (this.#closed && this.#conns.size === 0 && !this.#drainedReported) {
      this.#drainedReported = true;
      this.#stopSweep();
      this.#onDrained?.(this);
    }
  }

  readonly #onConnection = (client: net.Socket): void => {
    if (this.#closed) {
      client.destroy();
      return;
    }
    if (this.sourceRanges && !this.sourceRanges.allows(client.remoteAddress)) {
      // loadBalancerSourceRanges: a prompt, visible refusal rather than a silent drop
      this.counters.denied++;
      this.log.trace({ svc: this.spec.svc, client: client.remoteAddress }, 'source not in loadBalancerSourceRanges: reset');
      client.on('error', ignore);
      reset(client);
      return;
    }
    this.counters.accepted++;
    const c = new TcpConn(this, client);
    this.#conns.add(c);
    c.start();
  };
}

/** The connection a socket belongs to (set on both of its sockets; read by the shared handlers). */
const CONN = Symbol('kubeloop.proxy.conn');
type ConnSocket = net.Socket & { [CONN]?: TcpConn };

/** One proxied connection: dial with retries, then splice. */
class TcpConn {
  readonly l: TcpListener;
  readonly client: ConnSocket;
  backend: ConnSocket | undefined;
  /** the endpoint being dialled, then the one spliced to */
  ep: BalancedEndpoint | undefined;
  /** Date.now() after which the current dial has failed */
  deadline = 0;
  attempt = 0;
  spliced = false;
  clientClosed = false;
  backendClosed = true;
  #ended = false;
  #closed: Promise<void> | undefined;
  #resolveClosed: (() => void) | undefined;

  constructor(l: TcpListener, client: net.Socket) {
    this.l = l;
    this.client = client;
  }

  /** resolves once both sockets are closed */
  get closed(): Promise<void> {
    if (this.#ended) return Promise.resolve();
    this.#closed ??= new Promise<void>((r) => (this.#resolveClosed = r));
    return this.#closed;
  }

  start(): void {
    const c = this.client;
    c[CONN] = this;
    c.on('error', onClientError);
    c.on('close', onClientClose);
    this.dial();
  }

  destroy(): void {
    this.l.dialEnded(this);
    this.backend?.destroy();
    this.client.destroy();
  }

  dial(): void {
    const l = this.l;
    // after a failed dial, affinity is bypassed so a dead pinned backend is replaced
    const ep = l.balancer.next(l.balancer.sticky ? (this.client.remoteAddress ?? '') : '', this.attempt > 0);
    if (!ep) {
      l.counters.failed++;
      l.log.trace({ svc: l.spec.svc, portal: l.spec.id }, 'no endpoints: connection reset');
      reset(this.client);
      return;
    }
    this.ep = ep;
    const s: ConnSocket = net.connect({ host: ep.host, port: ep.port, allowHalfOpen: true, noDelay: true, onread: BACKEND_READ });
    s[CONN] = this;
    this.backend = s;
    this.backendClosed = false;
    s.on('error', onBackendError);
    s.on('close', onBackendClose);
    s.on('connect', onBackendConnect);
    this.deadline = Date.now() + l.dialTimeoutsMs[this.attempt]!;
    l.dialStarted(this);
  }

  dialTimedOut(): void {
    if (this.backend) this.dialFailed(this.backend, new Error('dial timeout'));
  }

  dialFailed(s: net.Socket, err: Error): void {
    if (s !== this.backend || this.spliced) return;
    const l = this.l;
    l.dialEnded(this);
    const ep = this.ep!;
    ep.failed++;
    l.log.trace({ svc: l.spec.svc, endpoint: ep.id, err: err.message }, 'dial failed');
    // the failed socket's 'close' must not count for the next attempt's socket (see onBackendClose)
    this.backend = undefined;
    this.backendClosed = true;
    s.destroy();
    if (this.clientClosed) return this.maybeEnded();
    this.attempt++;
    if (this.attempt < l.dialTimeoutsMs.length) {
      this.dial();
      return;
    }
    l.counters.failed++;
    l.log.debug(
      { svc: l.spec.svc, portal: hostPort(l.spec.address, l.spec.port), attempts: this.attempt },
      'every endpoint dial failed: connection closed',
    );
    reset(this.client);
  }

  splice(s: ConnSocket): void {
    this.l.dialEnded(this);
    if (this.clientClosed) {
      s.destroy();
      return;
    }
    this.spliced = true;
    this.ep!.connections++;
    const c = this.client;
    c.on('data', onClientData);
    c.on('end', onClientEnd);
    c.on('drain', onClientDrain);
    s.on('end', onBackendEnd);
    s.on('drain', onBackendDrain);
    c.resume();
  }

  clientClose(hadError: boolean): void {
    this.clientClosed = true;
    const l = this.l;
    const c = this.client;
    l.counters.bytesIn += c.bytesRead;
    l.counters.bytesOut += c.bytesWritten;
    if (this.spliced) {
      this.ep!.bytesIn += c.bytesRead;
      this.ep!.bytesOut += c.bytesWritten;
    }
    l.dialEnded(this);
    // while dialing, or after an error, the backend has nobody to talk to. After a clean
    // close both directions have ended, so the backend is finishing its own writes.
    if (this.backend && (!this.spliced || hadError)) this.backend.destroy();
    this.maybeEnded();
  }

  maybeEnded(): void {
    if (this.#ended || !this.clientClosed || !this.backendClosed) return;
    this.#ended = true;
    this.l.connEnded(this);
    this.#resolveClosed?.();
  }
}

// ---- event handlers shared by every connection; `this` is the socket that emitted ----

function onClientData(this: ConnSocket, d: Buffer): void {
  if (!this[CONN]!.backend!.write(d)) this.pause();
}

/*
 * Backend → client (responses, downloads: the heavy direction of a load test) bypasses the
 * readable-stream machinery: every backend socket reads into one shared buffer (`onread`; reads
 * are one at a time and the callback runs at once), and the callback copies the bytes out — a
 * small read into a pooled allocation, a large one into a recycled 64 KiB buffer that returns
 * to the pool when the client's write completes. Reusing warm buffers is what keeps the
 * kernel's copies cheap: a fresh 64 KiB per read (until the GC frees it) cost twice the system
 * time per GB. (The shared buffer itself is never handed to a write: each socket keeps the
 * buffer it was given for its next read.) Client sockets come from `net.Server`, which has no
 * `onread`: client → backend uses 'data' events.
 */
const READ_SIZE = 64 * 1024;
/** reads up to this size are copied into a pooled allocation (`Buffer.allocUnsafe`) */
const COPY_MAX = 4096;
/** recycled buffers kept (4 MiB) */
const POOL_MAX = 64;
const pool: Buffer[] = [];
const BACKEND_READ = { buffer: Buffer.allocUnsafeSlow(READ_SIZE), callback: onBackendRead };

function onBackendRead(this: ConnSocket, n: number, buf: Buffer): boolean {
  const client = this[CONN]!.client;
  if (n <= COPY_MAX) {
    const chunk = Buffer.allocUnsafe(n);
    buf.copy(chunk, 0, 0, n);
    return client.write(chunk); // false: reading stops until the client drains (onClientDrain)
  }
  const chunk = pool.pop() ?? Buffer.allocUnsafeSlow(READ_SIZE);
  buf.copy(chunk, 0, 0, n);
  return client.write(n === READ_SIZE ? chunk : chunk.subarray(0, n), () => {
    if (pool.length < POOL_MAX) pool.push(chunk);
  });
}

function onClientDrain(this: ConnSocket): void {
  this[CONN]!.backend?.resume();
}

function onBackendDrain(this: ConnSocket): void {
  this[CONN]!.client.resume();
}

function onClientEnd(this: ConnSocket): void {
  this[CONN]!.backend?.end();
}

function onBackendEnd(this: ConnSocket): void {
  this[CONN]!.client.end();
}

function onClientError(this: ConnSocket): void {
  // the client socket is destroyed by the stream machinery; the backend gets a reset
  const b = this[CONN]!.backend;
  if (b) reset(b);
}

function onClientClose(this: ConnSocket, hadError: boolean): void {
  this[CONN]!.clientClose(hadError);
}

function onBackendConnect(this: ConnSocket): void {
  const conn = this[CONN]!;
  if (conn.backend === this) conn.splice(this);
}

function onBackendError(this: ConnSocket, err: Error): void {
  const conn = this[CONN]!;
  if (conn.spliced) reset(conn.client);
  else conn.dialFailed(this, err);
}

function onBackendClose(this: ConnSocket): void {
  const conn = this[CONN]!;
  // a socket whose dial failed was replaced (or given up) already
  if (conn.backend !== this) return;
  conn.backendClosed = true;
  conn.maybeEnded();
}

function ignore(): void {}

/** End with RST where possible (a prompt, visible failure for the client). */
function reset(s: net.Socket): void {
  if (s.destroyed) return;
  try {
    s.resetAndDestroy();
  } catch {
    s.destroy();
  }
}
