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
 */
export function systemObjects(o: {
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
      spec: { type: 'ClusterIP', ...(o.apiClusterIP ? { clusterIP: o.apiClusterIP } : {}), ports: [{ name: 'https', port: o.apiPort, protocol: 'TCP', targetPort: o.apiPort }] },
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
 */
export async function ensureObjects(store: Store, objs: readonly KObject[]): Promise<void> {
  for (const obj of objs) {
    const m = obj.metadata!;
    let cur = await store.tryGet(obj.kind!, m.namespace, m.name!);
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
