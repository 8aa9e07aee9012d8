import type { Service, ServicePort } from '../api/types.js';
import { type FieldError, invalid, Path } from '../api/field.js';
import { IpAllocator, RangeAllocator } from '../util/allocator.js';
import { type Cidr, isLoopback } from '../util/cidr.js';

export interface ServiceAllocationOptions {
  serviceCidr: Cidr;
  nodePortRange: { first: number; last: number };
}

const needsClusterIP = (s: Service): boolean => s.spec?.type !== 'ExternalName' && s.spec?.clusterIP !== 'None';

const needsNodePorts = (s: Service): boolean =>
  s.spec?.type === 'NodePort' ||
  (s.spec?.type === 'LoadBalancer' && s.spec.allocateLoadBalancerNodePorts !== false);

const portKey = (p: ServicePort): string => `${p.protocol ?? 'TCP'}/${p.port}`;

/**
 * ClusterIPs and nodePorts, as the apiserver's registry allocates them: synchronously with
 * the write, so errors reach the writer. State is rebuilt from the stored Services at load.
 * Every method either applies all of its allocations or none (it rolls back on error).
 */
export class ServiceAllocations {
  readonly #ips: IpAllocator;
  readonly #ports: RangeAllocator;
  readonly #opts: ServiceAllocationOptions;
  /** nodePort → owning service key, so one Service may reuse a port across protocols */
  readonly #portOwner = new Map<number, string>();

  constructor(opts: ServiceAllocationOptions) {
    this.#opts = opts;
    this.#ips = new IpAllocator(opts.serviceCidr);
    this.#ports = new RangeAllocator(opts.nodePortRange.first, opts.nodePortRange.last);
  }

  get rangeText(): string {
    return `${this.#opts.nodePortRange.first}-${this.#opts.nodePortRange.last}`;
  }

  /** Re-registers what a stored Service holds (at load); out-of-range values are ignored. */
  restore(key: string, svc: Service): void {
    const ip = svc.spec?.clusterIP;
    if (ip && ip !== 'None' && this.#ips.contains(ip)) this.#ips.allocate(ip);
    for (const p of svc.spec?.ports ?? []) {
      if (p.nodePort && this.#ports.allocate(p.nodePort) === 'ok') this.#portOwner.set(p.nodePort, key);
    }
  }

  /**
   * Allocates for a Service being created (`old` undefined) or updated, filling
   * `spec.clusterIP(s)` and `spec.ports[].nodePort` in `svc` and releasing what `old` held
   * and `svc` no longer does. Returns field errors (and changes nothing) on failure.
   */
  apply(key: string, svc: Service, old?: Service): FieldError[] {
    const spec = (svc.spec ??= {});
    const undo: Array<() => void> = [];
    const errors: FieldError[] = [];
    const oldIP = old?.spec?.clusterIP && old.spec.clusterIP !== 'None' ? old.spec.clusterIP : undefined;

    if (needsClusterIP(svc)) {
      if (!spec.clusterIP && oldIP && old?.spec?.type !== 'ExternalName') {
        spec.clusterIP = oldIP;
        spec.clusterIPs = [oldIP];
      } else if (!spec.clusterIP) {
        const ip = this.#ips.allocateNext();
        if (ip === undefined) {
          errors.push(
            invalid('spec.clusterIPs', [], `failed to allocate a serviceIP: range is full (--service-cidr ${this.#opts.serviceCidr.text})`),
          );
        } else {
          undo.push(() => this.#ips.release(ip));
          spec.clusterIP = ip;
          spec.clusterIPs = [ip];
        }
      } else if (spec.clusterIP !== oldIP) {
        const ip = spec.clusterIP;
        const r = this.#ips.contains(ip) ? this.#ips.allocate(ip) : 'range';
        if (r === 'ok') {
          undo.push(() => this.#ips.release(ip));
          spec.clusterIPs ??= [ip];
        } else {
          errors.push(invalid('spec.clusterIPs', [ip], this.#ipMessage(ip, r)));
        }
      }
    } else if (spec.type === 'ExternalName' && old && old.spec?.type !== 'ExternalName') {
      // leaving a ClusterIP-type: upstream drops the now meaningless fields
      delete spec.clusterIP;
      delete spec.clusterIPs;
      delete spec.ipFamilies;
      delete spec.ipFamilyPolicy;
    }

    const oldPorts = new Map<string, number>();
    for (const p of old?.spec?.ports ?? []) if (p.nodePort) oldPorts.set(portKey(p), p.nodePort);
    const oldHeld = new Set(oldPorts.values());
    const keep = new Set<number>();
    if (needsNodePorts(svc)) {
      (spec.ports ?? []).forEach((p, i) => {
        const fp = new Path('spec').child('ports').index(i).child('nodePort');
        if (!p.nodePort) {
          const reuse = oldPorts.get(portKey(p));
          if (reuse !== undefined && !keep.has(reuse)) {
            p.nodePort = reuse;
            keep.add(reuse);
            return;
          }
          const n = this.#ports.allocateNext();
          if (n === undefined) {
            errors.push(invalid(fp, 0, `failed to allocate a nodePort: range is full (${this.rangeText})`));
            return;
          }
          undo.push(() => this.#release(n));
          this.#portOwner.set(n, key);
          p.nodePort = n;
          keep.add(n);
          return;
        }
        const n = p.nodePort;
        if (keep.has(n) || oldHeld.has(n)) {
          keep.add(n);
          return;
        }
        const r = this.#ports.allocate(n);
        if (r === 'ok') {
          undo.push(() => this.#release(n));
          this.#portOwner.set(n, key);
          keep.add(n);
        } else if (r === 'taken' && this.#portOwner.get(n) === key) {
          keep.add(n);
        } else {
          errors.push(
            invalid(
              fp,
              n,
              r === 'range'
                ? `provided port is not in the valid range. The range of valid ports is ${this.rangeText}`
                : 'provided port is already allocated',
            ),
          );
        }
      });
    } else if (old && needsNodePorts(old)) {
      // leaving NodePort/LoadBalancer: nodePorts are dropped, as upstream's dropTypeDependentFields
      for (const p of spec.ports ?? []) if (p.nodePort && oldHeld.has(p.nodePort)) delete p.nodePort;
    }

    if (errors.length) {
      for (const u of undo.reverse()) u();
      return errors;
    }
    if (oldIP && oldIP !== spec.clusterIP) this.#ips.release(oldIP);
    for (const n of oldHeld) if (!keep.has(n)) this.#release(n);
    return [];
  }

  /** Releases what `prev` holds and `cur` does not (an update observed, or a write undone). */
  releaseUnheld(prev: Service, cur: Service): void {
    const ip = prev.spec?.clusterIP;
    if (ip && ip !== 'None' && ip !== cur.spec?.clusterIP) this.#ips.release(ip);
    const keep = new Set((cur.spec?.ports ?? []).map((p) => p.nodePort).filter(Boolean));
    for (const p of prev.spec?.ports ?? []) if (p.nodePort && !keep.has(p.nodePort)) this.#release(p.nodePort);
  }

  /** Marks an address or port as held by someone this registry has not heard of yet (another writer). */
  markTaken(what: { ip?: string; nodePort?: number; owner: string }): void {
    if (what.ip && this.#ips.contains(what.ip)) this.#ips.allocate(what.ip);
    if (what.nodePort && this.#ports.allocate(what.nodePort) === 'ok') this.#portOwner.set(what.nodePort, what.owner);
  }

  /** Releases what a deleted Service held. */
  release(svc: Service): void {
    const ip = svc.spec?.clusterIP;
    if (ip && ip !== 'None') this.#ips.release(ip);
    for (const p of svc.spec?.ports ?? []) if (p.nodePort) this.#release(p.nodePort);
  }

  #release(n: number): void {
    this.#ports.release(n);
    this.#portOwner.delete(n);
  }

  #ipMessage(ip: string, r: 'range' | 'taken'): string {
    const cidr = this.#opts.serviceCidr.text;
    if (r === 'taken') return `failed to allocate IP ${ip}: provided IP is already allocated`;
    const upstream = `failed to allocate IP ${ip}: provided IP (${ip}) is not in the valid range. The range of valid IPs is ${cidr}`;
    return isLoopback(ip)
      ? `${upstream} (kubeloop: omit clusterIP to get one allocated, pick one inside ${cidr}, or start kubeloop with a --service-cidr that covers ${ip})`
      : `${upstream} (kubeloop: ClusterIPs are loopback addresses, so ${ip} cannot be served here; ` +
          `omit clusterIP to get one allocated, or pick one inside ${cidr}; --service-cidr chooses another range inside 127.0.0.0/8)`;
  }
}
