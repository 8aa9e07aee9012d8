/**
 * Pod, PodSpec and PodTemplateSpec validation: the parts of upstream `ValidatePodSpec` that
 * matter to processes-as-pods (containers, ports, env, probes, lifecycle, volumes by name,
 * policies, DNS config), in upstream order and wording (~v1.33). Runs on the defaulted object.
 */
import { type FieldError, type Path, duplicate, forbidden, invalid, notFound, notSupported, path, required } from '../field.js';
import {
  IP_ERROR,
  inclusiveRangeError,
  isConfigMapKey,
  isDNS1123Label,
  isDNS1123Subdomain,
  isEnvVarName,
  isHTTPHeaderName,
  isQualifiedName,
  isValidPortName,
  isValidPortNum,
  nameIsDNSSubdomain,
  parseIP,
} from '../names.js';
import {
  type Rec,
  int,
  isRec,
  jsonEqual,
  list,
  rec,
  str,
  validateAnnotations,
  validateLabels,
  validateNonnegative,
  validateObjectMeta,
  validateObjectMetaUpdate,
} from './meta.js';
import { PROTOCOLS, validatePortNumOrName } from './service.js';

export interface PodSpecOptions {
  /** the spec belongs to a Pod (not a template): adds the pod-only checks */
  isPod: boolean;
}

const RESTART_POLICIES = ['Always', 'OnFailure', 'Never'];
const DNS_POLICIES = ['ClusterFirstWithHostNet', 'ClusterFirst', 'Default', 'None'];
const PULL_POLICIES = ['Always', 'IfNotPresent', 'Never'];
const TERMINATION_MESSAGE_POLICIES = ['File', 'FallbackToLogsOnError'];
const HTTP_SCHEMES = ['HTTP', 'HTTPS'];
const MAX_INT32 = 2147483647;

const VOLUME_SOURCES = [
  'emptyDir', 'hostPath', 'gitRepo', 'gcePersistentDisk', 'awsElasticBlockStore', 'secret', 'nfs', 'iscsi',
  'glusterfs', 'flocker', 'persistentVolumeClaim', 'rbd', 'cinder', 'cephfs', 'quobyte', 'downwardAPI', 'fc',
  'flexVolume', 'configMap', 'azureFile', 'vsphereVolume', 'photonPersistentDisk', 'portworxVolume', 'azureDisk',
  'storageos', 'projected', 'scaleIO', 'csi', 'ephemeral', 'image',
];

/** Paths `env[].valueFrom.fieldRef` may name (`validEnvDownwardAPIFieldPathExpressions`). */
const ENV_FIELD_PATHS = [
  'metadata.name', 'metadata.namespace', 'metadata.uid', 'spec.nodeName', 'spec.serviceAccountName',
  'status.hostIP', 'status.hostIPs', 'status.podIP', 'status.podIPs',
].sort();
/** Paths the downward-API label conversion knows at all (`ConvertDownwardAPIFieldLabel`). */
const CONVERTIBLE_FIELD_PATHS = new Set([
  'metadata.annotations', 'metadata.labels', 'metadata.name', 'metadata.namespace', 'metadata.uid',
  'spec.nodeName', 'spec.restartPolicy', 'spec.serviceAccountName', 'spec.schedulerName', 'status.phase',
  'status.hostIP', 'status.hostIPs', 'status.podIP', 'status.podIPs',
]);

const present = (v: unknown): boolean => v !== undefined && v !== null;

function validateVolumes(v: unknown, p: Path, errs: FieldError[]): Set<string> {
  const names = new Set<string>();
  list(v, p, errs).forEach((x, i) => {
    const vp = p.index(i);
    const vol = rec(x, vp, errs);
    if (!vol) return;
    const el: FieldError[] = [];
    let count = 0;
    for (const src of VOLUME_SOURCES) {
      if (!present(vol[src])) continue;
      if (count > 0) el.push(forbidden(vp.child(src), 'may not specify more than 1 volume type'));
      else count++;
    }
    if (count === 0) el.push(required(vp, 'must specify a volume type'));
    const name = str(vol.name, vp.child('name'), el);
    if (name === '') el.push(required(vp.child('name')));
    else if (name !== null) for (const m of isDNS1123Label(name)) el.push(invalid(vp.child('name'), name, m));
    if (name !== null && names.has(name)) el.push(duplicate(vp.child('name'), name));
    if (el.length === 0 && name) names.add(name);
    else errs.push(...el);
  });
  return names;
}

function validateContainerPorts(v: unknown, p: Path, errs: FieldError[]): void {
  const names = new Set<string>();
  list(v, p, errs).forEach((x, i) => {
    const pp = p.index(i);
    const port = rec(x, pp, errs);
    if (!port) return;
    const name = str(port.name, pp.child('name'), errs);
    if (name) {
      const msgs = isValidPortName(name);
      if (msgs.length) for (const m of msgs) errs.push(invalid(pp.child('name'), name, m));
      else if (names.has(name)) errs.push(duplicate(pp.child('name'), name));
      else names.add(name);
    }
    const cp = port.containerPort;
    if (!present(cp) || cp === 0) errs.push(required(pp.child('containerPort')));
    else for (const m of isValidPortNum(cp)) errs.push(invalid(pp.child('containerPort'), cp, m));
    const hp = port.hostPort;
    if (present(hp) && hp !== 0) for (const m of isValidPortNum(hp)) errs.push(invalid(pp.child('hostPort'), hp, m));
    const protocol = str(port.protocol, pp.child('protocol'), errs);
    if (protocol === '') errs.push(required(pp.child('protocol')));
    else if (protocol !== null && !(PROTOCOLS as readonly string[]).includes(protocol)) {
      errs.push(notSupported(pp.child('protocol'), protocol, PROTOCOLS));
    }
  });
}

function validateKeySelector(sel: Rec, p: Path, errs: FieldError[]): void {
  const name = str(sel.name, p.child('name'), errs);
  if (name !== null) for (const m of nameIsDNSSubdomain(name, false)) errs.push(invalid(p.child('name'), name, m));
  const key = str(sel.key, p.child('key'), errs);
  if (key === '') errs.push(required(p.child('key')));
  else if (key !== null) for (const m of isConfigMapKey(key)) errs.push(invalid(p.child('key'), key, m));
}

function validateFieldRef(ref: Rec, p: Path, errs: FieldError[]): void {
  const apiVersion = str(ref.apiVersion, p.child('apiVersion'), errs);
  if (apiVersion === '') {
    errs.push(required(p.child('apiVersion')));
    return;
  }
  const fieldPath = str(ref.fieldPath, p.child('fieldPath'), errs);
  if (fieldPath === '') {
    errs.push(required(p.child('fieldPath')));
    return;
  }
  if (apiVersion === null || fieldPath === null) return;
  const m = /^(metadata\.(?:labels|annotations))\['(.*)'\]$/.exec(fieldPath);
  const base = m ? m[1] : fieldPath;
  if (apiVersion !== 'v1') {
    errs.push(invalid(p.child('fieldPath'), fieldPath, `error converting fieldPath: unsupported pod version: ${apiVersion}`));
    return;
  }
  if (!CONVERTIBLE_FIELD_PATHS.has(base)) {
    errs.push(invalid(p.child('fieldPath'), fieldPath, `error converting fieldPath: field label not supported: ${fieldPath}`));
    return;
  }
  if (m) {
    const key = base === 'metadata.annotations' ? m[2].toLowerCase() : m[2];
    for (const msg of isQualifiedName(key)) errs.push(invalid(p, key, msg));
  } else if (!ENV_FIELD_PATHS.includes(base)) {
    errs.push(notSupported(p.child('fieldPath'), base, ENV_FIELD_PATHS));
  }
}

function validateEnv(v: unknown, p: Path, errs: FieldError[]): void {
  list(v, p, errs).forEach((x, i) => {
    const ep = p.index(i);
    const ev = rec(x, ep, errs);
    if (!ev) return;
    const name = str(ev.name, ep.child('name'), errs);
    if (name === '') errs.push(required(ep.child('name')));
    else if (name !== null) for (const m of isEnvVarName(name)) errs.push(invalid(ep.child('name'), name, m));
    const vp = ep.child('valueFrom');
    const from = rec(ev.valueFrom, vp, errs);
    if (!from) return;
    let sources = 0;
    const fieldRef = rec(from.fieldRef, vp.child('fieldRef'), errs);
    if (fieldRef) {
      sources++;
      validateFieldRef(fieldRef, vp.child('fieldRef'), errs);
    }
    const resRef = rec(from.resourceFieldRef, vp.child('resourceFieldRef'), errs);
    if (resRef) {
      sources++;
      if (!resRef.resource) errs.push(required(vp.child('resourceFieldRef').child('resource')));
    }
    const cmRef = rec(from.configMapKeyRef, vp.child('configMapKeyRef'), errs);
    if (cmRef) {
      sources++;
      validateKeySelector(cmRef, vp.child('configMapKeyRef'), errs);
    }
    const secRef = rec(from.secretKeyRef, vp.child('secretKeyRef'), errs);
    if (secRef) {
      sources++;
      validateKeySelector(secRef, vp.child('secretKeyRef'), errs);
    }
    if (sources === 0) {
      errs.push(invalid(vp, '', 'must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`'));
    } else if (typeof ev.value === 'string' && ev.value.length > 0) {
      errs.push(invalid(vp, '', 'may not be specified when `value` is not empty'));
    } else if (sources > 1) {
      errs.push(invalid(vp, '', 'may not have more than one field specified at a time'));
    }
  });
}

function validateVolumeMounts(v: unknown, volumes: Set<string>, p: Path, errs: FieldError[]): void {
  const mountPoints = new Set<string>();
  list(v, p, errs).forEach((x, i) => {
    const mp = p.index(i);
    const m = rec(x, mp, errs);
    if (!m) return;
    const name = str(m.name, mp.child('name'), errs) ?? '';
    if (name === '') errs.push(required(mp.child('name')));
    if (!volumes.has(name)) errs.push({ type: 'FieldValueNotFound', field: mp.child('name').toString(), value: name });
    const mountPath = str(m.mountPath, mp.child('mountPath'), errs) ?? '';
    if (mountPath === '') errs.push(required(mp.child('mountPath')));
    if (mountPoints.has(mountPath)) errs.push(invalid(mp.child('mountPath'), mountPath, 'must be unique'));
    mountPoints.add(mountPath);
  });
}

type HandlerKind = 'probe' | 'lifecycle';

function validateHandler(h: Rec, kind: HandlerKind, gracePeriod: number | undefined, p: Path, errs: FieldError[]): void {
  const kinds = kind === 'probe' ? ['exec', 'httpGet', 'tcpSocket', 'grpc'] : ['exec', 'httpGet', 'tcpSocket', 'sleep'];
  let n = 0;
  for (const k of kinds) {
    if (!present(h[k])) continue;
    const hp = p.child(k);
    if (n > 0) {
      errs.push(forbidden(hp, 'may not specify more than 1 handler type'));
      continue;
    }
    n++;
    const a = rec(h[k], hp, errs) ?? {};
    switch (k) {
      case 'exec':
        if (list(a.command, hp.child('command'), errs).length === 0) errs.push(required(hp.child('command')));
        break;
      case 'httpGet': {
        const pathV = str(a.path, hp.child('path'), errs);
        if (pathV === '') errs.push(required(hp.child('path')));
        errs.push(...validatePortNumOrName(a.port, hp.child('port')));
        if (!HTTP_SCHEMES.includes(a.scheme as string)) errs.push(notSupported(hp.child('scheme'), a.scheme ?? '', HTTP_SCHEMES));
        list(a.httpHeaders, hp.child('httpHeaders'), errs).forEach((hd) => {
          const hn = isRec(hd) && typeof hd.name === 'string' ? hd.name : '';
          for (const m of isHTTPHeaderName(hn)) errs.push(invalid(hp.child('httpHeaders'), hn, m));
        });
        break;
      }
      case 'tcpSocket':
        errs.push(...validatePortNumOrName(a.port, hp.child('port')));
        break;
      case 'grpc':
        for (const m of isValidPortNum(a.port ?? 0)) errs.push(invalid(hp.child('port'), a.port ?? 0, m));
        break;
      case 'sleep': {
        const s = a.seconds;
        if (gracePeriod !== undefined && (!Number.isInteger(s) || (s as number) < 0 || (s as number) > gracePeriod)) {
          errs.push(invalid(hp, s ?? 0, `must be non-negative and less than terminationGracePeriodSeconds (${gracePeriod})`));
        }
        break;
      }
    }
  }
  if (n === 0) errs.push(required(p, 'must specify a handler type'));
}

function validateProbe(
  v: unknown,
  which: 'liveness' | 'readiness' | 'startup',
  gracePeriod: number | undefined,
  p: Path,
  errs: FieldError[],
): void {
  const probe = rec(v, p, errs);
  if (!probe) return;
  validateHandler(probe, 'probe', gracePeriod, p, errs);
  for (const f of ['initialDelaySeconds', 'timeoutSeconds', 'periodSeconds', 'successThreshold', 'failureThreshold']) {
    errs.push(...validateNonnegative(probe[f], p.child(f)));
  }
  const tgps = probe.terminationGracePeriodSeconds;
  if (present(tgps) && (!Number.isInteger(tgps) || (tgps as number) <= 0)) {
    errs.push(invalid(p.child('terminationGracePeriodSeconds'), tgps, 'must be greater than 0'));
  }
  if (which === 'readiness') {
    if (present(tgps)) errs.push(invalid(p.child('terminationGracePeriodSeconds'), tgps, 'must not be set for readinessProbes'));
  } else if ((probe.successThreshold ?? 0) !== 1) {
    errs.push(invalid(p.child('successThreshold'), probe.successThreshold ?? 0, 'must be 1'));
  }
}

function validateLifecycle(v: unknown, gracePeriod: number | undefined, p: Path, errs: FieldError[]): void {
  const lc = rec(v, p, errs);
  if (!lc) return;
  for (const k of ['postStart', 'preStop']) {
    const h = rec(lc[k], p.child(k), errs);
    if (h) validateHandler(h, 'lifecycle', gracePeriod, p.child(k), errs);
  }
}

/** `validateContainerCommon`: what every container kind shares. */
function validateContainerCommon(c: Rec, volumes: Set<string>, p: Path, errs: FieldError[]): void {
  const name = str(c.name, p.child('name'), errs);
  if (name === '') errs.push(required(p.child('name')));
  else if (name !== null) for (const m of isDNS1123Label(name)) errs.push(invalid(p.child('name'), name, m));
  const image = str(c.image, p.child('image'), errs);
  if (image === '') errs.push(required(p.child('image')));
  const tmp = c.terminationMessagePolicy;
  if (!present(tmp) || tmp === '') errs.push(required(p.child('terminationMessagePolicy')));
  else if (!TERMINATION_MESSAGE_POLICIES.includes(tmp as string)) {
    errs.push(notSupported(p.child('terminationMessagePolicy'), tmp, TERMINATION_MESSAGE_POLICIES));
  }
  validateContainerPorts(c.ports, p.child('ports'), errs);
  validateEnv(c.env, p.child('env'), errs);
  validateVolumeMounts(c.volumeMounts, volumes, p.child('volumeMounts'), errs);
  const pull = c.imagePullPolicy;
  if (!present(pull) || pull === '') errs.push(required(p.child('imagePullPolicy')));
  else if (!PULL_POLICIES.includes(pull as string)) errs.push(notSupported(p.child('imagePullPolicy'), pull, PULL_POLICIES));
}

/** `checkHostPortConflicts`: a (protocol, hostIP, hostPort) may be claimed once across the containers given. */
function checkHostPorts(containers: Array<Rec | undefined>, p: Path, errs: FieldError[]): void {
  const seen = new Set<string>();
  containers.forEach((c, ci) => {
    if (!c || !Array.isArray(c.ports)) return;
    c.ports.forEach((port: unknown, pi: number) => {
      if (!isRec(port) || !port.hostPort) return;
      const key = `${String(port.protocol ?? '')}/${String(port.hostIP ?? '')}/${String(port.hostPort)}`;
      if (seen.has(key)) errs.push(duplicate(p.index(ci).child('ports').index(pi).child('hostPort'), key));
      else seen.add(key);
    });
  });
}

function validateContainers(v: unknown, volumes: Set<string>, gracePeriod: number | undefined, p: Path, errs: FieldError[]): Rec[] {
  const items = list(v, p, errs);
  if (items.length === 0) {
    errs.push(required(p));
    return [];
  }
  const names = new Set<unknown>();
  const recs: Array<Rec | undefined> = [];
  items.forEach((x, i) => {
    const cp = p.index(i);
    const c = rec(x, cp, errs);
    recs.push(c);
    if (!c) return;
    validateContainerCommon(c, volumes, cp, errs);
    if (names.has(c.name ?? '')) errs.push(duplicate(cp.child('name'), c.name ?? ''));
    else names.add(c.name ?? '');
    if (present(c.lifecycle)) validateLifecycle(c.lifecycle, gracePeriod, cp.child('lifecycle'), errs);
    validateProbe(c.livenessProbe, 'liveness', gracePeriod, cp.child('livenessProbe'), errs);
    validateProbe(c.readinessProbe, 'readiness', gracePeriod, cp.child('readinessProbe'), errs);
    validateProbe(c.startupProbe, 'startup', gracePeriod, cp.child('startupProbe'), errs);
    if (present(c.restartPolicy)) errs.push(forbidden(cp.child('restartPolicy'), 'may not be set for non-init containers'));
  });
  checkHostPorts(recs, p, errs);
  return recs.filter((c): c is Rec => c !== undefined);
}

function validateInitContainers(
  v: unknown,
  regular: Rec[],
  volumes: Set<string>,
  gracePeriod: number | undefined,
  p: Path,
  errs: FieldError[],
): Rec[] {
  const names = new Set<unknown>(regular.map((c) => c.name));
  const out: Rec[] = [];
  list(v, p, errs).forEach((x, i) => {
    const cp = p.index(i);
    const c = rec(x, cp, errs);
    if (!c) return;
    out.push(c);
    validateContainerCommon(c, volumes, cp, errs);
    let restartAlways = false;
    if (present(c.restartPolicy)) {
      if (c.restartPolicy !== 'Always') errs.push(notSupported(cp.child('restartPolicy'), c.restartPolicy, ['Always']));
      restartAlways = c.restartPolicy === 'Always';
    }
    if (names.has(c.name)) errs.push(duplicate(cp.child('name'), c.name));
    else if (c.name) names.add(c.name);
    checkHostPorts([c], p, errs);
    if (restartAlways) {
      if (present(c.lifecycle)) validateLifecycle(c.lifecycle, gracePeriod, cp.child('lifecycle'), errs);
      validateProbe(c.livenessProbe, 'liveness', gracePeriod, cp.child('livenessProbe'), errs);
      validateProbe(c.readinessProbe, 'readiness', gracePeriod, cp.child('readinessProbe'), errs);
      validateProbe(c.startupProbe, 'startup', gracePeriod, cp.child('startupProbe'), errs);
    } else {
      for (const f of ['lifecycle', 'livenessProbe', 'readinessProbe', 'startupProbe']) {
        if (present(c[f])) errs.push(forbidden(cp.child(f), 'may not be set for init containers without restartPolicy=Always'));
      }
    }
  });
  return out;
}

/**
 * Fields an ephemeral container may not set (upstream `allowedEphemeralContainerFields`: it is
 * a debugging aid, nothing the pod's service may rely on), in upstream's field order.
 */
const EPHEMERAL_FORBIDDEN = ['ports', 'resources', 'resizePolicy', 'restartPolicy', 'livenessProbe', 'readinessProbe', 'startupProbe', 'lifecycle'] as const;

/** Go's reflect `IsZero` over JSON: absent, '', 0, false, and objects/lists of nothing else. */
function isZero(v: unknown): boolean {
  if (v === undefined || v === null || v === '' || v === 0 || v === false) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (isRec(v)) return Object.values(v).every(isZero);
  return false;
}

/**
 * `validateEphemeralContainers`: each one is validated as a container, its name must be unique
 * across every container of the pod, its `targetContainerName` must name a (non-ephemeral)
 * container, and the fields of `EPHEMERAL_FORBIDDEN` and volume subPaths are not allowed.
 */
function validateEphemeralContainers(v: unknown, regular: Rec[], inits: Rec[], volumes: Set<string>, p: Path, errs: FieldError[]): void {
  const others = new Set<unknown>([...regular, ...inits].map((c) => c.name));
  const all = new Set<unknown>(others);
  list(v, p, errs).forEach((x, i) => {
    const cp = p.index(i);
    const c = rec(x, cp, errs);
    if (!c) {
      if (x === null || x === undefined) errs.push(required(cp));
      return;
    }
    validateContainerCommon(c, volumes, cp, errs);
    if (typeof c.image === 'string' && c.image !== c.image.trim()) errs.push(invalid(cp.child('image'), c.image, 'must not have leading or trailing whitespace'));
    if (all.has(c.name)) errs.push(duplicate(cp.child('name'), c.name));
    else all.add(c.name);
    const target = c.targetContainerName;
    if (present(target) && target !== '' && !others.has(target)) errs.push(notFound(cp.child('targetContainerName'), target));
    for (const f of EPHEMERAL_FORBIDDEN) if (!isZero(c[f])) errs.push(forbidden(cp.child(f), 'cannot be set for an Ephemeral Container'));
    (Array.isArray(c.volumeMounts) ? c.volumeMounts : []).forEach((m: unknown, mi: number) => {
      if (!isRec(m)) return;
      for (const f of ['subPath', 'subPathExpr']) {
        if (!isZero(m[f])) errs.push(forbidden(cp.child('volumeMounts').index(mi).child(f), 'cannot be set for an Ephemeral Container'));
      }
    });
  });
}

function validateDNSConfig(spec: Rec, p: Path, errs: FieldError[]): void {
  const cfg = rec(spec.dnsConfig, p, errs);
  if (spec.dnsPolicy === 'None') {
    if (!cfg) {
      errs.push(required(p, 'must provide `dnsConfig` when `dnsPolicy` is None'));
      return;
    }
    if (!Array.isArray(cfg.nameservers) || cfg.nameservers.length === 0) {
      errs.push(required(p.child('nameservers'), 'must provide at least one DNS nameserver when `dnsPolicy` is None'));
      return;
    }
  }
  if (!cfg) return;
  const ns = list(cfg.nameservers, p.child('nameservers'), errs);
  if (ns.length > 3) errs.push(invalid(p.child('nameservers'), ns, 'must not have more than 3 nameservers'));
  ns.forEach((ip, i) => {
    if (!parseIP(ip)) errs.push(invalid(p.child('nameservers').index(i), ip, IP_ERROR));
  });
  const searches = list(cfg.searches, p.child('searches'), errs);
  if (searches.length > 32) errs.push(invalid(p.child('searches'), searches, 'must not have more than 32 search paths'));
  if (searches.join(' ').length > 2048) {
    errs.push(invalid(p.child('searches'), searches, 'must not have more than 2048 characters (including spaces) in the search list'));
  }
  searches.forEach((s, i) => {
    const v = typeof s === 'string' && s.endsWith('.') ? s.slice(0, -1) : String(s);
    for (const m of isDNS1123Subdomain(v)) errs.push(invalid(p.child('searches').index(i), v, m));
  });
  list(cfg.options, p.child('options'), errs).forEach((o, i) => {
    if (!isRec(o) || !o.name) errs.push(required(p.child('options').index(i), 'must not be empty'));
  });
}

/** `ValidatePodSpec` (the implemented subset, in upstream order). */
export function validatePodSpec(v: unknown, p: Path, opts: PodSpecOptions): FieldError[] {
  const errs: FieldError[] = [];
  const spec = rec(v, p, errs) ?? {};
  if (!present(spec.terminationGracePeriodSeconds)) errs.push(required(p.child('terminationGracePeriodSeconds')));
  const gp = int(spec.terminationGracePeriodSeconds, p.child('terminationGracePeriodSeconds'), errs);
  const gracePeriod = typeof gp === 'number' ? gp : undefined;

  const volumes = validateVolumes(spec.volumes, p.child('volumes'), errs);
  const containers = validateContainers(spec.containers, volumes, gracePeriod, p.child('containers'), errs);
  const inits = validateInitContainers(spec.initContainers, containers, volumes, gracePeriod, p.child('initContainers'), errs);
  if (opts.isPod) validateEphemeralContainers(spec.ephemeralContainers, containers, inits, volumes, p.child('ephemeralContainers'), errs);

  const rp = spec.restartPolicy;
  if (!present(rp) || rp === '') errs.push(required(p.child('restartPolicy')));
  else if (!RESTART_POLICIES.includes(rp as string)) errs.push(notSupported(p.child('restartPolicy'), rp, RESTART_POLICIES));
  const dp = spec.dnsPolicy;
  if (!present(dp) || dp === '') errs.push(required(p.child('dnsPolicy')));
  else if (!DNS_POLICIES.includes(dp as string)) errs.push(notSupported(p.child('dnsPolicy'), dp, DNS_POLICIES));
  errs.push(...validateLabels(spec.nodeSelector, p.child('nodeSelector')));
  validateDNSConfig(spec, p.child('dnsConfig'), errs);

  for (const f of ['serviceAccountName', 'nodeName']) {
    const s = str(spec[f], p.child(f), errs);
    if (s) for (const m of nameIsDNSSubdomain(s, false)) errs.push(invalid(p.child(f), s, m));
  }
  const ads = spec.activeDeadlineSeconds;
  if (present(ads) && (!Number.isInteger(ads) || (ads as number) < 1 || (ads as number) > MAX_INT32)) {
    errs.push(invalid(p.child('activeDeadlineSeconds'), ads, inclusiveRangeError(1, MAX_INT32)));
  }
  for (const f of ['hostname', 'subdomain']) {
    const s = str(spec[f], p.child(f), errs);
    if (s) for (const m of isDNS1123Label(s)) errs.push(invalid(p.child(f), s, m));
  }
  const pcn = str(spec.priorityClassName, p.child('priorityClassName'), errs);
  if (pcn) for (const m of nameIsDNSSubdomain(pcn, false)) errs.push(invalid(p.child('priorityClassName'), pcn, m));

  if (opts.isPod) {
    // pod-only (not templates), kept lenient for templates for backwards compatibility upstream
    for (const [key, cs] of [['containers', containers], ['initContainers', inits]] as const) {
      cs.forEach((c, i) => {
        if (typeof c.image === 'string' && c.image !== c.image.trim()) {
          errs.push(invalid(p.child(key).index(i).child('image'), c.image, 'must not have leading or trailing whitespace'));
        }
      });
    }
  }
  return errs;
}

/** `ValidatePodTemplateSpec`: note upstream reports labels at `<template>.labels`, not `.metadata.labels`. */
export function validatePodTemplateSpec(v: unknown, p: Path): FieldError[] {
  const errs: FieldError[] = [];
  const tpl = rec(v, p, errs) ?? {};
  const meta = isRec(tpl.metadata) ? tpl.metadata : {};
  errs.push(...validateLabels(meta.labels, p.child('labels')));
  errs.push(...validateAnnotations(meta.annotations, p.child('annotations')));
  errs.push(...validatePodSpec(tpl.spec, p.child('spec'), { isPod: false }));
  const spec = isRec(tpl.spec) ? tpl.spec : {};
  if (Array.isArray(spec.ephemeralContainers) && spec.ephemeralContainers.length > 0) {
    errs.push(forbidden(p.child('spec').child('ephemeralContainers'), 'ephemeral containers not allowed in pod template'));
  }
  return errs;
}

export function validatePod(pod: Rec): FieldError[] {
  const errs = validateObjectMeta(pod.metadata, { namespaced: true, nameFn: nameIsDNSSubdomain }, path('metadata'));
  errs.push(...validatePodSpec(pod.spec, path('spec'), { isPod: true }));
  return errs;
}

/** `ValidatePodCreate`: a pod starts without ephemeral containers (they are added through pods/ephemeralcontainers). */
export function validatePodCreate(pod: Rec): FieldError[] {
  const errs = validatePod(pod);
  const spec = isRec(pod.spec) ? pod.spec : {};
  if (Array.isArray(spec.ephemeralContainers) && spec.ephemeralContainers.length > 0) {
    errs.push(forbidden(path('spec', 'ephemeralContainers'), 'cannot be set on create'));
  }
  return errs;
}

/**
 * `ValidatePodEphemeralContainersUpdate` (the pods/ephemeralcontainers subresource): the pod
 * as a whole is valid, and the ephemeral containers it had are all still there, unchanged
 * (matched by name: a patch need not keep their order); new ones may be added.
 */
export function validatePodEphemeralContainersUpdate(pod: Rec, old: Rec): FieldError[] {
  const errs = validateObjectMetaUpdate(pod.metadata, old.metadata, path('metadata'));
  errs.push(...validatePod(pod));
  const spec = isRec(pod.spec) ? pod.spec : {};
  const oldSpec = isRec(old.spec) ? old.spec : {};
  const byName = new Map<unknown, unknown>();
  for (const c of Array.isArray(spec.ephemeralContainers) ? spec.ephemeralContainers : []) if (isRec(c)) byName.set(c.name, c);
  const p = path('spec', 'ephemeralContainers');
  for (const o of Array.isArray(oldSpec.ephemeralContainers) ? oldSpec.ephemeralContainers : []) {
    if (!isRec(o)) continue;
    const name = String(o.name);
    const cur = byName.get(o.name);
    if (cur === undefined) errs.push(forbidden(p, `existing ephemeral containers ${JSON.stringify(name)} may not be removed`));
    else if (!jsonEqual(cur, o)) {
      const changed = [...new Set([...Object.keys(o), ...Object.keys(cur as Rec)])].filter((k) => !jsonEqual((cur as Rec)[k], o[k]));
      errs.push(forbidden(p.key(name), `existing ephemeral containers ${JSON.stringify(name)} may not be changed (changed: ${changed.join(', ')})`));
    }
  }
  return errs;
}

const UPDATABLE_POD_FIELDS = [
  '`spec.containers[*].image`',
  '`spec.initContainers[*].image`',
  '`spec.activeDeadlineSeconds`',
  '`spec.tolerations` (only additions to existing tolerations)',
  '`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)',
].join(',');

/**
 * `ValidatePodUpdate` (spec part): only images, activeDeadlineSeconds, added tolerations and
 * (kubeloop) a first `nodeName` may change. Upstream appends a spec diff; we name the changed keys.
 */
export function validatePodUpdate(pod: Rec, old: Rec): FieldError[] {
  const errs = validateObjectMetaUpdate(pod.metadata, old.metadata, path('metadata'));
  errs.push(...validatePod(pod));
  const spec = isRec(pod.spec) ? pod.spec : {};
  const oldSpec = isRec(old.spec) ? old.spec : {};
  const munged: Rec = structuredClone(spec);
  for (const key of ['containers', 'initContainers'] as const) {
    const cs = munged[key];
    const oldCs = oldSpec[key];
    if (Array.isArray(cs) && Array.isArray(oldCs) && cs.length === oldCs.length) {
      cs.forEach((c, i) => {
        if (isRec(c) && isRec(oldCs[i])) c.image = (oldCs[i] as Rec).image;
      });
    }
  }
  munged.activeDeadlineSeconds = oldSpec.activeDeadlineSeconds;
  munged.tolerations = oldSpec.tolerations;
  if (!oldSpec.nodeName) munged.nodeName = oldSpec.nodeName;
  if (typeof oldSpec.terminationGracePeriodSeconds === 'number' && oldSpec.terminationGracePeriodSeconds < 0 && spec.terminationGracePeriodSeconds === 1) {
    munged.terminationGracePeriodSeconds = oldSpec.terminationGracePeriodSeconds;
  }
  if (!jsonEqual(munged, oldSpec)) {
    const keys = [...new Set([...Object.keys(munged), ...Object.keys(oldSpec)])].filter((k) => !jsonEqual(munged[k], oldSpec[k]));
    errs.push(forbidden(path('spec'), `pod updates may not change fields other than ${UPDATABLE_POD_FIELDS}\n(changed: ${keys.map((k) => `spec.${k}`).join(', ')})`));
  }
  return errs;
}
