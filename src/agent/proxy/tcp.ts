import type { Logger } from 'pino';
import type { BalancedEndpoint, RoundRobin } from './round-robin.js';
import type { SourceRanges } from './source-ranges.js';
import { type Listener, type ListenerCounters, type PortalSpec, type TcpPortalListener, hostPort, newCounters } from './portal.js';
import { type Bindings, type UvReq, type UvTcp, uvBindings, uvError } from '../../util/uv.js';

export interface TcpListenerOptions {
  spec: PortalSpec;
  balancer: RoundRobin;
  /** one dial attempt per entry, each to the next endpoint */
  dialTimeoutsMs: readonly number[];
  log: Logger;
  /** called once when a closed listener's last connection has ended */
  onDrained?(l: Listener): void;
  /** clients outside these ranges are reset at once */
  sourceRanges?: SourceRanges;
}

/** how often dials are checked against their deadline (the timeouts are 250 ms and up) */
const DIAL_SWEEP_MS = 25;
/** accepted sockets get the listening socket's TCP_NODELAY */
const INHERITS_NODELAY = process.platform === 'linux';
/** accept failures (EMFILE, ...) are logged at most this often per listener */
const ACCEPT_ERROR_LOG_MS = 1000;

/*
 * The bindings and what the hot path reads of them, set by the first `TcpListener` (after
 * `chooseDataPath` picked `uv`; nothing here touches `process.binding` at import).
 */
let uv: Bindings['tcp'] & Pick<Bindings['stream'], 'WriteWrap' | 'ShutdownWrap'>;
let streamState: Int32Array;
let READ = 0;
let LAST_WRITE_ASYNC = 0;
let UV_EOF = -4095;

function initUv(): void {
  if (streamState) return;
  const b = uvBindings();
  uv = { TCP: b.tcp.TCP, TCPConnectWrap: b.tcp.TCPConnectWrap, constants: b.tcp.constants, WriteWrap: b.stream.WriteWrap, ShutdownWrap: b.stream.ShutdownWrap };
  streamState = b.stream.streamBaseState;
  READ = b.stream.kReadBytesOrError;
  LAST_WRITE_ASYNC = b.stream.kLastWriteWasAsync;
  UV_EOF = b.UV_EOF;
  writeReq = newWriteReq();
}

/**
 * A real TCP listener on one portal, on the `uv` data path (util/uv.ts; tcp-net.ts is the `net`
 * one, with the same behaviour). Each accepted connection waits, not read, until a backend
 * has answered, then is spliced both ways with half-close propagation:
 *
 * ```
 *  client ──data/FIN──► proxy ──data/FIN──► backend      FIN on one side ends only the
 *  client ◄─data/FIN─── proxy ◄─data/FIN─── backend      other side's write; an error or
 *                                                        reset on one side resets the other
 * ```
 * `close()` stops accepting and leaves open connections to drain; `destroy()` ends them.
 *
 * This is the proxy's hot path (bench/run.ts measures it), so it works on Node's libuv handles
 * (uv.ts) rather than `net.Socket`: a `Socket` is a duplex stream with two state objects, an
 * event emitter, timers and nextTick hops per read and write, and profiles showed that
 * machinery, not the copy, was most of the CPU per connection and most of the memory per idle
 * connection. Here a connection is one `TcpConn` and two handles. Every handle reads into one
 * shared buffer (reads run one at a time and the callback runs at once); the callback copies
 * the bytes into a chunk and writes it to the other handle (bulk streams get buffers of their
 * own and skip the copy, see `forward`). Most writes on loopback
 * complete at once (`LAST_WRITE_ASYNC` is 0), so the chunk is recycled at once; a pending write
 * keeps its chunk and stops reading the other side until it completes (backpressure). Event
 * handlers are module-level functions (no per-connection closures), dial deadlines are checked
 * by one sweep per listener, the client address is read only when affinity or source ranges
 * need it, and nothing is logged per connection above `trace`.
 */
export class TcpListener implements TcpPortalListener {
  readonly spec: PortalSpec;
  readonly counters: ListenerCounters = newCounters();
  readonly balancer: RoundRobin;
  readonly dialTimeoutsMs: readonly number[];
  readonly log: Logger;
  sourceRanges: SourceRanges | undefined;
  #server: UvTcp | undefined;
  readonly #conns = new Set<TcpConn>();
  /** connections waiting for their backend's answer, checked by `#sweep` */
  readonly #dialing = new Set<TcpConn>();
  #sweeper: NodeJS.Timeout | undefined;
  readonly #onDrained: ((l: Listener) => void) | undefined;
  #closed = false;
  #drainedReported = false;
  #acceptErrorLoggedAt = 0;

  constructor(o: TcpListenerOptions) {
    initUv();
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

  /** bytes of the connections still open (the counters hold those that ended) */
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
   * Binds and listens on the portal, or, given `shared` (a listening socket another process
   * bound and passed over IPC, see workers.ts), accepts from that socket too: the kernel hands
   * each connection to one of the processes accepting on it.
   */
  async open(shared?: UvTcp): Promise<void> {
    const { address, port } = this.spec;
    const h = shared ?? new uv.TCP(uv.constants.SERVER);
    const v6 = address.includes(':');
    let err = shared ? 0 : v6 ? h.bind6(address, port, uv.constants.UV_TCP_IPV6ONLY) : h.bind(address, port);
    // Linux: accepted sockets inherit TCP_NODELAY from the listening one (one setsockopt per
    // connection saved; set before listen() so no connection misses it; a passed socket has it
    // already); elsewhere `splice` sets it on each
    if (err === 0 && !shared && INHERITS_NODELAY) err = h.setNoDelay(true);
    // libuv reports EADDRINUSE from listen(), not bind()
    if (err === 0) err = h.listen(4096);
    if (err !== 0) {
      h.close();
      this.#closed = true;
      throw uvError(err, 'listen', address, port);
    }
    h.onconnection = onConnection;
    (h as ServerHandle).listener = this;
    this.#server = h;
  }

  /** the listening socket while open (to pass to worker processes) */
  get handle(): UvTcp | undefined {
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
    const h = this.#server;
    if (!h) return;
    this.#server = undefined;
    (h as ServerHandle).listener = undefined;
    h.close();
  }

  /** @internal */
  accepted(client: UvTcp): void {
    if (this.#closed) {
      client.close();
      return;
    }
    if (this.sourceRanges && !this.sourceRanges.allows(peerAddress(client))) {
      // loadBalancerSourceRanges: a prompt, visible refusal rather than a silent drop
      this.counters.denied++;
      this.log.trace({ svc: this.spec.svc }, 'source not in loadBalancerSourceRanges: reset');
      reset(client);
      return;
    }
    this.counters.accepted++;
    const c = new TcpConn(this, client);
    this.#conns.add(c);
    c.dial();
  }

  /** @internal */
  acceptFailed(status: number): void {
    const now = Date.now();
    if (now - this.#acceptErrorLoggedAt < ACCEPT_ERROR_LOG_MS) return;
    this.#acceptErrorLoggedAt = now;
    // the listener keeps listening; EMFILE: the process is out of file descriptors
    this.log.warn({ svc: this.spec.svc, err: uvError(status, 'accept') }, 'accept failed');
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
    this.counters.bytesIn += c.bytesIn;
    this.counters.bytesOut += c.bytesOut;
    this.#maybeDrained();
  }

  readonly #sweep = (): void => {
    if (this.#dialing.size === 0) return this.#stopSweep();
    const now = Date.now();
    for (const c of this.#dialing) if (now >= c.deadline) c.dialFailed(c.backend, 'dial timeout');
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
}

type ServerHandle = UvTcp & { listener?: TcpListener };
/**
 * A connection's handle: `conn` is the connection (read by the shared callbacks); `own` the
 * handle's own read buffer once it has carried bulk data (see `forward`); `shutting` is set once
 * `shutdown` was called on it (it can no longer be reset, see `reset`).
 */
type ConnHandle = UvTcp & { conn: TcpConn | undefined; own?: Buffer; shutting?: boolean };

interface WriteReq extends UvReq {
  conn: TcpConn | undefined;
  /** the bytes being written: libuv points into them until the write completes */
  chunk: Buffer | undefined;
  /** `chunk` goes back to the pool then */
  pooled: boolean;
  toClient: boolean;
}

/** One proxied connection: dial with retries, then splice. */
class TcpConn {
  readonly l: TcpListener;
  readonly client: ConnHandle;
  backend: ConnHandle | undefined;
  /** the endpoint being dialled, then the one spliced to */
  ep: BalancedEndpoint | undefined;
  /** Date.now() after which the current dial has failed */
  deadline = 0;
  attempt = 0;
  spliced = false;
  /** client → backend bytes, backend → client bytes */
  bytesIn = 0;
  bytesOut = 0;
  /** writes pending to the client / to the backend (each stops reading the other side) */
  pendingToClient = 0;
  pendingToBackend = 0;
  /** EOF read from the client / from the backend */
  clientEof = false;
  backendEof = false;
  /** shutdown of the write side done (or not needed) */
  backendShut = false;
  clientShut = false;
  /** both handles are being closed; the connection is over */
  closing = false;
  openHandles = 1;
  #closed: Promise<void> | undefined;
  #resolveClosed: (() => void) | undefined;

  constructor(l: TcpListener, client: UvTcp) {
    this.l = l;
    this.client = client as ConnHandle;
    this.client.conn = this;
  }

  /** resolves once both handles are closed */
  get closed(): Promise<void> {
    if (this.openHandles === 0) return Promise.resolve();
    this.#closed ??= new Promise<void>((r) => (this.#resolveClosed = r));
    return this.#closed;
  }

  dial(): void {
    const l = this.l;
    // after a failed dial, affinity is bypassed so a dead pinned backend is replaced
    const ep = l.balancer.next(l.balancer.sticky ? peerAddress(this.client) : '', this.attempt > 0);
    if (!ep) {
      l.counters.failed++;
      l.log.trace({ svc: l.spec.svc, portal: l.spec.id }, 'no endpoints: connection reset');
      this.end(true);
      return;
    }
    this.ep = ep;
    const h = new uv.TCP(uv.constants.SOCKET) as ConnHandle;
    h.conn = this;
    this.backend = h;
    this.openHandles++;
    const req = new uv.TCPConnectWrap();
    req.oncomplete = onConnected;
    const err = ep.host.includes(':') ? h.connect6(req, ep.host, ep.port) : h.connect(req, ep.host, ep.port);
    if (err !== 0) {
      this.dialFailed(h, uvError(err, 'connect').code!);
      return;
    }
    this.deadline = Date.now() + l.dialTimeoutsMs[this.attempt]!;
    l.dialStarted(this);
  }

  dialFailed(h: ConnHandle | undefined, why: string): void {
    if (!h || h !== this.backend || this.spliced || this.closing) return;
    const l = this.l;
    l.dialEnded(this);
    const ep = this.ep!;
    ep.failed++;
    l.log.trace({ svc: l.spec.svc, endpoint: ep.id, err: why }, 'dial failed');
    this.backend = undefined;
    h.close(onHandleClosed);
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
    this.end(true);
  }

  splice(): void {
    const b = this.backend!;
    this.l.dialEnded(this);
    this.spliced = true;
    this.ep!.connections++;
    const c = this.client;
    if (!INHERITS_NODELAY) c.setNoDelay(true);
    b.setNoDelay(true);
    c.useUserBuffer(READ_BUF);
    b.useUserBuffer(READ_BUF);
    c.onread = onRead;
    b.onread = onRead;
    if (c.readStart() !== 0 || b.readStart() !== 0) this.end(true);
  }

  /** a write to `toClient ? client : backend` finished; `ok` false: it failed */
  written(toClient: boolean, ok: boolean): void {
    if (this.closing) return;
    if (!ok) return this.end(true);
    if (toClient) {
      if (--this.pendingToClient === 0 && !this.backendEof) this.backend!.readStart();
    } else if (--this.pendingToBackend === 0 && !this.clientEof) this.client.readStart();
  }

  /**
   * EOF from one side: shut the other's write side (libuv sends the FIN after the pending
   * writes). When the other side has ended already and nothing is pending to it, no shutdown is
   * needed: the connection is closed once the first FIN has gone out, and closing sends this
   * one — a shutdown and its two epoll updates saved on every short-lived connection.
   */
  eof(fromClient: boolean): void {
    if (fromClient) this.clientEof = true;
    else this.backendEof = true;
    if (fromClient ? this.backendEof && this.pendingToBackend === 0 : this.clientEof && this.pendingToClient === 0) {
      return this.shut(!fromClient);
    }
    const req = new uv.ShutdownWrap();
    req.oncomplete = onShutdown;
    req.conn = this;
    req.toClient = !fromClient;
    const to = fromClient ? this.backend! : this.client;
    to.shutting = true;
    if (to.shutdown(req) !== 0) this.shut(!fromClient);
  }

  shut(client: boolean): void {
    if (client) this.clientShut = true;
    else this.backendShut = true;
    if (this.clientShut && this.backendShut && this.clientEof && this.backendEof) this.end(false);
  }

  /** ends the connection: both handles closed, with RST when `abort` */
  end(abort: boolean): void {
    if (this.closing) return;
    this.closing = true;
    const l = this.l;
    l.dialEnded(this);
    if (this.spliced) {
      this.ep!.bytesIn += this.bytesIn;
      this.ep!.bytesOut += this.bytesOut;
    }
    const b = this.backend;
    if (b) {
      if (abort) reset(b);
      else b.close(onHandleClosed);
    }
    if (abort) reset(this.client);
    else this.client.close(onHandleClosed);
  }

  handleClosed(): void {
    if (--this.openHandles === 0) {
      this.l.connEnded(this);
      this.#resolveClosed?.();
    }
  }
}

/*
 * The shared read buffer and the chunks data is copied into. Reads up to COPY_MAX are copied
 * into a buffer of exactly their length kept for that length (a write takes a whole buffer), used
 * again as soon as its write completes — at once, usually — so a keep-alive request and its
 * response allocate nothing on the JS heap and do not bring the next scavenge (a GC pause of
 * several ms with a large heap) any closer. Larger reads are copied into a recycled chunk, back
 * in the pool as soon as its write completes. Reusing warm buffers keeps the
 * kernel's copies cheap: a fresh buffer per read (until the GC frees it) cost twice the system
 * time per GB. The size was measured (bench/proxy-ab.ts, bulk through loopback, CPU per GB):
 * 64 KiB was the worst choice (a write of it is one 65,483-byte loopback segment and a 53-byte
 * one), 16 KiB 17 % better, 256 KiB 35 % better (and level with HAProxy), 512 KiB a little more
 * at twice the memory.
 */
const READ_SIZE = 256 * 1024;
const READ_BUF = Buffer.allocUnsafeSlow(READ_SIZE);
const COPY_MAX = 4096;
/**
 * The buffers kept per read length, and their total size (at most EXACT_MAX_BYTES); with each,
 * a view of the first n bytes of READ_BUF to copy from (`Buffer.copy` of a range allocates such a
 * view per call in Node 20; `TypedArray.set` from a kept one allocates nothing).
 */
const exact: Array<Buffer | undefined> = [];
const readViews: Array<Uint8Array | undefined> = [];
let exactBytes = 0;
const EXACT_MAX_BYTES = 1 << 20;
/** recycled chunks kept (4 MiB) */
const POOL_MAX = 16;
/** handles reading into a buffer of their own at most (32 MiB); the others copy (see `forward`) */
const OWN_MAX = 128;
let owned = 0;
const pool: Buffer[] = [];
/** the request object for the next write; replaced only when a write stays pending */
let writeReq: WriteReq;

function newWriteReq(): WriteReq {
  const req = new uv.WriteWrap() as WriteReq;
  req.oncomplete = onWritten;
  req.conn = undefined;
  req.chunk = undefined;
  req.pooled = false;
  req.toClient = false;
  return req;
}

/**
 * Writes the `n` bytes just read by `from` to the other handle. A handle reads into the shared
 * buffer until it carries bulk data (a read over COPY_MAX): from then on it reads into a 256 KiB
 * buffer of its own (OWN_MAX handles at most; the return value sets it), which is written from
 * directly — no copy. That is safe because a pending write stops `from` reading until it
 * completes, so its buffer is never overwritten under a write. The buffer returns to the pool when the handle closes.
 */
function forward(conn: TcpConn, from: ConnHandle, n: number, toClient: boolean): Buffer | undefined {
  const own = from.own;
  let chunk: Buffer;
  let pooled = false;
  let kept = false;
  let next: Buffer | undefined;
  if (own !== undefined) chunk = own;
  else if (n <= COPY_MAX) {
    let c = exact[n];
    if (c === undefined && exactBytes + n <= EXACT_MAX_BYTES) {
      c = exact[n] = Buffer.allocUnsafe(n);
      exactBytes += n;
      readViews[n] ??= READ_BUF.subarray(0, n);
    }
    if (c !== undefined) {
      kept = true;
      c.set(readViews[n]!);
      chunk = c;
    } else {
      chunk = Buffer.allocUnsafe(n);
      READ_BUF.copy(chunk, 0, 0, n);
    }
  } else {
    chunk = pool.pop() ?? Buffer.allocUnsafeSlow(READ_SIZE);
    READ_BUF.copy(chunk, 0, 0, n);
    pooled = true;
    if (owned < OWN_MAX) {
      owned++;
      next = from.own = pool.pop() ?? Buffer.allocUnsafeSlow(READ_SIZE);
    }
  }
  const data = n === chunk.length ? chunk : chunk.subarray(0, n);
  const to = toClient ? conn.client : conn.backend!;
  const req = writeReq;
  const err = to.writeBuffer(req, data);
  if (err !== 0) {
    if (pooled) recycle(chunk);
    conn.end(true);
    return next;
  }
  if (streamState[LAST_WRITE_ASYNC] === 0) {
    if (pooled) recycle(chunk);
    return next;
  }
  // pending: the request keeps the chunk (nothing else does); the other side stops reading until it completes
  if (kept) {
    // no longer free for the next read of this length
    exact[n] = undefined;
    exactBytes -= n;
  }
  writeReq = newWriteReq();
  req.conn = conn;
  req.chunk = chunk;
  req.pooled = pooled;
  req.toClient = toClient;
  if (toClient) {
    if (conn.pendingToClient++ === 0) from.readStop();
  } else if (conn.pendingToBackend++ === 0) from.readStop();
  return next;
}

function recycle(chunk: Buffer): void {
  if (pool.length < POOL_MAX) pool.push(chunk);
}

// ---- callbacks shared by every connection; `this` is the handle or request ----

function onConnection(this: ServerHandle, status: number, client: UvTcp | undefined): void {
  const l = this.listener;
  if (status !== 0 || !client) {
    l?.acceptFailed(status);
    return;
  }
  if (!l) {
    client.close();
    return;
  }
  l.accepted(client);
}

function onConnected(this: UvReq, status: number, handle: ConnHandle): void {
  const conn = handle.conn;
  // a timed-out dial's handle was closed and replaced already
  if (!conn || conn.backend !== handle || conn.closing) return;
  if (status !== 0) conn.dialFailed(handle, uvError(status, 'connect').code!);
  else conn.splice();
}

/** `onread` of both handles of a connection */
function onRead(this: ConnHandle): Buffer | undefined {
  const conn = this.conn;
  if (!conn || conn.closing) return undefined;
  const fromClient = this === conn.client;
  const n = streamState[READ]!;
  if (n > 0) {
    if (fromClient) conn.bytesIn += n;
    else conn.bytesOut += n;
    return forward(conn, this, n, !fromClient);
  }
  if (n === UV_EOF) conn.eof(fromClient);
  else if (n < 0) conn.end(true);
  return undefined;
}

function onWritten(this: WriteReq, status: number): void {
  if (this.pooled) recycle(this.chunk!);
  const conn = this.conn;
  this.conn = undefined;
  this.chunk = undefined;
  this.pooled = false;
  conn?.written(this.toClient, status === 0);
}

function onShutdown(this: UvReq): void {
  const conn = this.conn as TcpConn;
  this.conn = undefined;
  if (!conn.closing) conn.shut(this.toClient as boolean);
}

/** `close()` callback of a connection's handles (libuv calls no read callback after `close`) */
function onHandleClosed(this: ConnHandle): void {
  if (this.own) {
    owned--;
    recycle(this.own);
    this.own = undefined;
  }
  this.conn?.handleClosed();
}

/**
 * Close with RST where possible (a prompt, visible failure for the client). A handle that was
 * shut down is closed plainly: libuv refuses to reset it, and Node then marks it closing anyway,
 * so a `close()` after the failed reset would be ignored and the handle (and its fd) leaked.
 */
function reset(h: ConnHandle | UvTcp): void {
  if ((h as ConnHandle).shutting || h.reset(onHandleClosed) !== 0) h.close(onHandleClosed);
}

function peerAddress(h: UvTcp): string {
  const out: { address?: string } = {};
  h.getpeername(out);
  return out.address ?? '';
}
