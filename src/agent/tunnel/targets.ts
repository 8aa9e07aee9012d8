/**
 * Which pod addresses the tunnel deals in, read from the pod and node informers:
 *  - `local(ip, port, protocol)`: the one question the tunnel server asks before it dials —
 *    is ip:port a declared containerPort of a running pod of THIS daemon's nodes, whose IP lies
 *    in one of this daemon's pod CIDRs? Anything else is refused (never an open proxy).
 *  - `remote()`: every declared containerPort of running pods on nodes of OTHER machines (a node
 *    whose InternalIP is neither loopback nor an address of this host) whose IP lies in that
 *    Node's pod CIDR slice, with that node's address: what this host answers for locally and
 *    forwards through the tunnel.
 */
import { isIP } from 'node:net';
import type { Node, Pod, Stored } from '../../api/types.js';
import type { Informer } from '../../store/informer.js';
import { type Cidr, cidrContains, isLoopback, parseCidr } from '../../util/cidr.js';

export type Protocol = 'TCP' | 'UDP';

export interface RemotePort {
  /** `TCP 127.245.1.7:8080` */
  key: string;
  protocol: Protocol;
  ip: string;
  port: number;
  node: string;
  /** the node's InternalIP (where its tunnel listens) */
  nodeIP: string;
}

const serving = (p: Pod): boolean => {
  const phase = p.status?.phase;
  return !!p.status?.podIP && !p.spec?.hostNetwork && (phase === 'Running' || phase === 'Pending');
};

/** the declared container ports of a pod, as `protocol port` */
export function declaredPorts(p: Pod): Array<{ protocol: Protocol; port: number }> {
  const out = new Map<string, { protocol: Protocol; port: number }>();
  for (const c of [...(p.spec?.containers ?? []), ...(p.spec?.initContainers ?? []).filter((c) => c.restartPolicy === 'Always')]) {
    for (const cp of c.ports ?? []) {
      const protocol = (cp.protocol ?? 'TCP') as string;
      if ((protocol !== 'TCP' && protocol !== 'UDP') || !Number.isInteger(cp.containerPort) || cp.containerPort < 1 || cp.containerPort > 65535) continue;
      out.set(`${protocol} ${cp.containerPort}`, { protocol, port: cp.containerPort });
    }
  }
  return [...out.values()];
}

export function nodeAddress(n: Node | undefined): string | undefined {
  return n?.status?.addresses?.find((a) => a.type === 'InternalIP')?.address;
}

export interface TargetsOptions {
  pods: Informer<Pod>;
  nodes: Informer<Node>;
  /** the nodes this daemon runs */
  localNodes: readonly string[];
  /** their pod CIDRs as configured, in the order of localNodes (used while a Node names none) */
  localPodCidrs: readonly Cidr[];
  /** is this an address of this host? (interfaces, or all of 127/8) */
  isLocalAddress(ip: string): boolean;
}

export class Targets {
  readonly #o: TargetsOptions;
  readonly #local: Set<string>;
  /** pod IP → pods with that IP (normally one; two while an IP is handed over) */
  readonly #byIP = new Map<string, Set<string>>();
  readonly #ipOf = new Map<string, string>();

  constructor(o: TargetsOptions) {
    this.#o = o;
    this.#local = new Set(o.localNodes);
    const index = (p: Stored<Pod>): void => {
      const key = `${p.metadata.namespace}/${p.metadata.name}`;
      const was = this.#ipOf.get(key);
      const ip = p.status?.podIP;
      if (was === ip) return;
      if (was) {
        const s = this.#byIP.get(was);
        s?.delete(key);
        if (s?.size === 0) this.#byIP.delete(was);
      }
      if (ip) {
        this.#ipOf.set(key, ip);
        let s = this.#byIP.get(ip);
        if (!s) this.#byIP.set(ip, (s = new Set()));
        s.add(key);
      } else {
        this.#ipOf.delete(key);
      }
    };
    o.pods.addHandler({
      onAdd: index,
      onUpdate: (_old, cur) => index(cur),
      onDelete: (p) => index({ ...p, status: { ...p.status, podIP: undefined } }),
    });
  }

  /**
   * is ip in a pod CIDR of this daemon's nodes? Their Node objects' spec.podCIDRs (a slice of the
   * cluster's range on a shared store); the configured CIDR of a node whose Node names none
   */
  #ownPodIP(ip: string): boolean {
    for (const [i, name] of this.#o.localNodes.entries()) {
      const spec = this.#o.nodes.get(undefined, name)?.spec;
      const named = spec?.podCIDRs?.length ? spec.podCIDRs : spec?.podCIDR ? [spec.podCIDR] : [];
      if (named.length === 0) {
        const c = this.#o.localPodCidrs[i];
        if (c && cidrContains(c, ip)) return true;
        continue;
      }
      for (const text of named) {
        try {
          if (cidrContains(parseCidr(text), ip)) return true;
        } catch {
          // not a CIDR we can read: no pod of ours is in it
        }
      }
    }
    return false;
  }

  /** the local pod that may be dialed at ip:port/protocol, or undefined (refuse) */
  local(ip: string, port: number, protocol: Protocol): Stored<Pod> | undefined {
    if (isIP(ip) !== 4 || !isLoopback(ip) || !this.#ownPodIP(ip)) return undefined;
    for (const key of this.#byIP.get(ip) ?? []) {
      const p = this.#o.pods.getByKey(key);
      if (!p || !this.#local.has(p.spec?.nodeName ?? '') || p.status?.podIP !== ip || p.status?.phase !== 'Running' || p.spec?.hostNetwork) continue;
      if (declaredPorts(p).some((d) => d.port === port && d.protocol === protocol)) return p;
    }
    return undefined;
  }

  /** is ip inside a pod CIDR the Node `node` names? (a Node that names none has no pods to answer for) */
  #inSlice(node: string, ip: string): boolean {
    const spec = this.#o.nodes.get(undefined, node)?.spec;
    for (const text of spec?.podCIDRs?.length ? spec.podCIDRs : spec?.podCIDR ? [spec.podCIDR] : []) {
      try {
        if (cidrContains(parseCidr(text), ip)) return true;
      } catch {
        // not a CIDR we can read
      }
    }
    return false;
  }

  /** is `node` on another machine? (its address is neither loopback nor one of this host's) */
  #remoteNodeIP(node: string): string | undefined {
    if (this.#local.has(node)) return undefined;
    const ip = nodeAddress(this.#o.nodes.get(undefined, node));
    if (!ip || isIP(ip) !== 4 || isLoopback(ip) || this.#o.isLocalAddress(ip)) return undefined;
    return ip;
  }

  /** every port of every serving pod on other machines */
  remote(): RemotePort[] {
    const out: RemotePort[] = [];
    for (const p of this.#o.pods.list()) {
      if (!serving(p)) continue;
      const node = p.spec?.nodeName ?? '';
      const nodeIP = this.#remoteNodeIP(node);
      const ip = p.status!.podIP!;
      // never answer for an address of our own pods, nor for anything outside loopback, nor for
      // an address outside the owning Node's slice (a pod status naming, say, 127.0.0.1 would
      // otherwise have every other host listen there)
      if (!nodeIP || isIP(ip) !== 4 || !isLoopback(ip) || this.#ownPodIP(ip) || !this.#inSlice(node, ip)) continue;
      for (const d of declaredPorts(p)) out.push({ key: `${d.protocol} ${ip}:${d.port}`, protocol: d.protocol, ip, port: d.port, node, nodeIP });
    }
    return out;
  }
}
