/**
 * Lease (coordination.k8s.io/v1) validation, as upstream's `ValidateLease`: metadata, then the
 * spec's numbers (`leaseDurationSeconds` > 0, `leaseTransitions` ≥ 0) and, since the object
 * arrives as JSON, the type of every spec field (MicroTimes are RFC 3339 strings).
 */
import { type FieldError, invalid, path } from '../field.js';
import { nameIsDNSSubdomain } from '../names.js';
import { type Rec, isRec, validateObjectMeta } from './meta.js';

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

function int32(spec: Rec, field: string, errs: FieldError[]): number | undefined {
  const v = spec[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v > 2147483647 || v < -2147483648) {
    errs.push(invalid(path('spec', field), v, 'must be a 32-bit integer'));
    return undefined;
  }
  return v;
}

export function validateLease(lease: Rec): FieldError[] {
  const errs = validateObjectMeta(lease.metadata, { namespaced: true, nameFn: nameIsDNSSubdomain }, path('metadata'));
  const spec = lease.spec;
  if (spec === undefined || spec === null) return errs;
  if (!isRec(spec)) return [...errs, invalid(path('spec'), spec, 'must be an object')];
  const duration = int32(spec, 'leaseDurationSeconds', errs);
  if (duration !== undefined && duration <= 0) errs.push(invalid(path('spec', 'leaseDurationSeconds'), duration, 'must be greater than 0'));
  const transitions = int32(spec, 'leaseTransitions', errs);
  if (transitions !== undefined && transitions < 0) {
    errs.push(invalid(path('spec', 'leaseTransitions'), transitions, 'must be greater than or equal to 0'));
  }
  const holder = spec.holderIdentity;
  if (holder !== undefined && holder !== null && typeof holder !== 'string') errs.push(invalid(path('spec', 'holderIdentity'), holder, 'must be a string'));
  for (const f of ['acquireTime', 'renewTime']) {
    const t = spec[f];
    if (t === undefined || t === null) continue;
    if (typeof t !== 'string' || !RFC3339.test(t) || Number.isNaN(Date.parse(t))) {
      errs.push(invalid(path('spec', f), t, 'must be an RFC 3339 time, e.g. 2006-01-02T15:04:05.000000Z'));
    }
  }
  return errs;
}
