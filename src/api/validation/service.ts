/**
 * Service validation as upstream `ValidateService` / `ValidateServiceUpdate` /
 * `ValidateLoadBalancerStatus` (pkg/apis/core/validation/validation.go, ~v1.33), in upstream's
 * rule order. Runs on the defaulted object. Not here (the allocators own them): clusterIP inside
 * the service CIDR, nodePort range and collisions, families the cluster is not configured for.
 */
import { externallyAccessible, prepareServiceUpdate } from '../defaults.js';
import { type FieldError, Path, duplicate, forbidden, invalid, notSupported, path, required } from '../field.js';
import {
  CIDR_ERROR,
  IP_ERROR,
  isDNS1123Label,
  isDNS1123Subdomain,
  isDualStack,
  isIPv6,
  isQualifiedName,
  isValidCIDR,
  isValidPortName,
  isValidPortNum,
  nameIsDNS1035Label,
  parseIP,
  ipIsLinkLocalMulticast,
  ipIsLinkLocalUnicast,
  ipIsLoopback,
  ipIsUnspecified,
} from '../names.js';
import {
  type Rec,
  int,
  isRec,
  jsonEqual,
  list,
  rec,
  str,
  validateLabels,
  validateObjectMeta,
  validateObjectMetaUpdate,
} from './meta.js';

export const PROTOCOLS = ['SCTP', 'TCP', 'UDP'] as const;
const SERVICE_TYPES = ['ClusterIP', 'ExternalName', 'LoadBalancer', 'NodePort'];
const AFFINITIES = ['ClientIP', 'None'];
const TRAFFIC_POLICIES = ['Cluster', 'Local'];
const IP_FAMILIES = ['IPv4', 'IPv6'];
const IP_FAMILY_POLICIES = ['PreferDualStack', 'RequireDualStack', 'SingleStack'];
const LB_IP_MODES = ['Proxy', 'VIP'];
export const MAX_CLIENT_IP_AFFINITY_SECONDS = 86400;
export const LOOPBACK_DETAIL = 'may not be in the loopback range (127.0.0.0/8, ::1/128)';
export const LOOPBACK_EXTERNAL_IP_HINT = '(kubeloop: start the daemon with --allow-loopback-endpoints to allow loopback externalIPs)';

const ANN_TOPOLOGY_MODE = 'service.kubernetes.io/topology-mode';
const ANN_TOPOLOGY_HINTS = 'service.kubernetes.io/topology-aware-hints';
const ANN_LB_SOURCE_RANGES = 'service.beta.kubernetes.io/load-balancer-source-ranges';

const specOf = (svc: unknown): Rec => (isRec(svc) && isRec(svc.spec) ? svc.spec : {});
const stringList = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);

/** `clusterIPs == ["None"]` */
export function isHeadlessService(svc: unknown): boolean {
  const ips = specOf(svc).clusterIPs;
  return Array.isArray(ips) && ips.length === 1 && ips[0] === 'None';
}

/** LoadBalancer with externalTrafficPolicy Local (`NeedsHealthCheck`). */
export function needsHealthCheck(spec: Rec): boolean {
  return spec.type === 'LoadBalancer' && spec.externalTrafficPolicy === 'Local';
}

/** `ValidatePortNumOrName`: an int must be a port number, a string an IANA_SVC_NAME. */
export function validatePortNumOrName(v: unknown, p: Path): FieldError[] {
  if (typeof v === 'string') return isValidPortName(v).map((m) => invalid(p, v, m));
  const n = v === undefined || v === null ? 0 : v; // intstr zero value is Int 0
  return isValidPortNum(n).map((m) => invalid(p, n, m));
}

/** IP then `ValidateNonSpecialIP` (external IPs; Endpoints use their own order). */
export function nonSpecialIPErrors(ip: string, p: Path): FieldError[] {
  const parsed = parseIP(ip);
  if (!parsed) return [invalid(p, ip, 'must be a valid IP address')];
  const errs: FieldError[] = [];
  if (ipIsUnspecified(parsed)) errs.push(invalid(p, ip, `may not be unspecified (${ip})`));
  if (ipIsLoopback(parsed)) errs.push(invalid(p, ip, LOOPBACK_DETAIL));
  if (ipIsLinkLocalUnicast(parsed)) errs.push(invalid(p, ip, 'may not be in the link-local range (169.254.0.0/16, fe80::/10)'));
  if (ipIsLinkLocalMulticast(parsed)) {
    errs.push(invalid(p, ip, 'may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)'));
  }
  return errs;
}

function validateServicePort(port: Rec, requireName: boolean, names: Set<string>, p: Path, errs: FieldError[]): void {
  const name = str(port.name, p.child('name'), errs);
  if (requireName && name === '') {
    errs.push(required(p.child('name')));
  } else if (name) {
    for (const m of isDNS1123Label(name)) errs.push(invalid(p.child('name'), name, m));
    if (names.has(name)) errs.push(duplicate(p.child('name'), name));
    else names.add(name);
  }
  for (const m of isValidPortNum(port.port ?? 0)) errs.push(invalid(p.child('port'), port.port ?? 0, m));
  const protocol = str(port.protocol, p.child('protocol'), errs);
  if (protocol === '') errs.push(required(p.child('protocol')));
  else if (protocol !== null && !(PROTOCOLS as readonly string[]).includes(protocol)) {
    errs.push(notSupported(p.child('protocol'), protocol, PROTOCOLS));
  }
  errs.push(...validatePortNumOrName(port.targetPort, p.child('targetPort')));
  if (port.appProtocol !== undefined && port.appProtocol !== null) {
    const ap = str(port.appProtocol, p.child('appProtocol'), errs);
    if (ap !== null) for (const m of isQualifiedName(ap)) errs.push(invalid(p.child('appProtocol'), ap, m));
  }
  // upstream tolerates targetPort != port on headless services "for compatibility"
}

function validateClientIPAffinityConfig(cfg: unknown, p: Path, errs: FieldError[]): void {
  const detail = 'when session affinity type is ClientIP';
  if (!isRec(cfg)) {
    errs.push(required(p, detail));
    return;
  }
  if (!isRec(cfg.clientIP)) {
    errs.push(required(p.child('clientIP'), detail));
    return;
  }
  const tp = p.child('clientIP').child('timeoutSeconds');
  const t = cfg.clientIP.timeoutSeconds;
  if (t === undefined || t === null) {
    errs.push(required(tp, detail));
    return;
  }
  if (!Number.isInteger(t) || (t as number) <= 0 || (t as number) > MAX_CLIENT_IP_AFFINITY_SECONDS) {
    errs.push(invalid(tp, t, `must be greater than 0 and less than ${MAX_CLIENT_IP_AFFINITY_SECONDS}`));
  }
}

/** `ValidateServiceClusterIPsRelatedFields` (skipped for ExternalName, whose rules came earlier). */
function validateClusterIPsRelatedFields(spec: Rec, headless: boolean, errs: FieldError[]): void {
  if (spec.type === 'ExternalName') return;
  const specPath = path('spec');
  const ipsPath = specPath.child('clusterIPs');
  const famPath = specPath.child('ipFamilies');
  const clusterIP = str(spec.clusterIP, specPath.child('clusterIP'), errs) ?? '';
  const rawIPs = list(spec.clusterIPs, ipsPath, errs);
  const ips = rawIPs.map((x) => (typeof x === 'string' ? x : String(x)));

  if (clusterIP !== '') {
    if (ips.length === 0) errs.push(required(ipsPath));
    else if (ips[0] !== clusterIP) errs.push(invalid(ipsPath, rawIPs, 'first value must match `clusterIP`'));
  } else if (ips.length !== 0) {
    errs.push(invalid(ipsPath, rawIPs, 'must be empty when `clusterIP` is not specified'));
  }

  const families = list(spec.ipFamilies, famPath, errs);
  const seen = new Set<unknown>();
  families.forEach((f, i) => {
    if (!IP_FAMILIES.includes(f as string)) errs.push(notSupported(famPath.index(i), f, IP_FAMILIES));
    if (seen.has(f)) errs.push(duplicate(famPath.index(i), f));
    seen.add(f);
  });

  if (spec.ipFamilyPolicy !== undefined && spec.ipFamilyPolicy !== null && !IP_FAMILY_POLICIES.includes(spec.ipFamilyPolicy as string)) {
    errs.push(notSupported(specPath.child('ipFamilyPolicy'), spec.ipFamilyPolicy, IP_FAMILY_POLICIES));
  }

  let hasInvalidIPs = false;
  rawIPs.forEach((ip, i) => {
    if (i === 0 && ip === 'None') {
      if (rawIPs.length > 1) {
        hasInvalidIPs = true;
        errs.push(invalid(ipsPath, rawIPs, "'None' must be the first and only value"));
      }
      return;
    }
    if (!parseIP(ip)) {
      hasInvalidIPs = true;
      errs.push(invalid(ipsPath.index(i), ip, IP_ERROR));
    }
  });
  if (rawIPs.length > 2) errs.push(invalid(ipsPath, rawIPs, 'may only hold up to 2 values'));
  if (hasInvalidIPs) return;

  if (ips.length > 1 && !isDualStack(ips)) {
    errs.push(invalid(ipsPath, rawIPs, 'may specify no more than one IP for each IP family'));
  }
  if (!headless && ips.length > 0 && families.length > 0) {
    for (let i = 0; i < ips.length && i < families.length; i++) {
      if (families[i] === 'IPv4' && isIPv6(ips[i])) {
        errs.push(invalid(ipsPath.index(i), ips[i], `expected an IPv4 value as indicated by \`ipFamilies[${i}]\``));
      }
      if (families[i] === 'IPv6' && !isIPv6(ips[i])) {
        errs.push(invalid(ipsPath.index(i), ips[i], `expected an IPv6 value as indicated by \`ipFamilies[${i}]\``));
      }
    }
  }
}

export interface ServiceValidationOptions {
  /**
   * Accept `spec.externalIPs` in 127.0.0.0/8 and ::1 (upstream rejects them): on this machine
   * those are the only external IPs the proxy can listen on without root. Daemon flag
   * `--allow-loopback-endpoints`.
   */
  allowLoopbackExternalIPs?: boolean;
}

/** `ValidateService`: every create-time rule, in upstream order. */
export function validateService(svc: Rec, opts: ServiceValidationOptions = {}): FieldError[] {
  const errs: FieldError[] = [];
  const metaPath = path('metadata');
  errs.push(...validateObjectMeta(svc.metadata, { namespaced: true, nameFn: nameIsDNS1035Label }, metaPath));
  const meta = isRec(svc.metadata) ? svc.metadata : {};
  const annotations = isRec(meta.annotations) ? meta.annotations : {};

  if (ANN_TOPOLOGY_MODE in annotations && ANN_TOPOLOGY_HINTS in annotations) {
    const mode = annotations[ANN_TOPOLOGY_MODE];
    if (mode !== annotations[ANN_TOPOLOGY_HINTS]) {
      errs.push(
        invalid(
          metaPath.child('annotations').key(ANN_TOPOLOGY_MODE),
          mode,
          `must match annotations[${ANN_TOPOLOGY_HINTS}] when both are specified`,
        ),
      );
    }
  }

  const specPath = path('spec');
  const spec = rec(svc.spec, specPath, errs) ?? {};
  const type = spec.type;
  const headless = isHeadlessService(svc);
  const portsPath = specPath.child('ports');
  const ports = list(spec.ports, portsPath, errs);

  if (ports.length === 0 && !headless && type !== 'ExternalName') errs.push(required(portsPath));

  switch (type) {
    case 'LoadBalancer':
      if (headless) errs.push(invalid(specPath.child('clusterIPs').index(0), 'None', "may not be set to 'None' for LoadBalancer services"));
      break;
    case 'NodePort':
      if (headless) errs.push(invalid(specPath.child('clusterIPs').index(0), 'None', "may not be set to 'None' for NodePort services"));
      break;
    case 'ExternalName': {
      if (Array.isArray(spec.clusterIPs) && spec.clusterIPs.length > 0) {
        errs.push(forbidden(specPath.child('clusterIPs'), 'may not be set for ExternalName services'));
      }
      if (Array.isArray(spec.ipFamilies) && spec.ipFamilies.length > 0) {
        errs.push(forbidden(specPath.child('ipFamilies'), 'may not be set for ExternalName services'));
      }
      if (spec.ipFamilyPolicy !== undefined && spec.ipFamilyPolicy !== null) {
        errs.push(forbidden(specPath.child('ipFamilyPolicy'), 'may not be set for ExternalName services'));
      }
      const en = str(spec.externalName, specPath.child('externalName'), errs);
      if (en !== null) {
        // the value (a CNAME) may have one trailing dot to mark it fully qualified
        const cname = en.endsWith('.') ? en.slice(0, -1) : en;
        if (cname.length > 0) for (const m of isDNS1123Subdomain(cname)) errs.push(invalid(specPath.child('externalName'), cname, m));
        else errs.push(required(specPath.child('externalName')));
      }
      break;
    }
  }

  const portRecs: Rec[] = [];
  const names = new Set<string>();
  ports.forEach((x, i) => {
    const port = rec(x, portsPath.index(i), errs);
    if (!port) return;
    portRecs[i] = port;
    validateServicePort(port, ports.length > 1, names, portsPath.index(i), errs);
  });

  if (spec.selector !== undefined && spec.selector !== null) errs.push(...validateLabels(spec.selector, specPath.child('selector')));

  const affinity = spec.sessionAffinity;
  if (affinity === undefined || affinity === null || affinity === '') {
    errs.push(required(specPath.child('sessionAffinity')));
  } else if (!AFFINITIES.includes(affinity as string)) {
    errs.push(notSupported(specPath.child('sessionAffinity'), affinity, AFFINITIES));
  }
  if (affinity === 'ClientIP') {
    validateClientIPAffinityConfig(spec.sessionAffinityConfig, specPath.child('sessionAffinityConfig'), errs);
  } else if (affinity === 'None' && spec.sessionAffinityConfig !== undefined && spec.sessionAffinityConfig !== null) {
    errs.push(forbidden(specPath.child('sessionAffinityConfig'), 'must not be set when session affinity is None'));
  }

  validateClusterIPsRelatedFields(spec, headless, errs);

  const eipPath = specPath.child('externalIPs');
  list(spec.externalIPs, eipPath, errs).forEach((ip, i) => {
    if (typeof ip !== 'string' || !parseIP(ip)) {
      errs.push(invalid(eipPath.index(i), ip, IP_ERROR));
      return;
    }
    for (const e of nonSpecialIPErrors(ip, eipPath.index(i))) {
      if (e.detail !== LOOPBACK_DETAIL) errs.push(e);
      else if (!opts.allowLoopbackExternalIPs) errs.push({ ...e, detail: `${LOOPBACK_DETAIL} ${LOOPBACK_EXTERNAL_IP_HINT}` });
    }
  });

  if (type === undefined || type === null || type === '') errs.push(required(specPath.child('type')));
  else if (!SERVICE_TYPES.includes(type as string)) errs.push(notSupported(specPath.child('type'), type, SERVICE_TYPES));

  if (type === 'ClusterIP') {
    portRecs.forEach((port, i) => {
      if (port.nodePort !== undefined && port.nodePort !== null && port.nodePort !== 0) {
        errs.push(forbidden(portsPath.index(i).child('nodePort'), "may not be used when `type` is 'ClusterIP'"));
      }
    });
  }

  // duplicate nodePorts by (protocol, nodePort); the same number on TCP and UDP is fine
  const nodePorts = new Set<string>();
  portRecs.forEach((port, i) => {
    const np = int(port.nodePort, portsPath.index(i).child('nodePort'), errs);
    if (!np) return;
    const key = `${String(port.protocol)}/${np}`;
    if (nodePorts.has(key)) errs.push(duplicate(portsPath.index(i).child('nodePort'), np));
    nodePorts.add(key);
  });

  // duplicate ports by (protocol, port)
  const seenPorts = new Set<string>();
  portRecs.forEach((port, i) => {
    const key = `${String(port.protocol)}/${String(port.port)}`;
    if (seenPorts.has(key)) errs.push(duplicate(portsPath.index(i), { protocol: port.protocol, port: port.port }));
    seenPorts.add(key);
  });

  // loadBalancerSourceRanges field (note upstream's capital L in the path), else the annotation
  const ranges = Array.isArray(spec.loadBalancerSourceRanges) ? spec.loadBalancerSourceRanges : [];
  if (ranges.length > 0) {
    const rp = specPath.child('LoadBalancerSourceRanges');
    if (type !== 'LoadBalancer') errs.push(forbidden(rp, "may only be used when `type` is 'LoadBalancer'"));
    ranges.forEach((r, i) => {
      // space-padded values are tolerated, a historical accident of the annotation transition
      const value = typeof r === 'string' ? r.trim() : r;
      if (!isValidCIDR(value)) errs.push(invalid(rp.index(i), value, CIDR_ERROR));
    });
  } else if (ANN_LB_SOURCE_RANGES in annotations) {
    const ap = metaPath.child('annotations').key(ANN_LB_SOURCE_RANGES);
    if (type !== 'LoadBalancer') errs.push(forbidden(ap, "may only be used when `type` is 'LoadBalancer'"));
    const val = String(annotations[ANN_LB_SOURCE_RANGES] ?? '').trim();
    if (val !== '') {
      for (const part of val.split(',')) {
        const c = part.trim();
        if (!isValidCIDR(c)) errs.push(invalid(ap, c, CIDR_ERROR));
      }
    }
  }

  const alnp = spec.allocateLoadBalancerNodePorts;
  if (alnp !== undefined && alnp !== null && type !== 'LoadBalancer') {
    errs.push(forbidden(specPath.child('allocateLoadBalancerNodePorts'), "may only be used when `type` is 'LoadBalancer'"));
  }
  if (type === 'LoadBalancer' && (alnp === undefined || alnp === null)) {
    // upstream reports this one without the `spec.` prefix
    errs.push(required(new Path('allocateLoadBalancerNodePorts')));
  }

  const lbc = spec.loadBalancerClass;
  if (lbc !== undefined && lbc !== null) {
    if (type === 'LoadBalancer') {
      const s = str(lbc, specPath.child('loadBalancerClass'), errs);
      if (s !== null) for (const m of isQualifiedName(s)) errs.push(invalid(specPath.child('loadBalancerClass'), s, m));
    } else {
      errs.push(forbidden(specPath.child('loadBalancerClass'), "may only be used when `type` is 'LoadBalancer'"));
    }
  }

  const etp = spec.externalTrafficPolicy;
  const etpSet = etp !== undefined && etp !== null && etp !== '';
  if (!externallyAccessible(spec)) {
    if (etpSet) errs.push(invalid(specPath.child('externalTrafficPolicy'), etp, 'may only be set for externally-accessible services'));
  } else if (!etpSet) {
    errs.push(required(specPath.child('externalTrafficPolicy')));
  } else if (!TRAFFIC_POLICIES.includes(etp as string)) {
    errs.push(notSupported(specPath.child('externalTrafficPolicy'), etp, TRAFFIC_POLICIES));
  }
  const hcnp = spec.healthCheckNodePort ?? 0;
  if (!needsHealthCheck(spec)) {
    if (hcnp !== 0) {
      errs.push(
        invalid(
          specPath.child('healthCheckNodePort'),
          hcnp,
          "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        ),
      );
    }
  } else if (hcnp !== 0) {
    // upstream also requires a non-zero value here, which its allocator fills in before
    // validation; kubeloop allocates no health-check node ports, so 0 is accepted
    for (const m of isValidPortNum(hcnp)) errs.push(invalid(specPath.child('healthCheckNodePort'), hcnp, m));
  }

  const itp = spec.internalTrafficPolicy;
  if (itp === undefined || itp === null) {
    // not required for ExternalName "for historical reasons"
    if (type === 'NodePort' || type === 'LoadBalancer' || type === 'ClusterIP') {
      errs.push(required(specPath.child('internalTrafficPolicy')));
    }
  } else if (!TRAFFIC_POLICIES.includes(itp as string)) {
    errs.push(notSupported(specPath.child('internalTrafficPolicy'), itp, TRAFFIC_POLICIES));
  }

  const td = spec.trafficDistribution;
  if (td !== undefined && td !== null && td !== 'PreferClose') {
    errs.push(notSupported(specPath.child('trafficDistribution'), td, ['PreferClose']));
  }

  return errs;
}

/** `validateUpgradeDowngradeClusterIPs`: assigned cluster IPs cannot change (except to/from ExternalName). */
function validateClusterIPsUpdate(svc: Rec, old: Rec): FieldError[] {
  const spec = specOf(svc);
  const oldSpec = specOf(old);
  if (spec.type === 'ExternalName' || oldSpec.type === 'ExternalName') return [];
  if (isHeadlessService(svc) && isHeadlessService(old)) return [];
  const errs: FieldError[] = [];
  const ips = stringList(spec.clusterIPs);
  const oldIPs = stringList(oldSpec.clusterIPs);
  const p = path('spec', 'clusterIPs');
  if (oldIPs.length === ips.length) {
    oldIPs.forEach((ip, i) => {
      if (ip !== ips[i]) errs.push(invalid(p.index(i), ips, 'may not change once set'));
    });
  } else if (oldIPs.length > ips.length) {
    if (ips.length === 0) errs.push(invalid(p.index(0), ips, 'primary clusterIP can not be unset'));
    if (oldIPs.length > 0 && ips.length > 0 && ips[0] !== oldIPs[0]) errs.push(invalid(p.index(0), ips, 'may not change once set'));
    if (ips.length === 1 && spec.ipFamilyPolicy !== 'SingleStack') {
      errs.push(
        invalid(path('spec', 'ipFamilyPolicy'), spec.ipFamilyPolicy ?? null, "must be set to 'SingleStack' when releasing the secondary clusterIP"),
      );
    }
  } else if (oldIPs.length > 0 && ips[0] !== oldIPs[0]) {
    errs.push(invalid(p.index(0), ips, 'may not change once set'));
  }
  return errs;
}

/** `validateUpgradeDowngradeIPFamilies` */
function validateIPFamiliesUpdate(svc: Rec, old: Rec): FieldError[] {
  const spec = specOf(svc);
  const oldSpec = specOf(old);
  if (spec.type === 'ExternalName' || oldSpec.type === 'ExternalName') return [];
  if (isHeadlessService(svc) || isHeadlessService(old)) return [];
  const errs: FieldError[] = [];
  const fams = stringList(spec.ipFamilies);
  const oldFams = stringList(oldSpec.ipFamilies);
  const ips = stringList(spec.clusterIPs);
  const p = path('spec', 'ipFamilies').index(0);
  if (oldFams.length === fams.length) {
    oldFams.forEach((f, i) => {
      if (f !== fams[i]) errs.push(invalid(p, fams, 'may not change once set'));
    });
  } else if (oldFams.length > fams.length) {
    if (ips.length === 0) errs.push(invalid(p, fams, 'primary ipFamily can not be unset'));
    if (fams.length > 0 && fams[0] !== oldFams[0]) errs.push(invalid(p, ips, 'may not change once set'));
    if (fams.length === 1 && spec.ipFamilyPolicy !== 'SingleStack') {
      errs.push(
        invalid(path('spec', 'ipFamilyPolicy'), spec.ipFamilyPolicy ?? null, "must be set to 'SingleStack' when releasing the secondary ipFamily"),
      );
    }
  } else if (oldFams.length > 0 && fams.length > 0 && fams[0] !== oldFams[0]) {
    errs.push(invalid(p, ips, 'may not change once set'));
  }
  return errs;
}

/** `ValidateServiceUpdate`: update-only rules, then every create rule on the new object. */
export function validateServiceUpdate(input: Rec, old: Rec, opts: ServiceValidationOptions = {}): FieldError[] {
  // upstream validates after the registry kept allocated values and dropped type-dependent
  // fields (see prepareServiceUpdate); do the same on a copy, so callers that skip it still agree
  const svc = structuredClone(input);
  prepareServiceUpdate(svc, old);
  const errs = validateObjectMetaUpdate(svc.metadata, old.metadata, path('metadata'));
  errs.push(...validateClusterIPsUpdate(svc, old));
  errs.push(...validateIPFamiliesUpdate(svc, old));
  const spec = specOf(svc);
  const oldSpec = specOf(old);
  if (spec.type === 'LoadBalancer' && oldSpec.type === 'LoadBalancer' && !jsonEqual(spec.loadBalancerClass ?? null, oldSpec.loadBalancerClass ?? null)) {
    errs.push(invalid(path('spec', 'loadBalancerClass'), spec.loadBalancerClass ?? null, 'may not change once set'));
  }
  if (needsHealthCheck(spec) && needsHealthCheck(oldSpec) && (spec.healthCheckNodePort ?? 0) !== (oldSpec.healthCheckNodePort ?? 0)) {
    errs.push(forbidden(path('spec', 'healthCheckNodePort'), 'field is immutable'));
  }
  errs.push(...validateService(svc, opts));
  return errs;
}

/** `ValidateLoadBalancerStatus` for `status.loadBalancer` (used by /status writes). */
export function validateServiceStatus(svc: Rec): FieldError[] {
  const errs: FieldError[] = [];
  const spec = specOf(svc);
  const status = isRec(svc.status) ? svc.status : {};
  const lb = isRec(status.loadBalancer) ? status.loadBalancer : {};
  const ingPath = path('status', 'loadBalancer', 'ingress');
  const ingress = list(lb.ingress, ingPath, errs);
  if (ingress.length > 0 && spec.type !== 'LoadBalancer') {
    errs.push(forbidden(ingPath, "may only be used when `spec.type` is 'LoadBalancer'"));
  }
  ingress.forEach((x, i) => {
    const ip = ingPath.index(i);
    const ing = rec(x, ip, errs);
    if (!ing) return;
    const addr = str(ing.ip, ip.child('ip'), errs);
    if (addr && !parseIP(addr)) errs.push(invalid(ip.child('ip'), addr, IP_ERROR));
    if (ing.ipMode === undefined || ing.ipMode === null) {
      if (addr) errs.push(required(ip.child('ipMode'), 'must be specified when `ip` is set'));
    } else if (!addr) {
      errs.push(forbidden(ip.child('ipMode'), 'may not be specified when `ip` is not set'));
    } else if (!LB_IP_MODES.includes(ing.ipMode as string)) {
      errs.push(notSupported(ip.child('ipMode'), ing.ipMode, LB_IP_MODES));
    }
    const host = str(ing.hostname, ip.child('hostname'), errs);
    if (host) {
      for (const m of isDNS1123Subdomain(host)) errs.push(invalid(ip.child('hostname'), host, m));
      if (parseIP(host)) errs.push(invalid(ip.child('hostname'), host, 'must be a DNS name, not an IP address'));
    }
  });
  return errs;
}
