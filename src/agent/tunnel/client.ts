/**
 * This node's side of other nodes' tunnels: one HTTP/2 session per peer (its Node's address and
 * published tunnel port), many CONNECT streams on it. The TLS handshake presents this node's
 * certificate, and the peer's must chain to the cluster CA, name the peer's address, and be that
 * node's (CN system:node:<name>), checked before a single request is sent. A session that stops
 * answering pings is dropped.
 */
import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import tls, { type PeerCertificate } from 'node:tls';
import type { Logger } from 'pino';
import { SESSION_WINDOW, STREAM_WINDOW, UDP_PATH_PREFIX } from './server.js';

export interface Peer {
  node: string;
  address: string;
  port: number;
}

const PING_EVERY_MS = 10_000;
const PING_TIMEOUT_MS = 5_000;
const CONNECT_TIMEOUT_MS = 5_000;

interface Entry {
  session: Promise<ClientHttp2Session>;
  live?: ClientHttp2Session;
}

export class TunnelClient {
  readonly #tls: { cert: string; key: string; ca: string };
  readonly #log: Logger;
  readonly #sessions = new Map<string, Entry>();
  /** nodes whose tunnel the last attempt could not reach (until a session is up again) */
  readonly #down = new Set<string>();
  readonly #onPeer: ((node: string, up: boolean) => void) | undefined;
  #closed = false;

  constructor(o: { tls: { cert: string; key: string; ca: string }; log: Logger; /** a node's tunnel turned unreachable (false) or reachable again (true) */ onPeer?(node: string, up: boolean): void }) {
    this.#tls = o.tls;
    this.#log = o.log.child({ component: 'tunnel-client' });
    this.#onPeer = o.onPeer;
  }

  /** did the last attempt to reach this node's tunnel fail (and none succeeded since)? */
  peerDown(node: string): boolean {
    return this.#down.has(node);
  }

  /** the nodes whose tunnel could not be reached at the last attempt */
  downNodes(): string[] {
    return [...this.#down];
  }

  /** tries to (re)open the session to `peer` now; the outcome is reported through onPeer */
  probe(peer: Peer): void {
    this.#session(peer).catch(() => undefined);
  }

  /** a TCP stream to ip:port on `peer` (bytes flow once the peer answers 200; any other answer ends it) */
  async tcp(peer: Peer, ip: string, port: number): Promise<ClientHttp2Stream> {
    const s = await this.#session(peer);
    return s.request({ ':method': 'CONNECT', ':authority': `${ip}:${port}` }, { endStream: false });
  }

  /** a CONNECT-UDP stream to ip:port on `peer`: capsules both ways (capsule.ts) */
  async udp(peer: Peer, ip: string, port: number): Promise<ClientHttp2Stream> {
    const s = await this.#session(peer);
    return s.request(
      { ':method': 'CONNECT', ':protocol': 'connect-udp', ':scheme': 'https', ':path': `${UDP_PATH_PREFIX}${ip}/${port}/`, ':authority': `${peer.address}:${peer.port}`, 'capsule-protocol': '?1' },
      { endStream: false },
    );
  }

  close(): void {
    this.#closed = true;
    for (const e of this.#sessions.values()) e.live?.destroy();
    this.#sessions.clear();
  }

  #session(peer: Peer): Promise<ClientHttp2Session> {
    if (this.#closed) return Promise.reject(new Error('tunnel client closed'));
    const key = `${peer.node}@${peer.address}:${peer.port}`;
    const have = this.#sessions.get(key);
    if (have && (!have.live || (!have.live.closed && !have.live.destroyed))) return have.session;
    const entry: Entry = { session: this.#connect(peer, key) };
    this.#sessions.set(key, entry);
    entry.session.then(
      (s) => {
        entry.live = s;
        if (this.#down.delete(peer.node)) this.#onPeer?.(peer.node, true);
      },
      (err: Error) => {
        if (this.#sessions.get(key) === entry) this.#sessions.delete(key);
        if (this.#closed || this.#down.has(peer.node)) return;
        this.#down.add(peer.node);
        this.#log.info({ peer: peer.node, err: err.message }, `node ${peer.node}'s tunnel cannot be reached: its pods' ports are not answered here until it can`);
        this.#onPeer?.(peer.node, false);
      },
    );
    return entry.session;
  }

  async #connect(peer: Peer, key: string): Promise<ClientHttp2Session> {
    const want = `system:node:${peer.node}`;
    const socket = tls.connect({
      host: peer.address,
      port: peer.port,
      cert: this.#tls.cert,
      key: this.#tls.key,
      ca: this.#tls.ca,
      ALPNProtocols: ['h2'],
      servername: undefined,
      // the default check (the address is one of its IP SANs), and the node it must be
      checkServerIdentity: (host: string, cert: PeerCertificate) => {
        const err = tls.checkServerIdentity(host, cert);
        if (err) return err;
        const cn = cert.subject?.CN;
        return cn === want ? undefined : new Error(`the tunnel at ${peer.address}:${peer.port} is ${String(cn)}'s, not node ${peer.node}'s`);
      },
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => socket.destroy(new Error(`no TLS handshake with ${peer.address}:${peer.port} within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
      socket.once('secureConnect', () => {
        clearTimeout(timer);
        if (socket.alpnProtocol !== 'h2') {
          socket.destroy();
          reject(new Error(`${peer.address}:${peer.port} does not speak HTTP/2: is it node ${peer.node}'s tunnel port?`));
        } else resolve();
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    socket.setNoDelay(true);
    const session = http2.connect(`https://${peer.address}:${peer.port}`, {
      createConnection: () => socket,
      settings: { initialWindowSize: STREAM_WINDOW },
    });
    session.on('error', (err) => this.#log.debug({ err, peer: peer.node }, 'tunnel session error'));
    const drop = (): void => {
      clearInterval(pinger);
      const e = this.#sessions.get(key);
      if (e?.live !== session) return;
      this.#sessions.delete(key);
      // reconnect at once: a peer that is gone is then known before a connection needs it
      if (!this.#closed) setImmediate(() => this.probe(peer));
    };
    session.once('close', drop);
    session.once('goaway', drop);
    const pinger = setInterval(() => {
      const t = setTimeout(() => session.destroy(new Error('ping timeout')), PING_TIMEOUT_MS);
      const sent = session.ping((err) => {
        clearTimeout(t);
        if (err) session.destroy(err);
      });
      if (!sent) clearTimeout(t);
    }, PING_EVERY_MS);
    pinger.unref();
    // extended CONNECT (CONNECT-UDP) may be sent only once the peer's SETTINGS allow it
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no HTTP/2 SETTINGS from ${peer.address}:${peer.port}`)), CONNECT_TIMEOUT_MS);
      session.once('remoteSettings', () => {
        clearTimeout(timer);
        resolve();
      });
      session.once('close', () => reject(new Error(`tunnel session to ${peer.address}:${peer.port} closed`)));
    }).catch((err: Error) => {
      session.destroy();
      throw err;
    });
    session.setLocalWindowSize(SESSION_WINDOW);
    return session;
  }
}
