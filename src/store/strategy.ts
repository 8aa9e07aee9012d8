import type { Endpoints, Job, KObject, Mutable, Namespace, Node, Pod, Secret, Service } from '../api/types.js';
import { keyOf } from '../api/types.js';
import type { WatchEvent } from './types.js';
import type { FieldError } from '../api/field.js';
import { applyDefaults, prepareUpdate } from '../api/defaults.js';
import { validateObject } from '../api/validation/index.js';
import { type Cidr, cidrContains, parseCidr } from '../util/cidr.js';
import { ServiceAllocations } from './service-allocation.js';
import { NodeCidrAllocations, cidrRecordKey } from './node-cidr-allocation.js';

export interface StrategyOptions {
  serviceCidr: Cidr;
  podCidr: Cidr;
  nodePortRange: { first: number; last: number };
  /** accept Endpoints addresses in 127.0.0.0/8 outside the pod range (daemon flag) */
  allowLoopbackEndpoints: boolean;
  /** node addresses: host-network endpoints (the API, DNS) live there and are accepted too */
  hostAddresses?: readonly string[];
  /** a Node written without `spec.podCIDR` gets a free slice of this prefix length of `podCidr` (node-cidr-allocation.ts) */
  nodeCidrMaskSize?: number;
}

/**
 * What the apiserver's registry does around a write, per kind: defaults, validation,
 * allocation of ClusterIPs and nodePorts, and the status a new object starts with.
 */
export class Strategies {
  readonly services: ServiceAllocations;
  readonly nodeCidrs: NodeCidrAllocations;
  readonly #opts: StrategyOptions;
  readonly #nodes = new Map<string, { cidrs: Cidr[]; addresses: string[] }>();

  constructor(opts: StrategyOptions) {
    this.#opts = opts;
    this.services = new ServiceAllocations({ serviceCidr: opts.serviceCidr, nodePortRange: opts.nodePortRange });
    this.nodeCidrs = new NodeCidrAllocations({ podCidr: opts.podCidr, maskSize: opts.nodeCidrMaskSize });
  }

  /** Kinds whose objects hold allocation records (`allocationRecords`). */
  readonly allocatingKinds: readonly string[] = ['Service', 'Node'];

  /**
   * The allocation records an object holds, record key → owner (`Service/ns/name`): written and
   * removed in the same storage commit as the object, so two writers (two daemons on one
   * Redis) can never hold one ClusterIP, nodePort or load-balancer address.
   */
  allocationRecords(obj: KObject): Map<string, string> {
    const out = new Map<string, string>();
    if (obj.kind === 'Node') {
      const n = obj as Node;
      const c = n.spec?.podCIDR || n.spec?.podCIDRs?.[0];
      if (c) out.set(cidrRecordKey(c), `Node//${n.metadata?.name ?? ''}`);
      return out;
    }
    if (obj.kind !== 'Service') return out;
    const svc = obj as Service;
    const owner = `Service/${svc.metadata?.namespace ?? ''}/${svc.metadata?.name ?? ''}`;
    const ip = svc.spec?.clusterIP;
    if (ip && ip !== 'None') out.set(`~ip/${ip}`, owner);
    for (const p of svc.spec?.ports ?? []) if (p.nodePort) out.set(`~port/${p.nodePort}`, owner);
    for (const i of svc.status?.loadBalancer?.ingress ?? []) if (i.ip) out.set(`~lb/${i.ip}`, owner);
    return out;
  }

  /** Follows every committed change: the local allocators' view of what is held. */
  observe(ev: WatchEvent): void {
    if (ev.object.kind === 'Node') return this.#observeNode(ev);
    if (ev.object.kind !== 'Service') return;
    const key = keyOf(ev.object);
    if (ev.type === 'DELETED') this.services.release((ev.old ?? ev.object) as Service);
    else {
      if (ev.old) this.services.releaseUnheld(ev.old as Service, ev.object as Service);
      this.services.restore(key, ev.object as Service);
    }
  }

  /**
   * Every node's pod CIDR and addresses (several daemons on one storage each run their own
   * nodes): Endpoints may point at any node's pods or host-network servers, not only this one's.
   */
  #observeNode(ev: WatchEvent): void {
    const name = ev.object.metadata.name;
    if (ev.type === 'DELETED') {
      this.#nodes.delete(name);
      this.nodeCidrs.release((ev.old ?? ev.object) as Node);
      return;
    }
    const n = ev.object as Node;
    if (ev.old) this.nodeCidrs.release(ev.old as Node);
    this.nodeCidrs.restore(n);
    const cidrs: Cidr[] = [];
    for (const c of n.spec?.podCIDRs ?? (n.spec?.podCIDR ? [n.spec.podCIDR] : [])) {
      try {
        cidrs.push(parseCidr(c));
      } catch {
        // not ours to judge here: validation of the Node said so
      }
    }
    this.#nodes.set(name, { cidrs, addresses: (n.status?.addresses ?? []).map((a) => a.address) });
  }

  /** An allocation record seen in storage (or found taken by a failed commit): held by someone. */
  observeRecord(key: string, owner: string | undefined): void {
    if (owner === undefined) return;
    const ownerKey = owner.split('/').slice(1).filter(Boolean).join('/');
    if (key.startsWith('~ip/')) this.services.markTaken({ ip: key.slice(4), owner: ownerKey });
    else if (key.startsWith('~port/')) this.services.markTaken({ nodePort: Number(key.slice(6)), owner: ownerKey });
    else if (key.startsWith('~cidr/')) this.nodeCidrs.markTaken(key.slice(6), ownerKey);
  }

  /** A write that allocated for `obj` over `old` did not commit: back to what `old` holds. */
  resync(obj: KObject, old: KObject): void {
    if (obj.kind === 'Node') {
      this.nodeCidrs.release(obj as Node);
      this.nodeCidrs.restore(old as Node);
      return;
    }
    if (obj.kind !== 'Service') return;
    this.services.releaseUnheld(obj as Service, old as Service);
    this.services.restore(keyOf(old), old as Service);
  }

  /** Defaults (and fills what a create starts with). */
  prepare(obj: KObject, old?: KObject): void {
    applyDefaults(obj);
    if (old) prepareUpdate(obj, old);
    if (!old && obj.kind === 'Namespace') {
      (obj as Mutable<Namespace>).status = { phase: 'Active' };
    }
    if (!old && obj.kind === 'Job') generateJobSelector(obj as Mutable<Job>);
    if (obj.kind === 'Secret') mergeStringData(obj as Mutable<Secret>);
    if (!old && obj.kind === 'Pod') {
      const pod = obj as Pod;
      (pod as Mutable<Pod>).status = { phase: 'Pending', qosClass: 'BestEffort' };
    }
  }

  validate(obj: KObject, old?: KObject, subresource?: 'status' | 'ephemeralcontainers'): FieldError[] {
    const errs = validateObject(obj, old, { allowLoopbackEndpoints: this.#opts.allowLoopbackEndpoints, ...(subresource ? { subresource } : {}) });
    if (obj.kind === 'Endpoints' && !this.#opts.allowLoopbackEndpoints) {
      // pod IPs are loopback addresses here: those are fine in Endpoints, other loopback ones are not
      return errs.filter(
        (e: FieldError) =>
          !(isLoopbackComplaint(e) && clusterAddressAt(obj as Endpoints, e.field, this.#podCidrs(), this.#hostAddresses())),
      );
    }
    return errs;
  }

  #podCidrs(): Cidr[] {
    const out = [this.#opts.podCidr];
    for (const n of this.#nodes.values()) out.push(...n.cidrs);
    return out;
  }

  #hostAddresses(): string[] {
    const out = [...(this.#opts.hostAddresses ?? [])];
    for (const n of this.#nodes.values()) out.push(...n.addresses);
    return out;
  }

  /** Allocation for a write; returns field errors and changes nothing when it fails. */
  allocate(key: string, obj: KObject, old?: KObject): FieldError[] {
    if (obj.kind === 'Service') return this.services.apply(key, obj as Service, old as Service | undefined);
    if (obj.kind === 'Node') return this.nodeCidrs.apply(obj as Node, old as Node | undefined);
    return [];
  }

  release(obj: KObject): void {
    if (obj.kind === 'Service') this.services.release(obj as Service);
    if (obj.kind === 'Node') this.nodeCidrs.release(obj as Node);
  }
}

const isLoopbackComplaint = (e: FieldError): boolean =>
  e.type === 'FieldValueInvalid' && /loopback/.test(e.detail ?? '') && e.field.endsWith('.ip');

/** Is the address a complaint points at a pod IP or a node address (loopback by design here)? */
function clusterAddressAt(ep: Endpoints, field: string, podCidrs: readonly Cidr[], hosts: readonly string[]): boolean {
  const m = /^subsets\[(\d+)\]\.(addresses|notReadyAddresses)\[(\d+)\]\.ip$/.exec(field);
  if (!m) return false;
  const addr = ep.subsets?.[Number(m[1])]?.[m[2] as 'addresses' | 'notReadyAddresses']?.[Number(m[3])];
  return addr !== undefined && (podCidrs.some((c) => cidrContains(c, addr.ip)) || hosts.includes(addr.ip));
}

/**
 * As upstream's Job strategy: unless `spec.manualSelector`, a Job selects its pods by its own uid
 * (`batch.kubernetes.io/controller-uid`), and its template carries that label and the job name,
 * so `kubectl logs job/x` and selectors find exactly its pods.
 */
function generateJobSelector(job: Mutable<Job>): void {
  const uid = job.metadata?.uid;
  const spec = job.spec;
  if (!uid || !spec || spec.manualSelector) return;
  const name = job.metadata?.name ?? '';
  spec.selector = { matchLabels: { 'batch.kubernetes.io/controller-uid': uid } };
  // upstream's template is a struct, never nil: a Job without one gets an empty template here and
  // validation then names what it lacks (`spec.template.spec.containers: Required value`)
  const tpl = spec.template as unknown;
  if (tpl === undefined || tpl === null) spec.template = {};
  else if (typeof tpl !== 'object' || Array.isArray(tpl)) return;
  const tmeta = (spec.template.metadata ??= {});
  tmeta.labels = {
    ...tmeta.labels,
    'batch.kubernetes.io/controller-uid': uid,
    'batch.kubernetes.io/job-name': name,
    'controller-uid': uid,
    'job-name': name,
  };
}

/**
 * As upstream's Secret conversion: `stringData` is a write-only convenience: each entry is
 * written into `data` (base64, overriding a `data` entry of the same key) and the field dropped.
 */
function mergeStringData(secret: Mutable<Secret>): void {
  const sd = secret.stringData as unknown;
  if (sd === undefined) return;
  delete secret.stringData;
  if (sd === null || typeof sd !== 'object' || Array.isArray(sd)) return;
  const data: Record<string, string> = { ...(secret.data ?? {}) };
  for (const [k, v] of Object.entries(sd as Record<string, unknown>)) {
    if (typeof v === 'string') data[k] = Buffer.from(v, 'utf8').toString('base64');
  }
  secret.data = data;
}
