import dgram from 'node:dgram';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import type { Endpoint, RoundRobin } from './round-robin.js';
import type { SourceRanges } from './source-ranges.js';
import { type Listener, type ListenerCounters, type PortalSpec, newCounters } from './portal.js';

export interface UdpListenerOptions {
  spec: PortalSpec;
  balancer: RoundRobin;
  /** a flow is closed after this long without a datagram either way */
  idleTimeoutMs: number;
  log: Logger;
  /** bound on concurrent flows (each holds a socket); new clients beyond it are dropped */
  maxFlows?: number;
  /** datagrams from clients outside these ranges are dropped */
  sourceRanges?: SourceRanges;
}

const DEFAULT_MAX_FLOWS = 4096;
/** datagrams held per flow while its backend socket is being set up */
const MAX_QUEUED = 64;

/**
 * A real UDP socket on one portal. Each client `ip:port` is a flow with its own connected
 * socket to the endpoint chosen for its first datagram (round robin / ClientIP affinity);
 * replies leave from the portal socket. Datagrams up to 64 KiB pass whole.
 */
export class UdpListener implements Listener {
  readonly spec: PortalSpec;
  readonly counters: ListenerCounters = newCounters();
  readonly balancer: RoundRobin;
  readonly idleTimeoutMs: number;
  readonly log: Logger;
  readonly socket: dgram.Socket;
  sourceRanges: SourceRanges | undefined;
  readonly #maxFlows: number;
  /** client address → client port → flow (no per-datagram key strings) */
  readonly #flows = new Map<string, Map<number, UdpFlow>>();
  #active = 0;
  #closed = false;
  #limitLogged = false;

  constructor(o: UdpListenerOptions) {
    this.spec = o.spec;
    this.balancer = o.balancer;
    this.idleTimeoutMs = o.idleTimeoutMs;
    this.log = o.log;
    this.#maxFlows = o.maxFlows ?? DEFAULT_MAX_FLOWS;
    this.sourceRanges = o.sourceRanges;
    this.socket = dgram.createSocket({ type: isIP(o.spec.address) === 6 ? 'udp6' : 'udp4' });
  }

  get active(): number {
    return this.#active;
  }

  open(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => {
        this.socket.removeListener('listening', onListening);
        this.#closed = true;
        try {
          this.socket.close();
        } catch {
          // already closed
        }
        reject(err);
      };
      const onListening = (): void => {
        this.socket.removeListener('error', onError);
        this.socket.on('error', (err) => this.log.debug({ svc: this.spec.svc, err }, 'udp socket error'));
        this.socket.on('message', this.#onMessage);
        resolve();
      };
      this.socket.once('error', onError);
      this.socket.once('listening', onListening);
      this.socket.bind({ address: this.spec.address, port: this.spec.port, exclusive: true });
    });
  }

  /** UDP has nothing to drain: closing the portal ends its flows (upstream: "existing connections are broken"). */
  close(): Promise<void> {
    return this.destroy();
  }

  async destroy(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const byPort of this.#flows.values()) for (const f of byPort.values()) f.close();
    this.#flows.clear();
    await new Promise<void>((resolve) => {
      try {
        this.socket.close(() => resolve());
      } catch {
        resolve();
      }
    });
  }

  /** @internal */
  flowEnded(f: UdpFlow): void {
    const byPort = this.#flows.get(f.clientAddress);
    if (byPort?.get(f.clientPort) === f) {
      byPort.delete(f.clientPort);
      if (byPort.size === 0) this.#flows.delete(f.clientAddress);
    }
    this.#active--;
  }

  readonly #onMessage = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    if (this.#closed) return;
    if (this.sourceRanges && !this.sourceRanges.allows(rinfo.address)) {
      this.counters.denied++;
      return;
    }
    let byPort = this.#flows.get(rinfo.address);
    let flow = byPort?.get(rinfo.port);
    if (!flow) {
      if (this.#active >= this.#maxFlows) {
        this.counters.failed++;
        if (!this.#limitLogged) {
          this.#limitLogged = true;
          this.log.warn({ svc: this.spec.svc, maxFlows: this.#maxFlows }, 'too many UDP flows: new clients dropped');
        }
        return;
      }
      const ep = this.balancer.next(rinfo.address);
      if (!ep) {
        this.counters.failed++;
        this.log.trace({ svc: this.spec.svc }, 'no endpoints: datagram dropped');
        return;
      }
      flow = new UdpFlow(this, rinfo.address, rinfo.port, ep);
      if (!byPort) this.#flows.set(rinfo.address, (byPort = new Map()));
      byPort.set(rinfo.port, flow);
      this.#active++;
      this.counters.accepted++;
    }
    this.counters.bytesIn += msg.length;
    flow.toBackend(msg);
  };
}

/** One client's flow: a socket connected to its endpoint, closed after idling. */
class UdpFlow {
  readonly clientAddress: string;
  readonly clientPort: number;
  readonly #l: UdpListener;
  readonly #backend: dgram.Socket;
  readonly #timer: NodeJS.Timeout;
  #queue: Buffer[] | undefined = [];
  #closed = false;

  constructor(l: UdpListener, clientAddress: string, clientPort: number, ep: Endpoint) {
    this.#l = l;
    this.clientAddress = clientAddress;
    this.clientPort = clientPort;
    const v6 = isIP(ep.host) === 6;
    this.#backend = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4' });
    this.#backend.on('error', this.#onError);
    this.#backend.on('message', this.#onReply);
    // loopback endpoints are reached from a loopback-bound socket: nothing listens beyond lo
    const local = isLoopback(ep.host) ? (v6 ? '::1' : '127.0.0.1') : undefined;
    if (local) this.#backend.bind({ port: 0, address: local, exclusive: true });
    this.#backend.connect(ep.port, ep.host, this.#onConnect);
    this.#timer = setTimeout(this.close, l.idleTimeoutMs);
  }

  toBackend(msg: Buffer): void {
    this.#timer.refresh();
    if (this.#queue) {
      if (this.#queue.length < MAX_QUEUED) this.#queue.push(msg);
      return;
    }
    this.#backend.send(msg);
  }

  readonly close = (): void => {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#queue = undefined;
    try {
      this.#backend.close();
    } catch {
      // already closed
    }
    this.#l.flowEnded(this);
  };

  readonly #onConnect = (): void => {
    if (this.#closed) return;
    const q = this.#queue ?? [];
    this.#queue = undefined;
    for (const m of q) this.#backend.send(m);
  };

  readonly #onReply = (msg: Buffer): void => {
    if (this.#closed) return;
    this.#timer.refresh();
    this.#l.counters.bytesOut += msg.length;
    this.#l.socket.send(msg, this.clientPort, this.clientAddress);
  };

  readonly #onError = (err: Error): void => {
    // ECONNREFUSED (ICMP port unreachable) and the like: the next datagram starts a new flow
    this.#l.log.trace({ svc: this.#l.spec.svc, err: err.message }, 'udp flow error');
    this.close();
  };
}

function isLoopback(ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1';
}
