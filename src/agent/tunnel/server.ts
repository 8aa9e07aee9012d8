/**
 * The node's tunnel port: HTTP/2 over TLS on the node's address, where other nodes reach this
 * node's pods. Two requests only (RFC 9113 §8.5 CONNECT, RFC 9298 CONNECT-UDP over HTTP/2):
 *
 *   :method CONNECT  :authority 127.245.0.7:8080                      → a TCP stream to that pod port
 *   :method CONNECT  :protocol connect-udp
 *                    :path /.well-known/masque/udp/127.245.0.7/53/    → UDP datagrams as capsules (capsule.ts)
 *
 * Mutual TLS: the client must present a certificate signed by the cluster CA naming a node of
 * the cluster (`isPeer`: CN system:node:<name>, O system:nodes), else every request gets 403. The target must be a declared
 * containerPort of a running pod of this node (`allow`), else 403: it is never an open proxy.
 * A dial that fails is a 502 with a Proxy-Status header (RFC 9209: `kubeloop; error=connection_refused`,
 * `connection_timeout` or `destination_unavailable`). UDP streams end after `udpIdleTimeoutMs` without traffic.
 *
 * Bounds, so strangers on the node's network and a flood from a peer cannot take the daemon's
 * descriptors (util/fd-budget.ts) or its event loop:
 *  - connections that are not a peer's yet (TLS handshake not done, or no node certificate) are
 *    at most UNAUTHENTICATED_CONNECTIONS: one more closes the oldest of them; one that finished
 *    its handshake without a node certificate gets its 403s for UNAUTHENTICATED_TTL_MS, then is closed;
 *  - pod connections and UDP flows open at once through the tunnel, all peers together, are at
 *    most `maxStreams` (default DEFAULT_MAX_STREAMS): one more gets 503 (the client retries).
 */
import dgram from 'node:dgram';
import http2, { type Http2SecureServer, type IncomingHttpHeaders, type ServerHttp2Stream, type ServerHttp2Session } from 'node:http2';
import net from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { StrangerCap } from '../../util/stranger-cap.js';
import { CapsuleParser, encodeDatagram } from './capsule.js';
import type { Protocol } from './targets.js';

/** a certificate subject as Node's TLS gives it (a field is an array when it repeats) */
export type PeerSubject = Record<string, string | string[] | undefined>;

export const UDP_PATH_PREFIX = '/.well-known/masque/udp/';
/** flow-control windows large enough for bulk transfers over a LAN */
export const STREAM_WINDOW = 4 << 20;
export const SESSION_WINDOW = 32 << 20;
/** a UDP stream whose peer stops reading is not buffered for without bound: datagrams over this are dropped */
const UDP_BUFFER_LIMIT = 1 << 20;
const DIAL_TIMEOUT_MS = 5000;
/** connections without a verified node certificate kept at once (as the API's strangers' share) */
export const UNAUTHENTICATED_CONNECTIONS = 64;
const UNAUTHENTICATED_TTL_MS = 5000;
/** pod connections and UDP flows open at once through this node's tunnel */
export const DEFAULT_MAX_STREAMS = 4096;

export interface TunnelServerOptions {
  log: Logger;
  address: string;
  port: number;
  /** this node's certificate and key, and the cluster CA client certificates must chain to */
  tls: { cert: string; key: string; ca: string };
  /** is the subject of a client certificate that verified against the CA a node of the cluster? */
  isPeer(subject: PeerSubject): boolean;
  /** may ip:port/protocol be dialed? (a running pod of this node declares that port) */
  allow(ip: string, port: number, protocol: Protocol): boolean;
  udpIdleTimeoutMs: number;
  /** pod connections and UDP flows open at once (default DEFAULT_MAX_STREAMS) */
  maxStreams?: number;
}

/** `/.well-known/masque/udp/{host}/{port}/` → host and port (IPv4 only), or undefined */
export function parseUdpPath(path: string | undefined): { ip: string; port: number } | undefined {
  if (!path?.startsWith(UDP_PATH_PREFIX)) return undefined;
  const m = /^([0-9.]+)\/(\d{1,5})\/?$/.exec(path.slice(UDP_PATH_PREFIX.length));
  if (!m || net.isIP(m[1]) !== 4 || Number(m[2]) < 1 || Number(m[2]) > 65535) return undefined;
  return { ip: m[1], port: Number(m[2]) };
}

/** `127.0.0.5:8080` → host and port (IPv4 only), or undefined */
export function parseAuthority(a: string | undefined): { ip: string; port: number } | undefined {
  const m = /^([0-9.]+):(\d{1,5})$/.exec(a ?? '');
  if (!m || net.isIP(m[1]) !== 4 || Number(m[2]) < 1 || Number(m[2]) > 65535) return undefined;
  return { ip: m[1], port: Number(m[2]) };
}

export class TunnelServer {
  readonly #o: TunnelServerOptions;
  readonly #log: Logger;
  readonly #sessions = new Set<ServerHttp2Session>();
  /** the verified client certificate's subject of each session, read once (it cannot change within a session) */
  readonly #subjects = new WeakMap<ServerHttp2Session, PeerSubject | null>();
  readonly #open = new Set<{ destroy(): void }>();
  /** sockets not (yet) a peer's, oldest first */
  readonly #strangers = new StrangerCap(UNAUTHENTICATED_CONNECTIONS, () => this.stats.strangersClosed++);
  #server: Http2SecureServer | undefined;
  #port = 0;
  /** counters for tests and the bench */
  readonly stats = { tcp: 0, udp: 0, refused: 0, unauthenticated: 0, busy: 0, strangersClosed: 0 };

  constructor(o: TunnelServerOptions) {
    this.#o = o;
    this.#log = o.log.child({ component: 'tunnel' });
  }

  get port(): number {
    return this.#port;
  }

  async start(): Promise<void> {
    const server = http2.createSecureServer({
      cert: this.#o.tls.cert,
      key: this.#o.tls.key,
      ca: this.#o.tls.ca,
      // verified against the cluster CA; an unverified client is answered 403 per request (not a TLS alert)
      requestCert: true,
      rejectUnauthorized: false,
      handshakeTimeout: 10_000,
      settings: { enableConnectProtocol: true, initialWindowSize: STREAM_WINDOW, maxConcurrentStreams: 10_000 },
      maxSessionMemory: 64,
    });
    server.on('connection', (sock: net.Socket) => this.#strangers.add(sock));
    server.on('secureConnection', (sock: TLSSocket) => {
      // small frames (headers, a request, a FIN) go out at once: Nagle would hold them for the peer's delayed ACK
      sock.setNoDelay(true);
      // a peer's connection stops counting as a stranger's
      if (this.#isPeerSocket(sock)) {
        this.#strangers.trust(sock);
      } else {
        // a few 403s to say why, then closed
        setTimeout(() => sock.destroy(), UNAUTHENTICATED_TTL_MS).unref();
      }
    });
    server.on('session', (s) => {
      this.#sessions.add(s);
      s.once('close', () => this.#sessions.delete(s));
      s.on('error', () => s.destroy());
      try {
        s.setLocalWindowSize(SESSION_WINDOW);
      } catch {
        s.once('connect', () => s.setLocalWindowSize(SESSION_WINDOW));
      }
      // a session silent for a minute (no frames, not even the client's pings) is closed
      // gracefully: its open streams finish, new ones need a new session
      s.setTimeout(60_000, () => s.close());
    });
    server.on('stream', (stream, headers) => this.#stream(stream, headers));
    server.on('tlsClientError', () => {});
    server.on('sessionError', () => {});
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#o.port, this.#o.address, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.#log.error({ err }, 'tunnel server error'));
    this.#server = server;
    this.#port = (server.address() as net.AddressInfo).port;
    this.#log.info({ address: this.#o.address, port: this.#port }, 'tunnel listening');
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const o of this.#open) o.destroy();
    for (const s of this.#sessions) s.destroy();
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  #isPeerSocket(sock: TLSSocket | undefined): boolean {
    const subject = sock?.authorized ? (sock.getPeerCertificate?.()?.subject as PeerSubject | undefined) : undefined;
    return !!subject && this.#o.isPeer(subject);
  }

  /** room for one more pod connection or UDP flow? (else a 503) */
  #room(stream: ServerHttp2Stream): boolean {
    const max = this.#o.maxStreams ?? DEFAULT_MAX_STREAMS;
    if (this.#open.size < max) return true;
    this.stats.busy++;
    this.#refuse(stream, 503, `this node's tunnel has ${max} connections to its pods open (its cap): try again later`);
    return false;
  }

  #refuse(stream: ServerHttp2Stream, status: number, message: string, extra: Record<string, string> = {}): void {
    if (stream.destroyed || stream.headersSent) return;
    stream.respond({ ':status': status, 'content-type': 'text/plain; charset=utf-8', ...extra });
    stream.end(`${message}\n`);
  }

  #subject(session: ServerHttp2Session | undefined): PeerSubject | undefined {
    if (!session) return undefined;
    let subject = this.#subjects.get(session);
    if (subject === undefined) {
      const sock = session.socket as TLSSocket | undefined;
      subject = (sock?.authorized ? (sock.getPeerCertificate?.()?.subject as PeerSubject | undefined) : undefined) ?? null;
      this.#subjects.set(session, subject);
    }
    return subject ?? undefined;
  }

  #stream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', () => {});
    // isPeer is asked per stream (a Node deleted meanwhile is refused), the certificate read once per session
    const subject = this.#subject(stream.session as ServerHttp2Session | undefined);
    if (!subject || !this.#o.isPeer(subject)) {
      this.stats.unauthenticated++;
      this.#refuse(stream, 403, "the tunnel serves other nodes only: present a node's tunnel certificate signed by the cluster CA");
      // nothing else for this client on this session
      stream.once('close', () => stream.session?.close());
      return;
    }
    if (headers[':method'] !== 'CONNECT') return this.#refuse(stream, 405, 'only CONNECT (TCP) and CONNECT-UDP are served here');
    const udp = headers[':protocol'];
    if (udp !== undefined) {
      const t = udp === 'connect-udp' ? parseUdpPath(headers[':path']) : undefined;
      if (!t) return this.#refuse(stream, 400, `a CONNECT-UDP request needs :protocol connect-udp and :path ${UDP_PATH_PREFIX}{ipv4}/{port}/`);
      if (!this.#o.allow(t.ip, t.port, 'UDP')) {
        this.stats.refused++;
        return this.#refuse(stream, 403, `${t.ip}:${t.port}/UDP is not a port of a pod on this node`);
      }
      if (!this.#room(stream)) return;
      return this.#udp(stream, t.ip, t.port);
    }
    const t = parseAuthority(headers[':authority']);
    if (!t) return this.#refuse(stream, 400, 'CONNECT needs :authority IPV4:PORT');
    if (!this.#o.allow(t.ip, t.port, 'TCP')) {
      this.stats.refused++;
      this.#log.debug({ target: `${t.ip}:${t.port}` }, 'tunnel refused a target that is not a pod port of this node');
      return this.#refuse(stream, 403, `${t.ip}:${t.port} is not a port of a pod on this node`);
    }
    if (!this.#room(stream)) return;
    this.#tcp(stream, t.ip, t.port);
  }

  #tcp(stream: ServerHttp2Stream, ip: string, port: number): void {
    this.stats.tcp++;
    const up = net.connect({ host: ip, port, allowHalfOpen: true });
    const entry = { destroy: () => (up.destroy(), stream.destroy()) };
    this.#open.add(entry);
    up.setTimeout(DIAL_TIMEOUT_MS, () => up.destroy(new Error('connect timeout')));
    up.once('connect', () => {
      up.setTimeout(0);
      up.setNoDelay(true);
      if (stream.destroyed) return up.destroy();
      stream.respond({ ':status': 200 });
      up.pipe(stream);
      stream.pipe(up);
    });
    up.on('error', (err) => {
      // what the dial met, as RFC 9209 names it: the other node mirrors a refusal (listeners.ts)
      const code = (err as NodeJS.ErrnoException).code;
      const error = code === 'ECONNREFUSED' ? 'connection_refused' : err.message === 'connect timeout' ? 'connection_timeout' : 'destination_unavailable';
      if (!stream.headersSent) this.#refuse(stream, 502, `dialing ${ip}:${port}: ${err.message}`, { 'proxy-status': `kubeloop; error=${error}` });
      else stream.close(http2.constants.NGHTTP2_CONNECT_ERROR);
    });
    up.once('close', () => {
      this.#open.delete(entry);
      if (!stream.destroyed && stream.headersSent && !stream.writableEnded) stream.end();
    });
    stream.once('close', () => {
      // a reset stream: the connection to the pod is cut, not finished
      if (stream.rstCode && stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) up.destroy();
      else if (!up.writableEnded) up.end();
    });
  }

  #udp(stream: ServerHttp2Stream, ip: string, port: number): void {
    this.stats.udp++;
    const sock = dgram.createSocket('udp4');
    let timer: NodeJS.Timeout | undefined;
    const close = (): void => {
      clearTimeout(timer);
      this.#open.delete(entry);
      try {
        sock.close();
      } catch {
        // closed already
      }
      if (!stream.destroyed) stream.close();
    };
    const entry = { destroy: close };
    this.#open.add(entry);
    const touch = (): void => {
      clearTimeout(timer);
      timer = setTimeout(close, this.#o.udpIdleTimeoutMs);
      timer.unref();
    };
    touch();
    sock.on('error', close);
    sock.connect(port, ip, () => {
      if (stream.destroyed) return close();
      stream.respond({ ':status': 200, 'capsule-protocol': '?1' });
      sock.on('message', (msg) => {
        touch();
        if (stream.writableLength > UDP_BUFFER_LIMIT) return;
        stream.write(encodeDatagram(msg));
      });
      const parser = new CapsuleParser((payload) => {
        touch();
        sock.send(payload, (err) => err && this.#log.debug({ err }, 'tunnel UDP send'));
      });
      stream.on('data', (chunk: Buffer) => {
        if (!parser.push(chunk)) stream.close(http2.constants.NGHTTP2_PROTOCOL_ERROR);
      });
    });
    stream.once('close', close);
  }
}
