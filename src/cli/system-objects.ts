import { isDeepStrictEqual } from 'node:util';
import type { Endpoints, KObject, Service } from '../api/types.js';
import { isApiError } from '../api/errors.js';
import type { Store } from '../store/types.js';

/**
 * The objects a cluster has before anyone applies anything: `default/kubernetes` (the API) and
 * `kube-system/kube-dns` (the DNS server). Both are selector-less with hand-written Endpoints on
 * the node address, like the host-network servers they describe. The API's port is the real one
 * (6443 by default: 443 would need privilege). kube-dns is a ClusterIP Service on port 53, as in
 * every cluster: the proxy listens on `<its ClusterIP>:53` (UDP and TCP) and forwards to the DNS
 * server's real address, so that address is a `nameserver` line a pod's resolv.conf can hold.
 * Where port 53 cannot be bound (`dnsClusterIP: 'None'`), kube-dns is headless instead: DNS
 * answers its name with the server's address and its SRV records with the real port, pods keep
 * the host's resolv.conf (a nameserver that does not answer would stall every lookup), and `up`
 * prints the fix (cli/port53.ts).
 *
 * Several daemons on one store (`local`): each node lists its own API and DNS server under its
 * nodeName, at the loopback address it serves them on (which only that host reaches), and both
 * Services have `internalTrafficPolicy: Local`, so each node's proxy sends their ClusterIP
 * traffic to its own node's API and DNS server only (upstream's semantics: no local endpoint,
 * no traffic). A pod resolves and reaches `kubernetes.default` on whichever host it runs.
 */
export function systemObjects(o: {
  /** several daemons on one store: the Services are internalTrafficPolicy Local */
  local?: boolean;
  apiHost?: string;
  apiPort?: number;
  apiClusterIP?: string;
  dnsHost?: string;
  dnsPort?: number;
  /** kube-dns's preferred ClusterIP (upstream's convention: the 10th address of the range); 'None': headless */
  dnsClusterIP?: string;
}): KObject[] {
  const out: KObject[] = [];
  if (o.apiHost && o.apiPort) {
    const svc: Service = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'kubernetes', namespace: 'default', labels: { component: 'apiserver', provider: 'kubernetes' } },
      // the first IP of the range, as upstream: the API's certificate names it (cli/daemon.ts apiHosts)
      spec: {
        type: 'ClusterIP',
        ...(o.apiClusterIP ? { clusterIP: o.apiClusterIP } : {}),
        ...(o.local ? { internalTrafficPolicy: 'Local' } : {}),
        ports: [{ name: 'https', port: o.apiPort, protocol: 'TCP', targetPort: o.apiPort }],
      },
    };
    const ep: Endpoints = {
      apiVersion: 'v1',
      kind: 'Endpoints',
      metadata: { name: 'kubernetes', namespace: 'default', labels: { 'endpointslice.kubernetes.io/skip-mirror': 'true' } },
      subsets: [{ addresses: [{ ip: o.apiHost }], ports: [{ name: 'https', port: o.apiPort, protocol: 'TCP' }] }],
    };
    out.push(svc, ep);
  }
  if (o.dnsHost && o.dnsPort) {
    const svc: Service = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: {
        name: 'kube-dns',
        namespace: 'kube-system',
        labels: { 'k8s-app': 'kube-dns', 'kubernetes.io/name': 'CoreDNS', 'kubernetes.io/cluster-service': 'true' },
      },
      spec: {
        type: 'ClusterIP',
        ...(o.dnsClusterIP ? { clusterIP: o.dnsClusterIP } : {}),
        ...(o.local && o.dnsClusterIP !== 'None' ? { internalTrafficPolicy: 'Local' } : {}),
        ports: [
          { name: 'dns', port: 53, protocol: 'UDP', targetPort: o.dnsPort },
          { name: 'dns-tcp', port: 53, protocol: 'TCP', targetPort: o.dnsPort },
        ],
      },
    };
    const ep: Endpoints = {
      apiVersion: 'v1',
      kind: 'Endpoints',
      metadata: { name: 'kube-dns', namespace: 'kube-system', labels: { 'k8s-app': 'kube-dns' } },
      subsets: [
        {
          addresses: [{ ip: o.dnsHost }],
          ports: [
            { name: 'dns', port: o.dnsPort, protocol: 'UDP' },
            { name: 'dns-tcp', port: o.dnsPort, protocol: 'TCP' },
          ],
        },
      ],
    };
    out.push(svc, ep);
  }
  return out;
}

/**
 * Creates or refreshes each object (ports move when the daemon restarts on other ports). A
 * preferred ClusterIP is asked for only at creation, and given up when it is taken; an existing
 * Service keeps its own.
 *
 * With `nodeName` (several daemons on one store), each daemon owns only its own part: its
 * addresses in the Endpoints (marked with `nodeName`, merged beside the other nodes'; the node
 * lifecycle controller moves a NotReady node's to notReadyAddresses, a leaving node removes its
 * own), and the Services are made by whoever comes first and not rewritten by the others (their
 * ports are the first daemon's; the Endpoints carry each node's real port under the same name).
 */
export async function ensureObjects(store: Store, objs: readonly KObject[], o: { nodeName?: string } = {}): Promise<void> {
  for (const obj of objs) {
    const m = obj.metadata!;
    let cur = await store.tryGet(obj.kind!, m.namespace, m.name!);
    if (o.nodeName && obj.kind === 'Endpoints') {
      await mergeNodeEndpoints(store, obj as Endpoints, o.nodeName);
      continue;
    }
    if (o.nodeName && cur && headless(cur) === headless(obj)) {
      // made by another daemon (or an older version): only the traffic policy is brought along
      const want = (obj as Service).spec?.internalTrafficPolicy;
      if (obj.kind === 'Service' && want && (cur as Service).spec?.internalTrafficPolicy !== want) {
        await store.mutate<Service>('Service', m.namespace, m.name!, (s) => {
          if (s.spec?.internalTrafficPolicy === want) return false;
          s.spec = { ...s.spec, internalTrafficPolicy: want };
        });
      }
      continue;
    }
    try {
      if (cur && headless(cur) !== headless(obj)) {
        // clusterIP is immutable: a state dir from before kube-dns had a ClusterIP gets it recreated
        await store.delete(obj.kind!, m.namespace, m.name!);
        cur = undefined;
      }
      if (!cur) await createPreferring(store, obj);
      else await store.update({ ...withoutClusterIP(obj), metadata: { ...m, resourceVersion: cur.metadata.resourceVersion } });
    } catch (e) {
      if (!isApiError(e, 'Conflict')) throw e;
    }
  }
}

const headless = (obj: KObject): boolean => obj.kind === 'Service' && (obj as Service).spec?.clusterIP === 'None';

function withoutClusterIP(obj: KObject): KObject {
  const spec = (obj as Service).spec;
  if (obj.kind !== 'Service' || !spec?.clusterIP || spec.clusterIP === 'None') return obj;
  const { clusterIP: _ip, ...rest } = spec;
  return { ...obj, spec: rest } as Service;
}

async function createPreferring(store: Store, obj: KObject): Promise<void> {
  try {
    await store.create(obj);
  } catch (e) {
    const bare = withoutClusterIP(obj);
    if (bare === obj || !isApiError(e, 'Invalid')) throw e;
    await store.create(bare);
  }
}

type Subset = NonNullable<Endpoints['subsets']>[number];

/** the subsets without this node's addresses (and without unattributed ones, left by a daemon of an older version) */
function withoutNode(subsets: readonly Subset[], nodeName: string): Subset[] {
  const out: Subset[] = [];
  for (const s of subsets) {
    const keep = (list: Subset['addresses']) => (list ?? []).filter((a) => a.nodeName && a.nodeName !== nodeName);
    const addresses = keep(s.addresses);
    const notReadyAddresses = keep(s.notReadyAddresses);
    if (!addresses.length && !notReadyAddresses.length) continue;
    out.push({ ...(addresses.length ? { addresses } : {}), ...(notReadyAddresses.length ? { notReadyAddresses } : {}), ports: s.ports });
  }
  return out;
}

/** This node's addresses of `ep` in place of what it had there before; the other nodes' kept. */
async function mergeNodeEndpoints(store: Store, ep: Endpoints, nodeName: string): Promise<void> {
  const mine = (ep.subsets ?? []).map((s) => ({ ...s, addresses: (s.addresses ?? []).map((a) => ({ ...a, nodeName })) }));
  const m = ep.metadata!;
  for (let attempt = 0; attempt < 5; attempt++) {
    const cur = await store.tryGet<Endpoints>('Endpoints', m.namespace, m.name!);
    if (!cur) {
      try {
        await store.create<Endpoints>({ ...ep, subsets: mine });
        return;
      } catch (e) {
        if (isApiError(e, 'AlreadyExists')) continue;
        throw e;
      }
    }
    await store.mutate<Endpoints>('Endpoints', m.namespace, m.name!, (e) => {
      const subsets = withoutNode(e.subsets ?? [], nodeName);
      for (const s of mine) {
        const same = subsets.find((x) => isDeepStrictEqual(x.ports, s.ports));
        if (same) same.addresses = [...(same.addresses ?? []), ...(s.addresses ?? [])];
        else subsets.push(s);
      }
      e.metadata = { ...e.metadata, labels: { ...e.metadata?.labels, ...m.labels } };
      e.subsets = subsets;
    });
    return;
  }
}

/** A node that leaves the cluster takes its addresses out of the system Endpoints. */
export async function removeNodeEndpoints(store: Store, nodeName: string): Promise<void> {
  for (const [ns, name] of [['default', 'kubernetes'], ['kube-system', 'kube-dns']]) {
    await store.mutate<Endpoints>('Endpoints', ns, name, (e) => {
      const subsets = withoutNode(e.subsets ?? [], nodeName);
      if (isDeepStrictEqual(subsets, e.subsets ?? [])) return false;
      e.subsets = subsets;
    });
  }
}
