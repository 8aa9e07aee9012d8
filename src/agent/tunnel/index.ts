/**
 * Several machines, one pod network (DESIGN.md "Several machines"). Pod IPs are loopback
 * addresses of their own host, so:
 *  - this node serves its pods to other nodes on one tunnel port on its node IP (server.ts:
 *    HTTP/2 CONNECT and CONNECT-UDP, mutual TLS, only its own pods' declared ports);
 *  - this host answers on every remote pod's IP:port and forwards through the owning node's
 *    tunnel (listeners.ts), so the proxy, DNS, port-forward and pods need no "remote" case.
 * Each node publishes its tunnel's port as an annotation of its Node. Peers authenticate each
 * other by the cluster CA (cli/cluster-identity.ts: every daemon of the cluster has it): a
 * tunnel certificate names its node (CN system:node:<name>, O system:nodes, its node IP as SAN),
 * and a server accepts it only while that Node exists. Certificates are not pinned: a Node
 * deleted from the cluster is refused, but a node's certificate stays valid until it expires.
 */
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
export const DEFAULT_TUNNEL_PORT = 10251;
/** how often a node whose tunnel cannot be reached is tried again */
const PROBE_DOWN_MS = 1000;
/** the subject a node's tunnel certificate carries (upstream's kubelet client identity) */
export const NODE_USER_PREFIX = 'system:node:';
export const NODES_GROUP = 'system:nodes';

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
  /** this node's tunnel certificate and key (served, and presented to other nodes), and the cluster CA */
  tls: { cert: string; key: string; ca: string };
  /** is ip an address of this host? */
  isLocalAddress(ip: string): boolean;
  /** idle timeout of a tunnelled UDP flow; default 30 s */
  udpIdleTimeoutMs?: number;
}

export class Tunnel {
  readonly #o: TunnelOptions;
  readonly #log: Logger;
  readonly #server: TunnelServer;
  readonly #client: TunnelClient;
  readonly #listeners: RemoteListeners;
  readonly #targets: Targets;
  readonly #nodes;
  readonly #sync: CoalescingRunner;
  readonly #publish: CoalescingRunner;
  #started = false;
  #probe: NodeJS.Timeout | undefined;

  constructor(o: TunnelOptions) {
    this.#o = o;
    this.#log = o.log.child({ component: 'tunnel' });
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
      isPeer: (subject) => {
        const cn = subject.CN;
        const groups = ([] as Array<string | undefined>).concat(subject.O);
        const node = typeof cn === 'string' && cn.startsWith(NODE_USER_PREFIX) ? cn.slice(NODE_USER_PREFIX.length) : '';
        return !!node && groups.includes(NODES_GROUP) && !!this.#nodes.get(undefined, node);
      },
      allow: (ip, port, protocol) => !!this.#targets.local(ip, port, protocol),
    });
    // a node whose tunnel cannot be reached: its pods' ports are refused here (not accepted, then
    // reset) until a session is up again, so the proxy's dial retry moves on to other endpoints
    this.#client = new TunnelClient({ tls: o.tls, log: o.log, onPeer: () => void this.#sync.run() });
    this.#listeners = new RemoteListeners({
      log: o.log,
      client: this.#client,
      peer: (n) => this.peer(n),
      peerDown: (n) => this.#client.peerDown(n),
      resync: () => void this.#sync.run(),
      udpIdleTimeoutMs,
    });
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
    if (!address || !Number.isInteger(port) || port < 1 || port > 65535) return undefined;
    return { node, address, port };
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
    this.#probe = setInterval(() => this.#probeDown(), PROBE_DOWN_MS);
    this.#probe.unref();
  }

  /** the nodes with remote ports wanted here whose tunnel is down: try each again */
  #probeDown(): void {
    if (this.#client.downNodes().length === 0) return;
    const nodes = new Set(this.#targets.remote().map((r) => r.node));
    for (const n of nodes) {
      if (!this.#client.peerDown(n)) continue;
      const p = this.peer(n);
      if (p) this.#client.probe(p);
    }
  }

  /** waits until the listeners match the pods as this daemon sees them now */
  synced(): Promise<void> {
    return this.#sync.run();
  }

  async stop(): Promise<void> {
    clearInterval(this.#probe);
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
    return a[TUNNEL_PORT_ANNOTATION] === String(this.#server.port);
  }

  async #publishNodes(): Promise<void> {
    for (const { name } of this.#o.nodes) {
      const cur = this.#nodes.get(undefined, name) ?? (await this.#o.store.tryGet<Node>('Node', undefined, name));
      if (!cur || this.#published(cur)) continue;
      await this.#o.store.mutate<Node>('Node', undefined, name, (n) => {
        n.metadata = { ...n.metadata, annotations: { ...n.metadata?.annotations, [TUNNEL_PORT_ANNOTATION]: String(this.#server.port) } };
      });
    }
  }
}
