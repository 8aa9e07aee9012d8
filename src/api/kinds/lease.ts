/** coordination.k8s.io/v1 Lease: leader election (controllers/leader.ts). */
import { defineKind, infoOf } from '../kind.js';
import { validateLease } from '../validation/lease.js';
import { withMetaUpdate } from './meta-only.js';

export const lease = defineKind({
  info: infoOf('Lease', 'coordination.k8s.io/v1', 'leases'),
  model: 'V1Lease',
  validate: withMetaUpdate(validateLease),
  // upstream `leaseColumnDefinitions`: Name, Holder, Age
  columns: [{ name: 'Holder', value: (o) => String((o.spec as { holderIdentity?: string } | undefined)?.holderIdentity ?? '') }],
});
