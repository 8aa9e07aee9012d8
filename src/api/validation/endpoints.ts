/**
 * Endpoints validation as upstream `ValidateEndpoints` (reference §3.6). Loopback addresses are
 * rejected as upstream unless the caller allows them: kubeloop pods live on 127.x addresses, so
 * its own endpoints controller writes with `allowLoopback`, and users get a hint naming the flag.
 */
import { type FieldError, type Path, invalid, notSupported, path, required } from '../field.js';
import {
  IP_ERROR,
  isDNS1123Label,
  isQualifiedName,
  isValidPortNum,
  nameIsDNSSubdomain,
  parseIP,
} from '../names.js';
import { type Rec, list, rec, str, validateObjectMeta, validateObjectMetaUpdate } from './meta.js';
import { LOOPBACK_DETAIL, PROTOCOLS, nonSpecialIPErrors } from './service.js';

export const LOOPBACK_HINT = '(kubeloop: start the daemon with --allow-loopback-endpoints to allow this)';

export interface EndpointsOptions {
  allowLoopback?: boolean;
}

function validateAddress(addr: Rec, p: Path, opts: EndpointsOptions, errs: FieldError[]): void {
  const ip = str(addr.ip, p.child('ip'), errs);
  if (ip !== null && !parseIP(ip)) errs.push(invalid(p.child('ip'), ip, IP_ERROR));
  const hostname = str(addr.hostname, p.child('hostname'), errs);
  if (hostname) for (const m of isDNS1123Label(hostname)) errs.push(invalid(p.child('hostname'), hostname, m));
  if (addr.nodeName !== undefined && addr.nodeName !== null) {
    const nn = str(addr.nodeName, p.child('nodeName'), errs);
    if (nn !== null) for (const m of nameIsDNSSubdomain(nn, false)) errs.push(invalid(p.child('nodeName'), nn, m));
  }
  if (ip === null) return;
  for (const e of nonSpecialIPErrors(ip, p.child('ip'))) {
    if (e.detail === LOOPBACK_DETAIL) {
      if (opts.allowLoopback) continue;
      errs.push({ ...e, detail: `${LOOPBACK_DETAIL} ${LOOPBACK_HINT}` });
    } else {
      errs.push(e);
    }
  }
}

function validatePort(port: Rec, requireName: boolean, p: Path, errs: FieldError[]): void {
  const name = str(port.name, p.child('name'), errs);
  if (requireName && name === '') errs.push(required(p.child('name')));
  else if (name) for (const m of isDNS1123Label(name)) errs.push(invalid(p.child('name'), name, m));
  for (const m of isValidPortNum(port.port ?? 0)) errs.push(invalid(p.child('port'), port.port ?? 0, m));
  const protocol = str(port.protocol, p.child('protocol'), errs);
  if (protocol === '') errs.push(required(p.child('protocol')));
  else if (protocol !== null && !(PROTOCOLS as readonly string[]).includes(protocol)) {
    errs.push(notSupported(p.child('protocol'), protocol, PROTOCOLS));
  }
  if (port.appProtocol !== undefined && port.appProtocol !== null) {
    const ap = str(port.appProtocol, p.child('appProtocol'), errs);
    if (ap !== null) for (const m of isQualifiedName(ap)) errs.push(invalid(p.child('appProtocol'), ap, m));
  }
}

export function validateEndpoints(ep: Rec, opts: EndpointsOptions = {}): FieldError[] {
  const errs = validateObjectMeta(ep.metadata, { namespaced: true, nameFn: nameIsDNSSubdomain }, path('metadata'));
  const subsetsPath = path('subsets');
  list(ep.subsets, subsetsPath, errs).forEach((x, i) => {
    const sp = subsetsPath.index(i);
    const ss = rec(x, sp, errs);
    if (!ss) return;
    const addrs = list(ss.addresses, sp.child('addresses'), errs);
    const notReady = list(ss.notReadyAddresses, sp.child('notReadyAddresses'), errs);
    // a subset needs addresses; ports may be empty (headless services)
    if (addrs.length === 0 && notReady.length === 0) errs.push(required(sp, 'must specify `addresses` or `notReadyAddresses`'));
    addrs.forEach((a, j) => {
      const r = rec(a, sp.child('addresses').index(j), errs);
      if (r) validateAddress(r, sp.child('addresses').index(j), opts, errs);
    });
    notReady.forEach((a, j) => {
      const r = rec(a, sp.child('notReadyAddresses').index(j), errs);
      if (r) validateAddress(r, sp.child('notReadyAddresses').index(j), opts, errs);
    });
    const ports = list(ss.ports, sp.child('ports'), errs);
    ports.forEach((pt, j) => {
      const r = rec(pt, sp.child('ports').index(j), errs);
      if (r) validatePort(r, ports.length > 1, sp.child('ports').index(j), errs);
    });
  });
  return errs;
}

export function validateEndpointsUpdate(ep: Rec, old: Rec, opts: EndpointsOptions = {}): FieldError[] {
  return [...validateObjectMetaUpdate(ep.metadata, old.metadata, path('metadata')), ...validateEndpoints(ep, opts)];
}
