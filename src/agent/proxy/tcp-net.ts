import net from 'node:net';
import type { Logger } from 'pino';
import type { BalancedEndpoint, RoundRobin } from './round-robin.js';
import type { SourceRanges } from './source-ranges.js';
import { type Listener, type ListenerCounters, type PortalSpec, type TcpPortalListener, hostPort, newCounters } from './portal.js';
import type { TcpListenerOptions } from './tcp.js';

/** how often dials are checked against their deadline (the timeouts are 250 ms and up) */
const DIAL_SWEEP_MS = 25;
/** accept failures (EMFILE, ...) are logged at most this often per listener */
const ACCEPT_ERROR_LOG_MS = 1000;

/**
 * A real TCP listener on one portal on the `net` data path: `node:net` only, no Node internals
 * (util/uv.ts), so it runs wherever Node runs — under the permission model, with
 * `--pending-deprecation`/`--throw-deprecation`, on a Node whose bindings changed. Its behaviour
 * is tcp.ts's (the `uv` path): each accepted connection is paused (not read) until a backend has
 * answered, dials retry the next endpoint with growing timeouts (affinity bypassed after a
 * failure), then both ways are forwarded with half-close propagation (a FIN on one side ends only the
 * other side's write; an error or reset on one side resets the other). `close()` stops accepting
 * and leaves open connections to drain; `destroy()` ends them.
 *
 * Client → backend forwards each 'data' chunk (backpressure: the client is paused while the
 * backend's write buffer is full; the FIN follows the buffered bytes); backend → client reads
 * into a shared buffer (see READ_BUF) with the same backpressure and FIN handling. Dial deadlines
 * are checked by one sweep per listener, as in tcp.ts.
 */
export class NetTcpListener implements TcpPortalListener {
  readonly spec: PortalSpec;
  readonly counters: ListenerCounters = newCounters();
  readonly balancer: RoundRobin;
  readonly dialTimeoutsMs: readonly number[];
  readonly log: Logger;
  sourceRanges: SourceRanges | undefined;
  #server: net.Server | undefined;
  readonly #conns = new Set<NetConn>();
  readonly #onDrained: ((l: Listener) => void) | undefined;
  /** connections waiting for their backend's answer, checked by `#sweep` */
  readonly #dialing = new Set<NetConn>();
  #sweeper: NodeJS.Timeout | undefined;
  #closed = false;
  #drainedReported = false;
  #acceptErrorLoggedAt = 0;

  constructor(o: TcpListenerOptions) {
    this.spec = o.spec;
    this.balancer = o.balancer;
    this.dialTimeoutsMs = o.dialTimeoutsMs.length ? o.dialTimeoutsMs : [250];
    this.log = o.log;
    this.#onDrained = o.onDrained;
    this.sourceRanges = o.sourceRanges;
  }

  get active(): number {
    return this.#conns.size;
  }

  liveBytes(): { bytesIn: number; bytesOut: number } {
    let bytesIn = 0;
    let bytesOut = 0;
    for (const c of this.#conns) {
      bytesIn += c.bytesIn;
      bytesOut += c.bytesOut;
    }
    return { bytesIn, bytesOut };
  }

  /**
   * Binds and listens on the portal, or, given `shared` (a listening `net.Server` another process
   * bound and passed over IPC, see workers.ts), accepts from that socket too.
   */
  async open(shared?: object): Promise<void> {
    const server = shared instanceof net.Server ? shared : net.createServer();
    // read per connection (net's own option fields); a passed server was made by Node with the defaults
    Object.assign(server, { allowHalfOpen: true, pauseOnConnect: true, noDelay: true });
    if (!shared) {
      const { address, port } = this.spec;
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ host: address, port, backlog: 4096, exclusive: true, ipv6Only: address.includes(':') }, () => {
            server.removeListener('error', reject);
            resolve();
          });
        });
      } catch (err) {
        this.#closed = true;
        server.close();
        throw err;
      }
    }
    server.on('connection', this.#onConnection);
    server.on('error', this.#onAcceptError);
    this.#server = server;
  }

  /** the listening server while open (to pass to worker processes) */
  get handle(): net.Server | undefined {
    return this.#server;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeServer();
    this.#maybeDrained();
  }

  async destroy(): Promise<void> {
    this.#closed = true;
    this.#closeServer();
    const conns = [...this.#conns];
    for (const c of conns) c.end(true);
    await Promise.all(conns.map((c) => c.closed));
    this.#stopSweep();
  }

  #closeServer(): void {
    const s = this.#server;
    if (!s) return;
    this.#server = undefined;
    s.removeListener('connection', this.#onConnection);
    s.close();
  }

  readonly #onConnection = (client: net.Socket): void => {
    client.on('error', noop);
    if (this.#closed) {
      client.destroy();
      return;
    }
    if (this.sourceRanges && !this.sourceRanges.allows(client.remoteAddress ?? '')) {
      // loadBalancerSourceRanges: a prompt, visible refusal rather than a silent drop
      this.counters.denied++;
      this.log.trace({ svc: this.spec.svc }, 'source not in loadBalancerSourceRanges: reset');
      reset(client);
      return;
    }
    this.counters.accepted++;
    const c = new NetConn(this, client);
    this.#conns.add(c);
    c.dial();
  };

  readonly #onAcceptError = (err: Error): void => {
    const now = Date.now();
    if (now - this.#acceptErrorLoggedAt < ACCEPT_ERROR_LOG_MS) return;
    this.#acceptErrorLoggedAt = now;
    // the listener keeps listening; EMFILE: the process is out of file descriptors
    this.log.warn({ svc: this.spec.svc, err }, 'accept failed');
  };

  /** @internal */
  dialStarted(c: NetConn): void {
    this.#dialing.add(c);
    if (!this.#sweeper) {
      // the sockets being dialled keep the process alive; the sweep itself does not
      this.#sweeper = setInterval(this.#sweep, DIAL_SWEEP_MS);
      this.#sweeper.unref();
    }
  }

  /** @internal */
  dialEnded(c: NetConn): void {
    this.#dialing.delete(c);
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

  /** @internal */
  connEnded(c: NetConn): void {
    this.#conns.delete(c);
    this.#dialing.delete(c);
    this.counters.bytesIn += c.bytesIn;
    this.counters.bytesOut += c.bytesOut;
    this.#maybeDrained();
  }

  #maybeDrained(): void {
    if (this.#closed && this.#conns.size === 0 && !this.#drainedReported) {
      this.#drainedReported = true;
      this.#stopSweep();
      this.#onDrained?.(this);
    }
  }
}

/** One proxied connection: dial with retries, then forward both ways. */
class NetConn {
  readonly #l: NetTcpListener;
  readonly #client: net.Socket;
  #backend: net.Socket | undefined;
  #ep: BalancedEndpoint | undefined;
  #attempt = 0;
  /** Date.now() after which the current dial has failed */
  deadline = 0;
  #spliced = false;
  #closing = false;
  #open = 1;
  #ended = false;
  readonly closed: Promise<void>;
  #resolveClosed!: () => void;

  constructor(l: NetTcpListener, client: net.Socket) {
    this.#l = l;
    this.#client = client;
    this.closed = new Promise((r) => (this.#resolveClosed = r));
    client.once('close', () => this.#socketClosed());
    client.on('error', this.#onError);
  }

  /** client → backend */
  get bytesIn(): number {
    return this.#spliced ? this.#client.bytesRead : 0;
  }

  /** backend → client */
  get bytesOut(): number {
    return this.#spliced ? (this.#backend?.bytesRead ?? 0) : 0;
  }

  dial(): void {
    const l = this.#l;
    // after a failed dial, affinity is bypassed so a dead pinned backend is replaced
    const ep = l.balancer.next(l.balancer.sticky ? (this.#client.remoteAddress ?? '') : '', this.#attempt > 0);
    if (!ep) {
      l.counters.failed++;
      l.log.trace({ svc: l.spec.svc, portal: l.spec.id }, 'no endpoints: connection reset');
      this.end(true);
      return;
    }
    this.#ep = ep;
    const b = net.connect({
      host: ep.host,
      port: ep.port,
      allowHalfOpen: true,
      noDelay: true,
      // backend → client (the bulk direction of downloads) reads into the shared buffer
      onread: { buffer: READ_BUF, callback: (n: number) => this.#fromBackend(n) },
    });
    this.#backend = b;
    this.#open++;
    b.once('close', () => this.#socketClosed());
    b.once('connect', () => this.#splice(b));
    b.on('error', (err: NodeJS.ErrnoException) => {
      if (this.#spliced) this.#onError();
      else this.#dialFailed(b, err.code ?? err.message);
    });
    this.deadline = Date.now() + l.dialTimeoutsMs[this.#attempt]!;
    l.dialStarted(this);
  }

  /** the current dial is past its deadline (the listener's sweep) */
  dialTimedOut(): void {
    if (this.#backend) this.#dialFailed(this.#backend, 'dial timeout');
  }

  #dialFailed(b: net.Socket, why: string): void {
    if (b !== this.#backend || this.#spliced || this.#closing) return;
    this.#l.dialEnded(this);
    const l = this.#l;
    const ep = this.#ep!;
    ep.failed++;
    l.log.trace({ svc: l.spec.svc, endpoint: ep.id, err: why }, 'dial failed');
    this.#backend = undefined;
    b.on('error', noop);
    b.destroy();
    this.#attempt++;
    if (this.#attempt < l.dialTimeoutsMs.length) {
      this.dial();
      return;
    }
    l.counters.failed++;
    l.log.debug(
      { svc: l.spec.svc, portal: hostPort(l.spec.address, l.spec.port), attempts: this.#attempt },
      'every endpoint dial failed: connection closed',
    );
    this.end(true);
  }

  #splice(b: net.Socket): void {
    if (b !== this.#backend || this.#closing) return;
    this.#l.dialEnded(this);
    this.#spliced = true;
    this.#ep!.connections++;
    // each side's EOF ends the other's write side once what was read is written (half-close);
    // a full write buffer pauses the side that fills it until it drains
    const c = this.#client;
    c.on('data', (d: Buffer) => {
      if (!b.write(d)) c.pause();
    });
    b.on('drain', () => c.resume());
    c.on('drain', () => b.resume());
    c.once('end', () => b.end());
    b.once('end', () => c.end());
    // accepted paused (pauseOnConnect): read from now on
    c.resume();
  }

  /**
   * `n` bytes from the backend are in READ_BUF (read by `onread`, no buffer allocated per read):
   * they are copied into a recycled chunk for the write, and reading stops while the client's
   * write buffer is full (backpressure; resumed on 'drain').
   */
  #fromBackend(n: number): boolean {
    if (this.#closing) return false;
    const chunk = pool.pop() ?? Buffer.allocUnsafeSlow(READ_SIZE);
    READ_BUF.copy(chunk, 0, 0, n);
    const more = this.#client.write(chunk.subarray(0, n), () => recycle(chunk));
    return more;
  }

  readonly #onError = (): void => this.end(true);

  /** ends the connection: both sockets destroyed, with RST where possible when `abort` */
  end(abort: boolean): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#l.dialEnded(this);
    const b = this.#backend;
    if (b) {
      b.on('error', noop);
      if (abort && !b.connecting) reset(b);
      else b.destroy();
    }
    if (abort) reset(this.#client);
    else this.#client.destroy();
  }

  /**
   * A socket closed. Without an error (handled by `end`) that means both its directions are done,
   * so the other socket has its FIN queued behind its pending writes and closes by itself.
   */
  #socketClosed(): void {
    if (--this.#open === 0) this.#finish();
  }

  #finish(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#closing = true;
    this.#l.dialEnded(this);
    if (this.#spliced) {
      this.#ep!.bytesIn += this.bytesIn;
      this.#ep!.bytesOut += this.bytesOut;
    }
    this.#l.connEnded(this);
    this.#resolveClosed();
  }
}

/*
 * Backend reads land in one shared buffer and are copied into recycled chunks: a fresh buffer
 * per read (net's default) costs an allocation, page faults and GC work per 64 KiB, several times
 * the CPU per GB of the copy (bench/proxy-ab.ts). The size is tcp.ts's (256 KiB, measured there).
 */
const READ_SIZE = 256 * 1024;
const READ_BUF = Buffer.allocUnsafeSlow(READ_SIZE);
/** recycled chunks kept (4 MiB) */
const POOL_MAX = 16;
const pool: Buffer[] = [];

function recycle(chunk: Buffer): void {
  if (pool.length < POOL_MAX) pool.push(chunk);
}

function noop(): void {}

/**
 * Close with RST (a prompt, visible failure for the peer). A socket whose write side was ended
 * (a FIN sent, or queued) is destroyed plainly: libuv refuses to reset a shut-down handle.
 */
function reset(s: net.Socket): void {
  if (s.destroyed) return;
  if (s.writableEnded || s.connecting) s.destroy();
  else s.resetAndDestroy();
}
