import type { Node } from '../api/types.js';
import { type FieldError, invalid } from '../api/field.js';
import { type Cidr, cidrsOverlap, numberToIp, parseCidr } from '../util/cidr.js';

export interface NodeCidrOptions {
  /** the cluster's pod range (--pod-cidr) */
  podCidr: Cidr;
  /**
   * prefix length of the slice a Node created without `spec.podCIDR` is given (as
   * kube-controller-manager's --node-cidr-mask-size); undefined: no slices are handed out
   */
  maskSize?: number;
}

/** the allocation record a Node's pod CIDR is held by (storage.ts `~…` keys) */
export const cidrRecordKey = (cidr: string): string => `~cidr/${cidr}`;

const podCidrOf = (n: Node | undefined): string | undefined => n?.spec?.podCIDR || n?.spec?.podCIDRs?.[0] || undefined;

/**
 * Pod CIDR slices of Nodes, as the node IPAM controller's range allocator hands them out, but
 * taken with the Node's write (a `~cidr/<slice>` record in the same storage commit): two
 * daemons registering at once on one Redis never get the same slice. A Node that names its
 * own `spec.podCIDR` (the simulated nodes of `--nodes`) holds that; one that names none gets
 * the first free `/maskSize` slice of the pod range that overlaps nothing held. A slice, once
 * given, is kept by later writes that leave the field out.
 */
export class NodeCidrAllocations {
  readonly #o: NodeCidrOptions;
  /** slice text → owner node name */
  readonly #held = new Map<string, string>();
  readonly #parsed = new Map<string, Cidr>();

  constructor(o: NodeCidrOptions) {
    if (o.maskSize !== undefined && (o.maskSize < o.podCidr.bits || o.maskSize > 30)) {
      throw new Error(`node CIDR mask size /${o.maskSize} does not fit --pod-cidr ${o.podCidr.text}: give a prefix between /${o.podCidr.bits} and /30`);
    }
    this.#o = o;
  }

  /** slices held now (slice → node), for diagnostics and tests */
  held(): ReadonlyMap<string, string> {
    return this.#held;
  }

  restore(node: Node): void {
    const c = podCidrOf(node);
    if (c) this.#take(c, node.metadata?.name ?? '');
  }

  release(node: Node): void {
    const c = podCidrOf(node);
    if (c && this.#held.get(c) === (node.metadata?.name ?? '')) this.#drop(c);
  }

  /** a record seen held in storage (a failed commit says who holds it) */
  markTaken(cidr: string, owner: string): void {
    this.#take(cidr, owner);
  }

  /**
   * Fills `spec.podCIDR(s)` of a Node being written: kept from `old`, or the next free slice.
   * Returns field errors and changes nothing when no slice is free.
   */
  apply(node: Node, old?: Node): FieldError[] {
    const name = node.metadata?.name ?? '';
    const spec = ((node as { spec?: Node['spec'] }).spec ??= {});
    const given = podCidrOf(node);
    if (given) {
      const holder = this.#held.get(given);
      if (holder !== undefined && holder !== name && holder !== '') {
        return [invalid('spec.podCIDR', given, `already allocated to node ${holder}: leave spec.podCIDR out to be given a free slice`)];
      }
      if (!spec.podCIDRs?.length) spec.podCIDRs = [given];
      if (!spec.podCIDR) spec.podCIDR = given;
      this.#take(given, name);
      return [];
    }
    const kept = podCidrOf(old);
    if (kept) {
      spec.podCIDR = kept;
      spec.podCIDRs = [kept];
      return [];
    }
    const bits = this.#o.maskSize;
    if (bits === undefined) return [];
    const pod = this.#o.podCidr;
    const size = 2 ** (32 - bits);
    const count = pod.size / size;
    for (let i = 0; i < count; i++) {
      const slice = parseCidr(`${numberToIp(pod.base + i * size)}/${bits}`);
      if (this.#held.has(slice.text)) continue;
      if ([...this.#parsed.values()].some((c) => cidrsOverlap(c, slice))) continue;
      this.#take(slice.text, name);
      spec.podCIDR = slice.text;
      spec.podCIDRs = [slice.text];
      return [];
    }
    return [invalid('spec.podCIDR', '', `no free /${bits} slice left in --pod-cidr ${pod.text} (${count} slices, all held by nodes): remove a node or use a larger --pod-cidr`)];
  }

  #take(cidr: string, owner: string): void {
    this.#held.set(cidr, owner);
    try {
      this.#parsed.set(cidr, parseCidr(cidr));
    } catch {
      // validation of the Node says what is wrong with it
    }
  }

  #drop(cidr: string): void {
    this.#held.delete(cidr);
    this.#parsed.delete(cidr);
  }
}
