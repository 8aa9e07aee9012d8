/** networking.k8s.io/v1 Ingress: stored and validated; no ingress controller routes it (status.loadBalancer stays empty). */
import { defineKind, infoOf } from '../kind.js';
import { validateIngress } from '../validation/ingress-pdb.js';
import { withMetaUpdate } from './meta-only.js';

type Rec = Record<string, unknown>;
const recs = (v: unknown): Rec[] => (Array.isArray(v) ? v.filter((x): x is Rec => x !== null && typeof x === 'object') : []);

export const ingress = defineKind({
  info: infoOf('Ingress', 'networking.k8s.io/v1', 'ingresses', { shortNames: ['ing'], hasStatus: true }),
  model: 'V1Ingress',
  validate: withMetaUpdate(validateIngress),
  // upstream `ingressColumnDefinitions`: Name, Class, Hosts, Address, Ports, Age
  columns: [
    { name: 'Class', value: (o) => String((o.spec as Rec | undefined)?.ingressClassName ?? '<none>') },
    {
      name: 'Hosts',
      value: (o) => {
        const hosts = recs((o.spec as Rec | undefined)?.rules).map((r) => (typeof r.host === 'string' && r.host ? r.host : '*'));
        return hosts.length ? hosts.join(',') : '*';
      },
    },
    {
      name: 'Address',
      value: (o) =>
        recs(((o.status as Rec | undefined)?.loadBalancer as Rec | undefined)?.ingress)
          .map((i) => String(i.ip ?? i.hostname ?? ''))
          .filter(Boolean)
          .join(','),
    },
    { name: 'Ports', value: (o) => (recs((o.spec as Rec | undefined)?.tls).length ? '80, 443' : '80') },
  ],
});
