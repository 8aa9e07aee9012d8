/**
 * The one file that touches dns2. dns2's UDPServer and TCPServer carry the packets; plain UDP
 * queries take a fast path (our strict parser, pre-encoded answers) before dns2's slower
 * general decoder, which handles everything else. Every dns2 3.1.1 sharp edge is guarded here:
 *
 * - a throw in an async handler becomes an unhandled rejection that kills the process → every
 *   answer runs inside try/catch and every promise is caught; failures answer SERVFAIL;
 * - over TCP `send()` returns undefined, not a Promise → `Promise.resolve(send(r)).catch(…)`;
 * - an unhandled bind error kills the process, and with a listener `listen()` never settles →
 *   we bind the sockets ourselves, racing 'listening' against 'error', with permanent 'error'
 *   listeners;
 * - `tcp: { address }` binds every interface → we call `net.Server.listen({ host })` ourselves;
 *   UDP and TCP get different ephemeral ports → TCP binds the port UDP got (retry on a clash);
 * - TXT strings over 255 bytes are corrupted by its encoder, and its TypeScript types reject
 *   plain-object records → answers are encoded by `wire.ts`, never by dns2;
 * - packets with the response bit set are answered → dropped (TCP: the connection is closed);
 * - `maxConcurrent` leaks a slot per unanswered query → not used;
 * - its idle timeout only half-closes (`end()`): a client that keeps its end open keeps the
 *   descriptor for good → idle connections are destroyed, and the number open is capped
 *   (`net.Server.maxConnections`: over the cap a connection is closed right after accept).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { Logger } from 'pino';
import { Packet, UDPServer, TCPServer } from 'dns2';
import type { InformerFactory } from '../store/informer.js';
import { InformerView } from './view.js';
import { Responder } from './responder.js';
import type { Transport } from './responder.js';
import { Upstream, parseUpstream } from './forward.js';
import { DROP, errorReply, nameToWire, parseQuery } from './wire.js';
import type { Edns, Query } from './wire.js';
import { RCODE, TYPE } from './records.js';
import { ipBytes, isLoopback } from './ip.js';
import { type DataPath, type DataPathPreference, type UvUdp, chooseDataPath, udpHandle, uvError } from '../util/uv.js';
import type { SendReply } from './answer-cache.js';
import { type ConnectionStats, DEFAULT_FD_BUDGET, DNS_TCP_IDLE_TIMEOUT_MS } from '../util/fd-budget.js';

export interface DnsOptions {
  informers: InformerFactory;
  log: Logger;
  /** IP address to bind UDP and TCP on, e.g. `127.0.0.1` */
  address: string;
  /** 1053 by default in the daemon; 0 picks a free port (the same one for UDP and TCP) */
  port: number;
  /** cluster domain, e.g. `cluster.local` */
  zone: string;
  /** TTL of answers in seconds (0…3600) */
  ttl: number;
  /** `ip:port` of a resolver for names outside the zone; without it they are REFUSED */
  upstream?: string;
  /** open DNS/TCP connections at most (default: util/fd-budget.ts); more are closed at once */
  tcpMaxConnections?: number;
  /** idle DNS/TCP connections are destroyed after this long (default 10 s) */
  tcpIdleTimeoutMs?: number;
  /** the UDP hot path on Node's libuv handle (`uv`, where it loads cleanly) or dgram's API (util/uv.ts); default `auto` */
  dataPath?: DataPathPreference;
}

/** Cluster DNS: serves the zone from the Service, Endpoints and Pod informers over UDP and TCP. */
export class DnsServer {
  readonly #log: Logger;
  readonly #zone: string;
  readonly #address: string;
  readonly #view: InformerView;
  readonly #responder: Responder;
  readonly #upstream: Upstream | undefined;
  readonly #binding: Dns2Binding;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;

  constructor(o: DnsOptions) {
    const problems: string[] = [];
    const zone = o.zone.toLowerCase().replace(/^\.+|\.+$/g, '');
    if (!zone || zone.length > 200 || !zone.split('.').every((l) => /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(l))) {
      problems.push(`cluster domain "${o.zone}" is not a DNS name (expected e.g. cluster.local)`);
    }
    if (!Number.isInteger(o.ttl) || o.ttl < 0 || o.ttl > 3600) problems.push(`DNS TTL ${o.ttl} must be a whole number of seconds from 0 to 3600`);
    if (!ipBytes(o.address)) problems.push(`DNS address "${o.address}" is not an IP address (expected e.g. 127.0.0.1)`);
    if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) problems.push(`DNS port ${o.port} must be 0…65535`);
    let upstream: Upstream | undefined;
    try {
      if (o.upstream) upstream = new Upstream({ address: parseUpstream(o.upstream) });
    } catch (err) {
      problems.push((err as Error).message);
    }
    if (problems.length) throw new Error(problems.join('; '));
    this.#log = o.log.child({ component: 'dns' });
    this.#zone = zone;
    this.#address = o.address;
    this.#upstream = upstream;
    this.#view = new InformerView({ informers: o.informers, onChange: () => this.#responder.invalidate() });
    this.#responder = new Responder({
      view: this.#view,
      log: this.#log,
      zone,
      ttl: o.ttl,
      nsAddress: o.address,
      upstream,
    });
    this.#binding = new Dns2Binding({
      log: this.#log,
      address: o.address,
      port: o.port,
      answer: (q, t) => this.#responder.respond(q, t),
      cached: (query, send) => this.#responder.replyCached(query, send),
      tcpIdleTimeoutMs: o.tcpIdleTimeoutMs,
      tcpMaxConnections: o.tcpMaxConnections,
      dataPath: chooseDataPath(o.dataPath ?? 'auto').path,
    });
    if (!isLoopback(o.address)) this.#log.warn({ address: o.address }, 'DNS bound to a non-loopback address: other machines can query it');
  }

  /** the bound UDP and TCP port (0 before start) */
  get port(): number {
    return this.#binding.port;
  }

  /** DNS/TCP connections open now, refused at the cap so far, and the cap */
  tcpStats(): ConnectionStats {
    return this.#binding.tcpStats();
  }

  /** Bind UDP and TCP and start the informers; answers SERVFAIL until they have synced. Idempotent. */
  start(): Promise<void> {
    this.#starting ??= this.#start();
    return this.#starting;
  }

  /** Resolves once every informer has synced (start() must have been called). */
  synced(): Promise<void> {
    return this.#view.start();
  }

  async #start(): Promise<void> {
    if (this.#stopping) throw new Error('DNS server was stopped; create a new one');
    await this.#binding.listen();
    this.#view.start().then(
      () => this.#log.debug('DNS informers synced'),
      (err: unknown) => this.#log.error({ err }, 'DNS informers failed to start: answering SERVFAIL'),
    );
    const upstream = this.#upstream ? `${this.#upstream.address.host}:${this.#upstream.address.port}` : undefined;
    this.#log.info(
      { address: this.#address, port: this.port, zone: this.#zone, upstream },
      `DNS serving ${this.#zone} on ${this.#address}:${this.port} (udp+tcp)`,
    );
  }

  /** Close the sockets (and open TCP connections). Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      await this.#starting?.catch(() => {});
      this.#view.stop();
      this.#upstream?.close();
      await this.#binding.close();
    })();
    return this.#stopping;
  }
}

/** Answers a query; may throw or reject — the binding answers SERVFAIL then. */
export type AnswerFn = (q: Query, transport: Transport) => Buffer | Promise<Buffer>;

export interface BindingOptions {
  log: Logger;
  address: string;
  port: number;
  answer: AnswerFn;
  /**
   * The UDP hot path, tried before anything else: answer a plain query datagram from a cache
   * (true), or leave it to `answer` (false). See answer-cache.ts.
   */
  cached?: (query: Buffer, send: SendReply) => boolean;
  /** idle TCP connections are destroyed after this long (RFC 7766 recommends ≥ 10 s) */
  tcpIdleTimeoutMs?: number;
  /** open TCP connections at most; over it a new one is closed at once */
  tcpMaxConnections?: number;
  /** `uv`: plain queries are answered on the UDP socket's libuv handle; `net`: through dgram; default: `chooseDataPath('auto')` */
  dataPath?: DataPath;
}

type Send = (response: Buffer) => unknown;

/** UDP server whose plain queries skip dns2's general decoder. */
class FastUdpServer extends UDPServer {
  fast: ((data: Buffer, rinfo: dgram.RemoteInfo) => boolean) | undefined;

  override handle(data: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.fast?.(data, rinfo)) return;
    super.handle(data, rinfo);
  }
}

/**
 * dns2's UDP and TCP servers on one address and port, every dns2 pitfall guarded, feeding
 * Queries to an AnswerFn. Exported so tests can prove the guards with failing AnswerFns.
 */
export class Dns2Binding {
  readonly #log: Logger;
  readonly #o: BindingOptions;
  readonly #conns = new Set<net.Socket>();
  readonly #tcpMax: number;
  #tcpRejected = 0;
  #udp: FastUdpServer | undefined;
  #tcp: net.Server | undefined;
  #port = 0;

  constructor(o: BindingOptions) {
    const max = o.tcpMaxConnections ?? DEFAULT_FD_BUDGET.dnsTcpConnections;
    if (!Number.isInteger(max) || max < 1) throw new Error(`DNS TCP connection cap ${max} must be a whole number ≥ 1`);
    this.#o = o;
    this.#log = o.log;
    this.#tcpMax = max;
  }

  get port(): number {
    return this.#port;
  }

  tcpStats(): ConnectionStats {
    return { open: this.#conns.size, rejected: this.#tcpRejected, cap: this.#tcpMax };
  }

  async listen(): Promise<void> {
    const { address } = this.#o;
    const type = address.includes(':') ? 'udp6' : 'udp4';
    for (let attempt = 0; ; attempt++) {
      // bind errors reject below (and are retried or reported); later errors are logged
      const udp = new FastUdpServer({ type });
      try {
        await bindUdp(udp, this.#o.port, address);
      } catch (err) {
        closeQuietly(udp);
        throw bindError(err, address, this.#o.port, 'udp');
      }
      udp.on('error', (err: Error) => this.#log.warn({ err }, 'DNS UDP socket error'));
      const port = udp.address().port;
      const tcp = new TCPServer({ idleTimeout: this.#o.tcpIdleTimeoutMs ?? DNS_TCP_IDLE_TIMEOUT_MS } as unknown as ConstructorParameters<typeof TCPServer>[0]);
      tcp.maxConnections = this.#tcpMax;
      try {
        await listenTcp(tcp, port, address);
      } catch (err) {
        closeQuietly(udp);
        // port 0: UDP's free port may be taken for TCP; try another
        if (this.#o.port === 0 && (err as NodeJS.ErrnoException).code === 'EADDRINUSE' && attempt < 20) continue;
        throw bindError(err, address, port, 'tcp');
      }
      tcp.on('error', (err: Error) => this.#log.warn({ err }, 'DNS TCP server error'));
      this.#wire(udp, tcp);
      this.#udp = udp;
      this.#tcp = tcp;
      this.#port = port;
      return;
    }
  }

  async close(): Promise<void> {
    const udp = this.#udp;
    const tcp = this.#tcp;
    this.#udp = undefined;
    this.#tcp = undefined;
    for (const c of this.#conns) c.destroy();
    this.#conns.clear();
    await Promise.all([
      udp && new Promise<void>((resolve) => {
        try {
          udp.close(() => resolve());
        } catch {
          resolve();
        }
      }),
      tcp && new Promise<void>((resolve) => tcp.close(() => resolve())),
    ]);
  }

  #wire(udp: FastUdpServer, tcp: net.Server): void {
    const raw = (this.#o.dataPath ?? chooseDataPath('auto').path) === 'uv' ? udpHandle(udp) : undefined;
    const cached = this.#o.cached;
    const log = this.#log;
    /** the cache path first (answer-cache.ts); a throw there must not take the daemon down */
    const fromCache = (data: Buffer, sendReply: SendReply): boolean => {
      try {
        return cached?.(data, sendReply) ?? false;
      } catch (err) {
        log.debug({ err }, 'DNS cache path failed: the general path answers');
        return false;
      }
    };
    if (raw) {
      // The hot path skips dgram too: its handle's message callback answers plain queries
      // itself and sends on the handle (dgram's send() costs a lookup, a nextTick and a bound
      // function per datagram: measured, a bare echo answers 14 % more queries this way). Anything
      // else goes on to dgram's own callback and so to dns2, as before.
      const { handle, SendWrap } = raw;
      let req = new SendWrap();
      let list: Buffer[] = [];
      /** true while the kernel still holds `b` (the send is pending) */
      const sendRaw = (b: Buffer, port: number, address: string): boolean => {
        list[0] = b;
        const err = handle.send(req, list, 1, port, address, false);
        if (err === 0) {
          // pending: this request (and the bytes) stay in use until the kernel takes them
          req.list = list;
          req = new SendWrap();
          list = [];
          return true;
        }
        if (err < 0) this.#log.debug({ err: uvError(err, 'send', address, port) }, 'DNS reply could not be sent');
        return false;
      };
      const send = (b: Buffer, port: number, address: string): void => void sendRaw(b, port, address);
      let port = 0;
      let address = '';
      const sendCached = (b: Buffer): boolean => sendRaw(b, port, address);
      const dgramOnMessage = handle.onmessage;
      const fast = (data: Buffer, port: number, address: string): boolean => this.#fast(data, port, address, send);
      handle.onmessage = function (this: UvUdp, nread, h, buf, rinfo) {
        if (nread > 0) {
          port = rinfo.port;
          address = rinfo.address;
          if (fromCache(buf, sendCached) || fast(buf, port, address)) return;
        }
        dgramOnMessage.call(this, nread, h, buf, rinfo);
      };
    } else {
      const send = (b: Buffer, port: number, address: string): void => udp.send(b, port, address);
      udp.fast = (data, rinfo) => {
        const sendCached = (b: Buffer): boolean => {
          send(b, rinfo.port, rinfo.address);
          return true; // dgram keeps the buffer until it is sent
        };
        return fromCache(data, sendCached) || this.#fast(data, rinfo.port, rinfo.address, send);
      };
    }
    const onRequest = (req: Packet, send: Send, client: unknown): void => this.#slow(req, send, client);
    const onRequestError = (err: Error): void => this.#log.trace({ err }, 'undecodable DNS message dropped');
    udp.on('request', onRequest);
    udp.on('requestError', onRequestError);
    tcp.on('request', onRequest);
    tcp.on('requestError', onRequestError);
    tcp.on('connection', (s: net.Socket) => {
      this.#conns.add(s);
      s.on('close', () => this.#conns.delete(s));
      // dns2 only half-closes at its idle timeout; a peer that keeps its end would keep the fd
      s.on('timeout', () => s.destroy());
    });
    let warned = 0;
    tcp.on('drop', () => {
      this.#tcpRejected++;
      // one line per minute at most: a flood must not become a flood of log lines
      if (Date.now() - warned > 60_000) {
        warned = Date.now();
        this.#log.warn({ cap: this.#tcpMax, rejected: this.#tcpRejected }, `DNS over TCP is at its cap of ${this.#tcpMax} connections: new ones are closed (raise --dns-tcp-max-connections if clients are legitimate)`);
      }
    });
  }

  /** The UDP fast path: true when the packet was dealt with (answered or dropped). */
  #fast(data: Buffer, port: number, address: string, send: (b: Buffer, port: number, address: string) => void): boolean {
    let q: ReturnType<typeof parseQuery>;
    try {
      q = parseQuery(data);
    } catch {
      return false;
    }
    if (q === DROP) return true;
    if (q === undefined) return false;
    let r: Buffer | Promise<Buffer>;
    try {
      r = this.#o.answer(q, 'udp');
    } catch (err) {
      r = Promise.reject(err);
    }
    // the hot path: a cached answer, sent at once (a failed send is logged at debug, or surfaces as the socket's 'error' on the dgram path)
    if (Buffer.isBuffer(r)) send(r, port, address);
    else this.#settle(q, r, (b) => send(b, port, address));
    return true;
  }

  /** dns2's decoded path: everything the fast path declined, and all of TCP. */
  #slow(req: Packet, send: Send, client: unknown): void {
    const tcp = client instanceof net.Socket;
    const reply = (b: Buffer): void => {
      // over TCP send() returns undefined, over UDP a Promise: handle both, never let it throw
      Promise.resolve()
        .then(() => send(b))
        .catch((err: unknown) => {
          this.#log.debug({ err }, 'DNS reply could not be sent');
          if (tcp) client.destroy();
        });
    };
    try {
      const h = req.header;
      if (h.qr) {
        // a response, not a query: never answer it (and do not keep a TCP peer that sends them)
        if (tcp) client.destroy();
        return;
      }
      const opts = req.additionals.filter((r) => r && r.type === TYPE.OPT);
      const opt0 = opts[0] as unknown as { class?: number; version?: number; doFlag?: boolean } | undefined;
      const edns: Edns | undefined = opt0 ? { size: opt0.class ?? 512, version: opt0.version ?? 0, do: !!opt0.doFlag } : undefined;
      const base = { id: h.id, opcode: h.opcode, rd: !!h.rd, cd: !!(h as { cd?: number }).cd, edns };
      if (h.opcode !== 0) return reply(errorReply(base, RCODE.NOTIMP));
      const question = req.questions.length === 1 ? req.questions[0] : undefined;
      let qname: Buffer | undefined;
      try {
        qname = question ? nameToWire(String(question.name ?? '')) : undefined;
      } catch {
        qname = undefined;
      }
      if (!question || !qname || req.errors.length > 0 || opts.length > 1) {
        return reply(errorReply(question && qname ? { ...base, qname, qtype: question.type, qclass: question.class } : base, RCODE.FORMERR));
      }
      const q: Query = { ...base, qname, qtype: Number(question.type), qclass: Number(question.class) };
      this.#answer(q, tcp ? 'tcp' : 'udp', reply);
    } catch (err) {
      this.#log.error({ err }, 'DNS request handling failed');
      if (tcp) client.destroy();
    }
  }

  /** Run the AnswerFn and reply with its bytes, or with SERVFAIL when it throws or rejects. */
  #answer(q: Query, transport: Transport, reply: (b: Buffer) => void): void {
    let r: Buffer | Promise<Buffer>;
    try {
      r = this.#o.answer(q, transport);
    } catch (err) {
      r = Promise.reject(err);
    }
    if (!Buffer.isBuffer(r)) return this.#settle(q, r, reply);
    try {
      reply(r);
    } catch (err) {
      this.#log.debug({ err }, 'DNS reply could not be sent');
    }
  }

  /** Reply once an async answer settles: its bytes, or SERVFAIL. Never rejects. */
  #settle(q: Query, pending: Promise<Buffer>, reply: (b: Buffer) => void): void {
    Promise.resolve(pending)
      .then((b) => {
        if (!Buffer.isBuffer(b)) throw new Error('DNS answer was not bytes');
        reply(b);
      })
      .catch((err: unknown) => {
        this.#log.error({ err, qtype: q.qtype }, 'DNS answer failed: replied SERVFAIL');
        try {
          reply(errorReply(q, RCODE.SERVFAIL));
        } catch (e) {
          this.#log.error({ err: e }, 'DNS SERVFAIL reply failed');
        }
      });
  }
}

function bindUdp(s: dgram.Socket, port: number, address: string): Promise<void> {
  return listening(s, () => s.bind({ port, address, exclusive: true }));
}

function listenTcp(s: net.Server, port: number, host: string): Promise<void> {
  return listening(s, () => s.listen({ port, host, exclusive: true }));
}

/** Resolves on 'listening', rejects on the first 'error' (an unhandled EADDRINUSE would crash). */
function listening(s: dgram.Socket | net.Server, start: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      s.off('listening', onListening);
      reject(err);
    };
    const onListening = (): void => {
      s.off('error', onError);
      resolve();
    };
    s.once('error', onError);
    s.once('listening', onListening);
    start();
  });
}

function closeQuietly(s: dgram.Socket): void {
  try {
    s.close();
  } catch {
    // never bound: nothing to close
  }
}

/** A bind failure as an error that names the fix. */
function bindError(err: unknown, address: string, port: number, proto: 'udp' | 'tcp'): Error {
  const code = (err as NodeJS.ErrnoException).code;
  const where = `cannot bind DNS on ${address}:${port}/${proto}`;
  const msg =
    code === 'EADDRINUSE'
      ? `${where}: address already in use — stop the other DNS server or choose another port with --dns-addr`
      : code === 'EACCES'
        ? `${where}: permission denied — ports below 1024 need root or CAP_NET_BIND_SERVICE; use a port ≥ 1024 (default 1053)`
        : code === 'EADDRNOTAVAIL'
          ? `${where}: address not available on this machine — use a loopback address such as 127.0.0.1`
          : `${where}: ${(err as Error).message}`;
  const out = new Error(msg, { cause: err });
  (out as NodeJS.ErrnoException).code = code;
  return out;
}
