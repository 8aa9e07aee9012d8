import net from 'node:net';
import type { Logger } from 'pino';
import type { RoundRobin } from './round-robin.js';
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
      this.#server.listen({ host: this.spec.address, port: this.spec.port, exclusive: true });
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
  }

  /** @internal */
  connEnded(c: TcpConn): void {
    this.#conns.delete(c);
    this.#maybeDrained();
  }

  #maybeDrained(): void {
    if (this.#closed && this.#conns.size === 0 && !this.#drainedReported) {
      this.#drainedReported = true;
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
      client.on('error', () => undefined);
      reset(client);
      return;
    }
    this.counters.accepted++;
    const c = new TcpConn(this, client);
    this.#conns.add(c);
    c.start();
  };
}

/** One proxied connection: dial with retries, then splice. */
class TcpConn {
  readonly #l: TcpListener;
  readonly #client: net.Socket;
  readonly #clientIP: string;
  #backend: net.Socket | undefined;
  #timer: NodeJS.Timeout | undefined;
  #attempt = 0;
  #spliced = false;
  #clientClosed = false;
  #backendClosed = true;
  #ended = false;
  #resolveClosed!: () => void;
  /** resolves once both sockets are closed */
  readonly closed = new Promise<void>((r) => (this.#resolveClosed = r));

  constructor(l: TcpListener, client: net.Socket) {
    this.#l = l;
    this.#client = client;
    this.#clientIP = client.remoteAddress ?? '';
  }

  start(): void {
    this.#client.on('error', this.#onClientError);
    this.#client.on('close', this.#onClientClose);
    this.#dial();
  }

  destroy(): void {
    this.#clearTimer();
    this.#backend?.destroy();
    this.#client.destroy();
  }

  #dial(): void {
    const l = this.#l;
    // after a failed dial, affinity is bypassed so a dead pinned backend is replaced
    const ep = l.balancer.next(this.#clientIP, this.#attempt > 0);
    if (!ep) {
      l.counters.failed++;
      l.log.trace({ svc: l.spec.svc, portal: l.spec.id }, 'no endpoints: connection reset');
      reset(this.#client);
      return;
    }
    const s = net.connect({ host: ep.host, port: ep.port, allowHalfOpen: true, noDelay: true });
    this.#backend = s;
    this.#backendClosed = false;
    const onError = (err: Error): void => this.#dialFailed(s, ep.id, err);
    s.on('error', onError);
    s.once('close', this.#onBackendClose);
    s.once('connect', () => {
      s.removeListener('error', onError);
      this.#splice(s);
    });
    this.#timer = setTimeout(() => this.#dialFailed(s, ep.id, new Error('dial timeout')), l.dialTimeoutsMs[this.#attempt]);
  }

  #dialFailed(s: net.Socket, endpoint: string, err: Error): void {
    if (s !== this.#backend || this.#spliced) return;
    const l = this.#l;
    this.#clearTimer();
    l.log.trace({ svc: l.spec.svc, endpoint, err: err.message }, 'dial failed');
    // the failed socket's 'close' handler must not count for the next attempt's socket
    s.removeListener('close', this.#onBackendClose);
    s.destroy();
    this.#backend = undefined;
    this.#backendClosed = true;
    if (this.#clientClosed) return this.#maybeEnded();
    this.#attempt++;
    if (this.#attempt < l.dialTimeoutsMs.length) {
      this.#dial();
      return;
    }
    l.counters.failed++;
    l.log.debug(
      { svc: l.spec.svc, portal: hostPort(l.spec.address, l.spec.port), attempts: this.#attempt },
      'every endpoint dial failed: connection closed',
    );
    reset(this.#client);
  }

  #splice(s: net.Socket): void {
    this.#clearTimer();
    if (this.#clientClosed) {
      s.destroy();
      return;
    }
    this.#spliced = true;
    s.on('error', this.#onBackendError);
    this.#client.pipe(s);
    s.pipe(this.#client);
  }

  readonly #onClientError = (): void => {
    // the client socket is destroyed by the stream machinery; the backend gets a reset
    if (this.#backend) reset(this.#backend);
  };

  readonly #onBackendError = (): void => {
    reset(this.#client);
  };

  readonly #onClientClose = (hadError: boolean): void => {
    this.#clientClosed = true;
    const l = this.#l;
    l.counters.bytesIn += this.#client.bytesRead;
    l.counters.bytesOut += this.#client.bytesWritten;
    // while dialing, or after an error, the backend has nobody to talk to. After a clean
    // close both directions have ended, so the backend is finishing its own writes.
    if (this.#backend && (!this.#spliced || hadError)) this.#backend.destroy();
    this.#clearTimer();
    this.#maybeEnded();
  };

  readonly #onBackendClose = (): void => {
    this.#backendClosed = true;
    this.#maybeEnded();
  };

  #maybeEnded(): void {
    if (this.#ended || !this.#clientClosed || !this.#backendClosed) return;
    this.#ended = true;
    this.#l.connEnded(this);
    this.#resolveClosed();
  }

  #clearTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/** End with RST where possible (a prompt, visible failure for the client). */
function reset(s: net.Socket): void {
  if (s.destroyed) return;
  try {
    s.resetAndDestroy();
  } catch {
    s.destroy();
  }
}
