/**
 * Several machines, one pod network (DESIGN.md "Several machines"). Pod IPs are loopback
 * addresses of their own host, so:
 *  - this node serves its pods to other nodes on one tunnel port on its node IP (server.ts:
 *    HTTP/2 CONNECT and CONNECT-UDP, mutual TLS, only its own pods' declared ports);
 *  - this host answers on every remote pod's IP:port and forwards through the owning node's
 *    tunnel (listeners.ts), so the proxy, DNS, port-forward and pods need no "remote" case.
 * Each node publishes its tunnel's port and certificate fingerprint as annotations of its Node;
 * a peer is trusted when its certificate is one a Node publishes (the store is the trust root,
 * as it is for everything else a node does).
 */
import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import type { Node, Pod, Stored } from '../../api/types.js';
import type { InformerFactory } from '../../store/informer.js';
import type { Store } from '../../store/types.js';
import { CoalescingRunner } from '../../util/coalescing-runner.js';
import { parseCidr } from '../../util/cidr.js';
import { type Peer, TunnelClient } from './client.js';
import { RemoteListeners } from './listeners.js';
import { TunnelServer } from './server.js';
import { Targets, nodeAddress } from './targets.js';

export { TunnelServer } from './server.js';
export { TunnelClient, type Peer } from './client.js';

export const TUNNEL_PORT_ANNOTATION = 'tunnel.kubeloop.dev/port';
export const TUNNEL_CERT_ANNOTATION = 'tunnel.kubeloop.dev/cert-sha256';
export const DEFAULT_TUNNEL_PORT = 10251;

export interface TunnelOptions {
  store: Store;
  informers: InformerFactory;
  log: Logger;
  /** this daemon's nodes (each serves its pods on the one tunnel) and their pod CIDRs */
  nodes: ReadonlyArray<{ name: string; podCidr: string }>;
  /** where the tunnel listens: the node IP */
  address: string;
  /** 0: any free port (published on the Node) */
  port: number;
  /** this node's certificate and key: served, and presented to other nodes */
  tls: { cert: string; key: string };
  /** is ip an address of this host? */
  isLocalAddress(ip: string): boolean;
  /** idle timeout of a tunnelled UDP flow; default 30 s */
  udpIdleTimeoutMs?: number;
}

export class Tunnel {
  readonly #o: TunnelOptions;
  readonly #log: Logger;
  readonly #fingerprint: string;
  readonly #server: TunnelServer;
  readonly #client: TunnelClient;
  readonly #listeners: RemoteListeners;
  readonly #targets: Targets;
  readonly #nodes;
  readonly #sync: CoalescingRunner;
  readonly #publish: CoalescingRunner;
  #started = false;

  constructor(o: TunnelOptions) {
    this.#o = o;
    this.#log = o.log.child({ component: 'tunnel' });
    this.#fingerprint = new X509Certificate(o.tls.cert).fingerprint256;
    const pods = o.informers.for<Pod>('Pod');
    this.#nodes = o.informers.for<Node>('Node');
    this.#targets = new Targets({
      pods,
      nodes: this.#nodes,
      localNodes: o.nodes.map((n) => n.name),
      localPodCidrs: o.nodes.map((n) => parseCidr(n.podCidr)),
      isLocalAddress: o.isLocalAddress,
    });
    const udpIdleTimeoutMs = o.udpIdleTimeoutMs ?? 30_000;
    this.#server = new TunnelServer({
      log: o.log,
      address: o.address,
      port: o.port,
      tls: o.tls,
      udpIdleTimeoutMs,
      isPeer: (fp) => !!fp && this.#nodes.list().some((n) => n.metadata.annotations?.[TUNNEL_CERT_ANNOTATION] === fp),
      allow: (ip, port, protocol) => !!this.#targets.local(ip, port, protocol),
    });
    this.#client = new TunnelClient({ tls: o.tls, log: o.log });
    this.#listeners = new RemoteListeners({ log: o.log, client: this.#client, peer: (n) => this.peer(n), udpIdleTimeoutMs });
    const onError = (err: unknown): void => this.#log.error({ err }, 'tunnel sync failed');
    this.#sync = new CoalescingRunner({ fn: () => this.#listeners.sync(this.#targets.remote()), minIntervalMs: 50, onError });
    this.#publish = new CoalescingRunner({ fn: () => this.#publishNodes(), minIntervalMs: 1000, onError });
  }

  get port(): number {
    return this.#server.port;
  }

  get stats(): TunnelServer['stats'] {
    return this.#server.stats;
  }

  /** the remote pod ports this host answers for now (`TCP ip:port`) */
  listening(): string[] {
    return this.#listeners.keys();
  }

  /** a node's tunnel as its Node publishes it (another machine's only) */
  peer(node: string): Peer | undefined {
    const n = this.#nodes.get(undefined, node);
    const address = nodeAddress(n);
    const port = Number(n?.metadata.annotations?.[TUNNEL_PORT_ANNOTATION]);
    const fingerprint = n?.metadata.annotations?.[TUNNEL_CERT_ANNOTATION];
    if (!address || !fingerprint || !Number.isInteger(port) || port < 1 || port > 65535) return undefined;
    return { node, address, port, fingerprint };
  }

  async start(): Promise<void> {
    await this.#server.start();
    this.#started = true;
    await this.#publish.run();
    const kick = (): void => void this.#sync.run();
    this.#o.informers.for<Pod>('Pod').addHandler({ onAdd: kick, onUpdate: kick, onDelete: kick });
    this.#nodes.addHandler({
      onAdd: kick,
      onDelete: kick,
      onUpdate: (_old, cur) => {
        kick();
        // a Node made again (a rejoin) or stripped of the annotations gets them back
        if (this.#o.nodes.some((n) => n.name === cur.metadata.name) && !this.#published(cur)) void this.#publish.run();
      },
    });
    await this.#sync.run();
  }

  /** waits until the listeners match the pods as this daemon sees them now */
  synced(): Promise<void> {
    return this.#sync.run();
  }

  async stop(): Promise<void> {
    if (!this.#started) return;
    this.#started = false;
    await this.#publish.stop();
    await this.#sync.stop();
    await this.#listeners.stop();
    this.#client.close();
    await this.#server.stop();
  }

  #published(n: Stored<Node>): boolean {
    const a = n.metadata.annotations ?? {};
    return a[TUNNEL_PORT_ANNOTATION] === String(this.#server.port) && a[TUNNEL_CERT_ANNOTATION] === this.#fingerprint;
  }

  async #publishNodes(): Promise<void> {
    for (const { name } of this.#o.nodes) {
      const cur = this.#nodes.get(undefined, name) ?? (await this.#o.store.tryGet<Node>('Node', undefined, name));
      if (!cur || this.#published(cur)) continue;
      await this.#o.store.mutate<Node>('Node', undefined, name, (n) => {
        n.metadata = { ...n.metadata, annotations: { ...n.metadata?.annotations, [TUNNEL_PORT_ANNOTATION]: String(this.#server.port), [TUNNEL_CERT_ANNOTATION]: this.#fingerprint } };
      });
    }
  }
}
