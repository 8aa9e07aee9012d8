/**
 * Ingress (networking.k8s.io/v1) and PodDisruptionBudget (policy/v1) validation, the subset of
 * upstream's ValidateIngress / ValidatePodDisruptionBudget a client can get wrong by hand:
 * backends name a Service and a port (by number or name) or a resource, paths have a valid
 * pathType and an absolute path for Exact/Prefix, TLS hosts are strings; a PDB sets at most one
 * of minAvailable/maxUnavailable as an integer ≥ 0 or a percentage, and a valid selector.
 */
import { type FieldError, type Path, invalid, notSupported, path, required } from '../field.js';
import { isValidPercent, nameIsDNS1035Label, nameIsDNSSubdomain } from '../names.js';
import { type Rec, isRec, validateObjectMeta } from './meta.js';

const PATH_TYPES = ['Exact', 'Prefix', 'ImplementationSpecific'];
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

function validateBackend(b: unknown, p: Path): FieldError[] {
  if (!isRec(b)) return [required(p, 'a backend needs service or resource')];
  const svc = b.service;
  if (svc !== undefined && b.resource !== undefined) return [invalid(p, '', 'cannot set both service and resource backends')];
  if (svc === undefined) return b.resource === undefined ? [invalid(p, '', 'one of service or resource must be set')] : [];
  if (!isRec(svc)) return [invalid(p.child('service'), svc, 'must be an object')];
  const errs: FieldError[] = [];
  if (typeof svc.name !== 'string' || svc.name === '') errs.push(required(p.child('service').child('name'), 'the name of a Service in the Ingress\'s namespace'));
  else for (const msg of nameIsDNS1035Label(svc.name, false)) errs.push(invalid(p.child('service').child('name'), svc.name, msg));
  const port = svc.port;
  if (!isRec(port)) errs.push(required(p.child('service').child('port'), 'port.number or port.name'));
  else if (port.number !== undefined && port.name !== undefined) errs.push(invalid(p.child('service').child('port'), '', 'cannot set both port name & port number'));
  else if (port.number !== undefined) {
    if (typeof port.number !== 'number' || !Number.isInteger(port.number) || port.number < 1 || port.number > 65535) {
      errs.push(invalid(p.child('service').child('port').child('number'), port.number, 'must be between 1 and 65535, inclusive'));
    }
  } else if (typeof port.name !== 'string' || port.name === '') errs.push(required(p.child('service').child('port'), 'port name or number is required'));
  return errs;
}

export function validateIngress(o: Rec): FieldError[] {
  const errs = validateObjectMeta(o.metadata, { namespaced: true, nameFn: nameIsDNSSubdomain }, path('metadata'));
  const spec = o.spec;
  if (spec === undefined || spec === null) return [...errs, required(path('spec'), 'either spec.defaultBackend or spec.rules must be set')];
  if (!isRec(spec)) return [...errs, invalid(path('spec'), spec, 'must be an object')];
  const sp = path('spec');
  if (spec.defaultBackend !== undefined) errs.push(...validateBackend(spec.defaultBackend, sp.child('defaultBackend')));
  const rules = list(spec.rules);
  if (spec.defaultBackend === undefined && rules.length === 0) errs.push(invalid(sp, '', 'either `defaultBackend` or `rules` must be specified'));
  rules.forEach((r, i) => {
    const rp = sp.child('rules').index(i);
    if (!isRec(r)) return void errs.push(invalid(rp, r, 'must be an object'));
    if (r.host !== undefined && (typeof r.host !== 'string' || /[:/]/.test(r.host))) errs.push(invalid(rp.child('host'), r.host, 'must be a DNS name, not an IP address or URL'));
    if (r.http === undefined) return;
    const paths = isRec(r.http) ? list(r.http.paths) : [];
    if (paths.length === 0) errs.push(required(rp.child('http').child('paths'), 'at least one path'));
    paths.forEach((x, j) => {
      const pp = rp.child('http').child('paths').index(j);
      if (!isRec(x)) return void errs.push(invalid(pp, x, 'must be an object'));
      if (x.pathType === undefined) errs.push(required(pp.child('pathType'), 'pathType must be specified'));
      else if (!PATH_TYPES.includes(x.pathType as string)) errs.push(notSupported(pp.child('pathType'), x.pathType, PATH_TYPES));
      if ((x.pathType === 'Exact' || x.pathType === 'Prefix') && (typeof x.path !== 'string' || !x.path.startsWith('/'))) {
        errs.push(invalid(pp.child('path'), x.path ?? '', 'must be an absolute path'));
      }
      errs.push(...validateBackend(x.backend, pp.child('backend')));
    });
  });
  list(spec.tls).forEach((t, i) => {
    if (!isRec(t)) errs.push(invalid(sp.child('tls').index(i), t, 'must be an object'));
    else list(t.hosts).forEach((h, j) => typeof h !== 'string' && errs.push(invalid(sp.child('tls').index(i).child('hosts').index(j), h, 'must be a string')));
  });
  return errs;
}

function intOrPercent(v: unknown, p: Path): FieldError[] {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 ? [] : [invalid(p, v, 'must be greater than or equal to 0')];
  if (typeof v === 'string') {
    const bad = isValidPercent(v);
    if (bad.length) return [invalid(p, v, bad[0])];
    return Number.parseInt(v, 10) > 100 ? [invalid(p, v, 'must not be greater than 100%')] : [];
  }
  return [invalid(p, v, 'must be an integer or percentage (e.g. 5 or "10%")')];
}

export function validatePodDisruptionBudget(o: Rec): FieldError[] {
  const errs = validateObjectMeta(o.metadata, { namespaced: true, nameFn: nameIsDNSSubdomain }, path('metadata'));
  const spec = o.spec;
  if (spec === undefined || spec === null) return errs;
  if (!isRec(spec)) return [...errs, invalid(path('spec'), spec, 'must be an object')];
  const sp = path('spec');
  if (spec.minAvailable !== undefined && spec.maxUnavailable !== undefined) {
    errs.push(invalid(sp, '', 'minAvailable and maxUnavailable cannot be both set'));
  }
  if (spec.minAvailable !== undefined) errs.push(...intOrPercent(spec.minAvailable, sp.child('minAvailable')));
  if (spec.maxUnavailable !== undefined) errs.push(...intOrPercent(spec.maxUnavailable, sp.child('maxUnavailable')));
  if (spec.selector !== undefined && spec.selector !== null && !isRec(spec.selector)) errs.push(invalid(sp.child('selector'), spec.selector, 'must be a label selector'));
  const policy = spec.unhealthyPodEvictionPolicy;
  if (policy !== undefined && policy !== 'IfHealthyBudget' && policy !== 'AlwaysAllow') {
    errs.push(notSupported(sp.child('unhealthyPodEvictionPolicy'), policy, ['AlwaysAllow', 'IfHealthyBudget']));
  }
  return errs;
}
