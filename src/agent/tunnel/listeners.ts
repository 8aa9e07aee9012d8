/**
 * Remote pods answered locally: for every port of a pod on another machine (targets.ts
 * `remote()`), a listener on that pod's IP:port on this host's loopback, each TCP connection and
 * each UDP flow (client address) carried through the owning node's tunnel. Then the proxy's
 * endpoints, headless DNS answers and pods dialing pods reach remote pods with no special case.
 * `sync()` makes the listeners match the wanted set; a port that cannot be bound is reported once
 * (and tried again at later syncs).
 *
 * Refusals are mirrored, so that a client here (the proxy's dial retry above all) sees what it
 * would see next to the pod: a connection refused, not one accepted and then reset. TCP's
 * handshake with this listener completes before the remote node has dialed the pod, so the
 * connection that learns of the refusal can only be reset; after it:
 *  - the remote pod refused (the tunnel's 502 says `Proxy-Status: …; error=connection_refused`,
 *    RFC 9209): this listener stops accepting for REFUSED_HOLD_MS (its open connections stay);
 *  - the owning node's tunnel cannot be reached (`peerDown(node)`): that node's listeners close
 *    until a session to it is up again (the tunnel client reports both).
 */
import dgram from 'node:dgram';
import type { ClientHttp2Stream } from 'node:http2';
import net from 'node:net';
import type { Logger } from 'pino';
import { CapsuleParser, encodeDatagram } from './capsule.js';
import type { Peer, TunnelClient } from './client.js';
import type { RemotePort } from './targets.js';

/** per UDP flow, buffered towards the tunnel before datagrams are dropped */
const UDP_BUFFER_LIMIT = 1 << 20;
/** how long a pod port that refused a tunnelled connection stays refused here */
export const REFUSED_HOLD_MS = 1000;

interface Listener {
  want: RemotePort;
  /** stops listening; open connections are cut unless `keepConnections` */
  close(keepConnections?: boolean): void;
}

export interface RemoteListenersOptions {
  log: Logger;
  client: TunnelClient;
  /** the tunnel of a node, as its Node object publishes it; undefined: not reachable now */
  peer(node: string): Peer | undefined;
  /** is the node's tunnel known to be unreachable now? (its ports are not answered here meanwhile) */
  peerDown?(node: string): boolean;
  /** called when a held port's hold ends: run `sync` again */
  resync?(): void;
  udpIdleTimeoutMs: number;
}

export class RemoteListeners {
  readonly #o: RemoteListenersOptions;
  readonly #log: Logger;
  readonly #open = new Map<string, Listener>();
  readonly #pending = new Map<string, Promise<void>>();
  /** keys whose bind failure has been reported */
  readonly #reported = new Set<string>();
  /** keys not answered until the time given (the remote pod refused) */
  readonly #held = new Map<string, number>();
  #stopped = false;

  constructor(o: RemoteListenersOptions) {
    this.#o = o;
    this.#log = o.log.child({ component: 'tunnel-listeners' });
  }

  /** the keys (`TCP ip:port`) listening now */
  keys(): string[] {
    return [...this.#open.keys()];
  }

  /** the keys refused here for now (a remote refusal mirrored) */
  held(): string[] {
    const now = Date.now();
    return [...this.#held].filter(([, until]) => until > now).map(([k]) => k);
  }

  async sync(wanted: RemotePort[]): Promise<void> {
    if (this.#stopped) return;
    const now = Date.now();
    for (const [key, until] of this.#held) if (until <= now) this.#held.delete(key);
    const want = new Map(wanted.filter((w) => !this.#held.has(w.key) && !this.#o.peerDown?.(w.node)).map((w) => [w.key, w]));
    for (const [key, l] of this.#open) {
      const w = want.get(key);
      // gone, moved to another node, refused for now or its node unreachable: close (reopened when wanted again)
      if (!w || w.node !== l.want.node) {
        l.close(this.#held.has(key));
        this.#open.delete(key);
      } else {
        l.want = w;
      }
    }
    const opening: Promise<void>[] = [];
    for (const [key, w] of want) {
      if (this.#open.has(key) || this.#pending.has(key)) continue;
      const p = this.#listen(w)
        .then((l) => {
          if (this.#stopped) return l.close();
          this.#open.set(key, l);
          if (this.#reported.delete(key)) this.#log.info({ key }, `listening for remote pod port ${key} again`);
        })
        .catch((err: Error) => {
          if (this.#reported.has(key)) return;
          this.#reported.add(key);
          this.#log.warn({ err, key, node: w.node }, `cannot answer for remote pod port ${key} (node ${w.node}) on this host: ${err.message}`);
        })
        .finally(() => this.#pending.delete(key));
      this.#pending.set(key, p);
      opening.push(p);
    }
    await Promise.all(opening);
    for (const key of this.#reported) if (!want.has(key)) this.#reported.delete(key);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#pending.values());
    for (const l of this.#open.values()) l.close();
    this.#open.clear();
  }

  #listen(w: RemotePort): Promise<Listener> {
    return w.protocol === 'TCP' ? this.#listenTcp(w) : this.#listenUdp(w);
  }

  async #listenTcp(w: RemotePort): Promise<Listener> {
    const conns = new Set<net.Socket>();
    const l: Listener = { want: w, close: () => {} };
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (sock) => {
      conns.add(sock);
      sock.once('close', () => conns.delete(sock));
      this.#forwardTcp(sock, l.want);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: w.ip, port: w.port, exclusive: true }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.#log.warn({ err, key: w.key }, 'remote pod listener error'));
    l.close = (keepConnections) => {
      server.close();
      if (!keepConnections) for (const c of conns) c.destroy();
    };
    return l;
  }

  /** the remote pod refused w: refuse here too for a while (connections open on it stay) */
  #hold(w: RemotePort): void {
    if (this.#stopped || this.#held.has(w.key)) return;
    this.#held.set(w.key, Date.now() + REFUSED_HOLD_MS);
    this.#log.debug({ key: w.key, node: w.node }, 'the remote pod refused: refused here too for a while');
    const l = this.#open.get(w.key);
    if (l) {
      l.close(true);
      this.#open.delete(w.key);
    }
    setTimeout(() => this.#o.resync?.(), REFUSED_HOLD_MS + 10).unref();
  }

  #forwardTcp(sock: net.Socket, w: RemotePort): void {
    sock.on('error', () => {});
    const peer = this.#o.peer(w.node);
    if (!peer) {
      this.#log.debug({ node: w.node }, 'no tunnel published by the node: connection refused');
      sock.resetAndDestroy();
      return;
    }
    sock.pause();
    this.#o.client.tcp(peer, w.ip, w.port).then(
      (stream) => {
        stream.on('error', () => sock.destroy());
        if (sock.destroyed) return stream.close();
        stream.once('response', (h) => {
          if (h[':status'] !== 200) {
            this.#log.debug({ key: w.key, status: h[':status'] }, 'the remote node refused a tunnel connection');
            if (h[':status'] === 502 && /error=connection_refused/.test(String(h['proxy-status'] ?? ''))) this.#hold(w);
            sock.resetAndDestroy();
            stream.close();
          }
        });
        sock.pipe(stream);
        stream.pipe(sock);
        sock.resume();
        sock.once('close', () => {
          if (!stream.destroyed && sock.errored) stream.close(8 /* NGHTTP2_CANCEL */);
        });
        stream.once('close', () => {
          if (stream.rstCode && stream.rstCode !== 0) sock.destroy();
        });
      },
      (err: Error) => {
        this.#log.debug({ err, node: w.node }, 'tunnel to the node failed');
        sock.resetAndDestroy();
      },
    );
  }

  async #listenUdp(w: RemotePort): Promise<Listener> {
    const sock = dgram.createSocket({ type: 'udp4', reuseAddr: false });
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind({ address: w.ip, port: w.port, exclusive: true }, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    const flows = new Map<string, { stream?: ClientHttp2Stream; queue: Buffer[]; timer?: NodeJS.Timeout; close(): void }>();
    const l: Listener = {
      want: w,
      close: () => {
        for (const f of flows.values()) f.close();
        try {
          sock.close();
        } catch {
          // closed
        }
      },
    };
    sock.on('error', (err) => this.#log.warn({ err, key: w.key }, 'remote pod UDP listener error'));
    sock.on('message', (msg, rinfo) => {
      const fk = `${rinfo.address}:${rinfo.port}`;
      let f = flows.get(fk);
      if (!f) {
        const peer = this.#o.peer(l.want.node);
        if (!peer) return;
        const flow: { stream?: ClientHttp2Stream; queue: Buffer[]; timer?: NodeJS.Timeout; close(): void } = {
          queue: [],
          close: () => {
            clearTimeout(flow.timer);
            flows.delete(fk);
            flow.stream?.close();
          },
        };
        f = flow;
        flows.set(fk, flow);
        this.#o.client.udp(peer, w.ip, w.port).then(
          (stream) => {
            if (flows.get(fk) !== flow) return stream.close();
            flow.stream = stream;
            stream.on('error', () => flow.close());
            stream.once('close', () => flow.close());
            stream.once('response', (h) => h[':status'] !== 200 && flow.close());
            const parser = new CapsuleParser((payload) => {
              touch(flow);
              sock.send(payload, rinfo.port, rinfo.address);
            });
            stream.on('data', (c: Buffer) => {
              if (!parser.push(c)) flow.close();
            });
            for (const q of flow.queue) stream.write(encodeDatagram(q));
            flow.queue = [];
          },
          () => flow.close(),
        );
      }
      touch(f);
      if (f.stream) {
        if (f.stream.writableLength <= UDP_BUFFER_LIMIT) f.stream.write(encodeDatagram(msg));
      } else if (f.queue.length < 64) {
        f.queue.push(Buffer.from(msg));
      }
    });
    const touch = (f: { timer?: NodeJS.Timeout; close(): void }): void => {
      clearTimeout(f.timer);
      f.timer = setTimeout(() => f.close(), this.#o.udpIdleTimeoutMs);
      f.timer.unref();
    };
    return l;
  }
}
