/**
 * Server-side defaults, as upstream's generated `SetObjectDefaults_*` run at decode time
 * (pkg/apis/core/v1/defaults.go, pkg/apis/apps/v1/defaults.go, pkg/apis/batch/v1/defaults.go),
 * plus the few registry-strategy steps that upstream runs before validation and that can be
 * expressed without an allocator (`normalizeClusterIPs`, IP family fields, and on update
 * `prepareServiceUpdate`). `metadata.namespace` is the store's business, not defaulted here.
 */
import { kindDecl } from './kinds/index.js';
import type { KObject } from './types.js';

type Rec = Record<string, unknown>;

const isRec = (v: unknown): v is Rec => v !== null && typeof v === 'object' && !Array.isArray(v);
const absent = (v: unknown): boolean => v === undefined || v === null;
const recs = (v: unknown): Rec[] => (Array.isArray(v) ? v.filter(isRec) : []);
/** The object at `o[k]`, created when absent; `undefined` when something else is there. */
function child(o: Rec, k: string): Rec | undefined {
  if (absent(o[k])) o[k] = {};
  return isRec(o[k]) ? (o[k] as Rec) : undefined;
}

export const DEFAULT_CLIENT_IP_AFFINITY_SECONDS = 10800;
export const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS = 30;

/** LoadBalancer, NodePort, or ClusterIP with externalIPs (pkg/api/service `ExternallyAccessible`). */
export function externallyAccessible(spec: Rec): boolean {
  return (
    spec.type === 'LoadBalancer' ||
    spec.type === 'NodePort' ||
    (spec.type === 'ClusterIP' && Array.isArray(spec.externalIPs) && spec.externalIPs.length > 0)
  );
}

// ---------------------------------------------------------------------------------------------
// Service

export function defaultService(svc: Rec): void {
  const spec = child(svc, 'spec');
  if (!spec) return;
  if (absent(spec.sessionAffinity) || spec.sessionAffinity === '') spec.sessionAffinity = 'None';
  if (spec.sessionAffinity === 'None') delete spec.sessionAffinityConfig;
  if (spec.sessionAffinity === 'ClientIP') {
    const cfg = spec.sessionAffinityConfig;
    if (!isRec(cfg) || !isRec(cfg.clientIP) || absent(cfg.clientIP.timeoutSeconds)) {
      spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: DEFAULT_CLIENT_IP_AFFINITY_SECONDS } };
    }
  }
  if (absent(spec.type) || spec.type === '') spec.type = 'ClusterIP';
  for (const port of recs(spec.ports)) {
    if (absent(port.protocol) || port.protocol === '') port.protocol = 'TCP';
    if (absent(port.targetPort) || port.targetPort === 0 || port.targetPort === '') port.targetPort = port.port;
  }
  if (externallyAccessible(spec) && (absent(spec.externalTrafficPolicy) || spec.externalTrafficPolicy === '')) {
    spec.externalTrafficPolicy = 'Cluster';
  }
  if (absent(spec.internalTrafficPolicy) && ['ClusterIP', 'NodePort', 'LoadBalancer'].includes(spec.type as string)) {
    spec.internalTrafficPolicy = 'Cluster';
  }
  if (spec.type === 'LoadBalancer') {
    if (absent(spec.allocateLoadBalancerNodePorts)) spec.allocateLoadBalancerNodePorts = true;
    const status = isRec(svc.status) ? svc.status : undefined;
    const lb = status && isRec(status.loadBalancer) ? status.loadBalancer : undefined;
    for (const ing of recs(lb?.ingress)) if (ing.ip && absent(ing.ipMode)) ing.ipMode = 'VIP';
  }

  // registry (normalizeClusterIPs on create): a client that sets only `clusterIP` gets `clusterIPs`
  const noIPs = !Array.isArray(spec.clusterIPs) || spec.clusterIPs.length === 0;
  if (typeof spec.clusterIP === 'string' && spec.clusterIP !== '' && noIPs) spec.clusterIPs = [spec.clusterIP];

  // registry (IP family init), single-stack IPv4 cluster: every non-ExternalName service is
  // IPv4 SingleStack, except headless without selector which is RequireDualStack upstream
  if (spec.type !== 'ExternalName') {
    const headless = Array.isArray(spec.clusterIPs) && spec.clusterIPs.length === 1 && spec.clusterIPs[0] === 'None';
    const hasSelector = isRec(spec.selector) && Object.keys(spec.selector).length > 0;
    if (absent(spec.ipFamilyPolicy)) spec.ipFamilyPolicy = headless && !hasSelector ? 'RequireDualStack' : 'SingleStack';
    if (!Array.isArray(spec.ipFamilies) || spec.ipFamilies.length === 0) {
      const first = Array.isArray(spec.clusterIPs) ? spec.clusterIPs.find((ip) => typeof ip === 'string' && ip !== 'None') : undefined;
      spec.ipFamilies = [typeof first === 'string' && first.includes(':') ? 'IPv6' : 'IPv4'];
    }
  }
}

const needsClusterIP = (spec: Rec): boolean => spec.type !== 'ExternalName';
const needsNodePort = (spec: Rec): boolean => spec.type === 'NodePort' || spec.type === 'LoadBalancer';
const needsHCNodePort = (spec: Rec): boolean => spec.type === 'LoadBalancer' && spec.externalTrafficPolicy === 'Local';
const strList = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : []);
const sameList = (a: unknown, b: unknown): boolean => {
  const x = strList(a);
  const y = strList(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
};
const nodePortsOf = (spec: Rec): number[] => recs(spec.ports).map((p) => (typeof p.nodePort === 'number' ? p.nodePort : 0));

/**
 * What upstream's Service registry does to an update before validating it (storage
 * `patchAllocatedValues` + `normalizeClusterIPs`, strategy `dropTypeDependentFields`):
 * allocated values the client left out are kept, `clusterIP`/`clusterIPs` are kept in sync,
 * and fields that stop applying on a type change are dropped unless the client changed them.
 * Mutates `svc`; `old` is the stored object. Idempotent.
 */
export function prepareServiceUpdate(svc: KObject, old: KObject): void {
  const n = svc as Rec;
  const o = old as Rec;
  const spec = child(n, 'spec');
  const oldSpec = isRec(o.spec) ? o.spec : {};
  if (!spec) return;

  // patchAllocatedValues
  if (needsClusterIP(oldSpec) && needsClusterIP(spec)) {
    if (absent(spec.clusterIP) || spec.clusterIP === '') {
      if (!absent(oldSpec.clusterIP)) spec.clusterIP = oldSpec.clusterIP;
    }
    if (strList(spec.clusterIPs).length === 0 && strList(oldSpec.clusterIPs).length > 0) spec.clusterIPs = [...strList(oldSpec.clusterIPs)];
  }
  if (needsNodePort(oldSpec) && needsNodePort(spec)) {
    const newUsed = new Set(nodePortsOf(spec).filter((x) => x));
    const used = new Set(nodePortsOf(oldSpec).filter((x) => x && newUsed.has(x)));
    const byName = new Map<unknown, unknown>(recs(oldSpec.ports).map((p) => [p.name ?? '', p.nodePort]));
    for (const p of recs(spec.ports)) {
      if (p.nodePort) continue;
      const prev = byName.get(p.name ?? '');
      if (typeof prev === 'number' && prev !== 0 && !used.has(prev)) p.nodePort = prev;
    }
  }
  if (needsHCNodePort(oldSpec) && needsHCNodePort(spec) && !spec.healthCheckNodePort && oldSpec.healthCheckNodePort) {
    spec.healthCheckNodePort = oldSpec.healthCheckNodePort;
  }

  // normalizeClusterIPs (update)
  const oldIP = typeof oldSpec.clusterIP === 'string' ? oldSpec.clusterIP : '';
  const newIP = typeof spec.clusterIP === 'string' ? spec.clusterIP : '';
  if (strList(oldSpec.clusterIPs).length > 0 && strList(spec.clusterIPs).length === 0 && oldIP === newIP) {
    spec.clusterIPs = [...strList(oldSpec.clusterIPs)];
  }
  if (oldIP !== newIP) {
    if (oldIP !== '' && newIP === '') {
      if (sameList(oldSpec.clusterIPs, spec.clusterIPs)) delete spec.clusterIPs;
    } else if (sameList(oldSpec.clusterIPs, spec.clusterIPs)) {
      spec.clusterIPs = [newIP];
    }
  }

  // dropTypeDependentFields
  if (needsClusterIP(oldSpec) && !needsClusterIP(spec)) {
    if (sameList(oldSpec.clusterIPs, spec.clusterIPs) && (spec.clusterIP ?? '') === (oldSpec.clusterIP ?? '')) {
      delete spec.clusterIP;
      delete spec.clusterIPs;
    }
    if (sameList(oldSpec.ipFamilies, spec.ipFamilies)) delete spec.ipFamilies;
    if ((spec.ipFamilyPolicy ?? null) === (oldSpec.ipFamilyPolicy ?? null)) delete spec.ipFamilyPolicy;
  }
  if (needsNodePort(oldSpec) && !needsNodePort(spec)) {
    const a = nodePortsOf(oldSpec);
    const b = nodePortsOf(spec);
    if (a.length === b.length && a.every((x, i) => x === b[i])) for (const p of recs(spec.ports)) delete p.nodePort;
  }
  if (needsHCNodePort(oldSpec) && !needsHCNodePort(spec) && (spec.healthCheckNodePort ?? 0) === (oldSpec.healthCheckNodePort ?? 0)) {
    delete spec.healthCheckNodePort;
  }
  if (oldSpec.type === 'LoadBalancer' && spec.type !== 'LoadBalancer') {
    if (!absent(spec.allocateLoadBalancerNodePorts) && spec.allocateLoadBalancerNodePorts === oldSpec.allocateLoadBalancerNodePorts) {
      delete spec.allocateLoadBalancerNodePorts;
    }
    if ((spec.loadBalancerClass ?? null) === (oldSpec.loadBalancerClass ?? null)) delete spec.loadBalancerClass;
    // upstream: "Although LB de-provisioning is actually asynchronous, we don't need to expose the
    // user to that complexity": the ingress goes with the type
    if (isRec(n.status) && !absent(n.status.loadBalancer)) n.status.loadBalancer = {};
  }
  if (externallyAccessible(oldSpec) && !externallyAccessible(spec) && (spec.externalTrafficPolicy ?? '') === (oldSpec.externalTrafficPolicy ?? '')) {
    delete spec.externalTrafficPolicy;
  }
}

/** Update-time preparation by kind (the kind's declared `prepareUpdate`); call after `applyDefaults`, before validating. */
export function prepareUpdate(obj: KObject, old: KObject): void {
  if (obj.kind !== old.kind) return;
  kindDecl(obj.kind ?? '')?.prepareUpdate?.(obj as Rec, old as Rec);
}

// ---------------------------------------------------------------------------------------------
// Pods and pod templates

/** `ParseImageName` tag rule: no tag and no digest means `latest`. */
function imageTag(image: string): string {
  const at = image.indexOf('@');
  const name = at >= 0 ? image.slice(0, at) : image;
  const colon = name.lastIndexOf(':');
  const tag = colon > name.lastIndexOf('/') ? name.slice(colon + 1) : '';
  if (tag === '' && at < 0) return 'latest';
  return tag;
}

function defaultHTTPGet(h: unknown): void {
  if (!isRec(h)) return;
  if (absent(h.path) || h.path === '') h.path = '/';
  if (absent(h.scheme) || h.scheme === '') h.scheme = 'HTTP';
}

function defaultProbe(p: unknown): void {
  if (!isRec(p)) return;
  if (!p.timeoutSeconds) p.timeoutSeconds = 1;
  if (!p.periodSeconds) p.periodSeconds = 10;
  if (!p.successThreshold) p.successThreshold = 1;
  if (!p.failureThreshold) p.failureThreshold = 3;
  defaultHTTPGet(p.httpGet);
}

function defaultFieldRef(ref: unknown): void {
  if (isRec(ref) && (absent(ref.apiVersion) || ref.apiVersion === '')) ref.apiVersion = 'v1';
}

function defaultContainer(c: Rec, hostNetwork: boolean): void {
  if (absent(c.imagePullPolicy) || c.imagePullPolicy === '') {
    c.imagePullPolicy = typeof c.image === 'string' && imageTag(c.image) === 'latest' ? 'Always' : 'IfNotPresent';
  }
  if (absent(c.terminationMessagePath) || c.terminationMessagePath === '') c.terminationMessagePath = '/dev/termination-log';
  if (absent(c.terminationMessagePolicy) || c.terminationMessagePolicy === '') c.terminationMessagePolicy = 'File';
  for (const port of recs(c.ports)) {
    if (absent(port.protocol) || port.protocol === '') port.protocol = 'TCP';
    if (hostNetwork && !port.hostPort) port.hostPort = port.containerPort;
  }
  for (const ev of recs(c.env)) if (isRec(ev.valueFrom)) defaultFieldRef(ev.valueFrom.fieldRef);
  defaultProbe(c.livenessProbe);
  defaultProbe(c.readinessProbe);
  defaultProbe(c.startupProbe);
  if (isRec(c.lifecycle)) {
    for (const h of [c.lifecycle.postStart, c.lifecycle.preStop]) if (isRec(h)) defaultHTTPGet(h.httpGet);
  }
}

const VOLUME_SOURCES = [
  'emptyDir', 'hostPath', 'gitRepo', 'gcePersistentDisk', 'awsElasticBlockStore', 'secret', 'nfs', 'iscsi',
  'glusterfs', 'flocker', 'persistentVolumeClaim', 'rbd', 'cinder', 'cephfs', 'quobyte', 'downwardAPI', 'fc',
  'flexVolume', 'configMap', 'azureFile', 'vsphereVolume', 'photonPersistentDisk', 'portworxVolume', 'azureDisk',
  'storageos', 'projected', 'scaleIO', 'csi', 'ephemeral', 'image',
];

function defaultVolume(v: Rec): void {
  if (VOLUME_SOURCES.every((k) => absent(v[k]))) v.emptyDir = {};
  for (const k of ['secret', 'configMap', 'downwardAPI', 'projected']) {
    const src = v[k];
    if (isRec(src) && absent(src.defaultMode)) src.defaultMode = 0o644;
  }
  if (isRec(v.hostPath) && absent(v.hostPath.type)) v.hostPath.type = '';
  if (isRec(v.downwardAPI)) for (const item of recs(v.downwardAPI.items)) defaultFieldRef(item.fieldRef);
}

/** `SetDefaults_PodSpec` and everything nested in a pod spec. */
function defaultPodSpec(spec: Rec): void {
  if (absent(spec.dnsPolicy) || spec.dnsPolicy === '') spec.dnsPolicy = 'ClusterFirst';
  if (absent(spec.restartPolicy) || spec.restartPolicy === '') spec.restartPolicy = 'Always';
  if (absent(spec.securityContext)) spec.securityContext = {};
  if (absent(spec.terminationGracePeriodSeconds)) spec.terminationGracePeriodSeconds = DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS;
  if (absent(spec.schedulerName) || spec.schedulerName === '') spec.schedulerName = 'default-scheduler';
  const hostNetwork = spec.hostNetwork === true;
  for (const c of recs(spec.containers)) defaultContainer(c, hostNetwork);
  for (const c of recs(spec.initContainers)) defaultContainer(c, hostNetwork);
  // EphemeralContainerCommon takes the container defaults (pull policy, termination message)
  for (const c of recs(spec.ephemeralContainers)) defaultContainer(c, hostNetwork);
  for (const v of recs(spec.volumes)) defaultVolume(v);
}

function defaultPodTemplate(tpl: unknown): void {
  if (!isRec(tpl)) return;
  const spec = child(tpl, 'spec');
  if (spec) defaultPodSpec(spec);
}

export function defaultPod(pod: Rec): void {
  const spec = child(pod, 'spec');
  if (!spec) return;
  // SetDefaults_Pod (pods only, not templates): requests default to limits; service links on
  for (const c of [...recs(spec.containers), ...recs(spec.initContainers)]) {
    const res = isRec(c.resources) ? c.resources : undefined;
    if (res && isRec(res.limits)) {
      const req = child(res, 'requests');
      if (req) for (const [k, v] of Object.entries(res.limits)) if (!(k in req)) req[k] = v;
    }
  }
  if (absent(spec.enableServiceLinks)) spec.enableServiceLinks = true;
  defaultPodSpec(spec);
}

// ---------------------------------------------------------------------------------------------
// Workloads

function defaultReplicas(spec: Rec): void {
  if (absent(spec.replicas)) spec.replicas = 1;
}
function defaultRevisionHistory(spec: Rec): void {
  if (absent(spec.revisionHistoryLimit)) spec.revisionHistoryLimit = 10;
}
const templateLabelsOf = (spec: Rec): Rec | undefined => {
  const tpl = spec.template;
  return isRec(tpl) && isRec(tpl.metadata) && isRec(tpl.metadata.labels) ? tpl.metadata.labels : undefined;
};

export function defaultDeployment(d: Rec): void {
  const spec = child(d, 'spec');
  if (!spec) return;
  defaultReplicas(spec);
  const strategy = child(spec, 'strategy');
  if (strategy) {
    if (absent(strategy.type) || strategy.type === '') strategy.type = 'RollingUpdate';
    if (strategy.type === 'RollingUpdate') {
      const ru = child(strategy, 'rollingUpdate');
      if (ru) {
        if (absent(ru.maxUnavailable)) ru.maxUnavailable = '25%';
        if (absent(ru.maxSurge)) ru.maxSurge = '25%';
      }
    }
  }
  defaultRevisionHistory(spec);
  if (absent(spec.progressDeadlineSeconds)) spec.progressDeadlineSeconds = 600;
  defaultPodTemplate(spec.template);
}

export function defaultReplicaSet(rs: Rec): void {
  const spec = child(rs, 'spec');
  if (!spec) return;
  defaultReplicas(spec);
  defaultPodTemplate(spec.template);
}

export function defaultReplicationController(rc: Rec): void {
  const spec = child(rc, 'spec');
  if (!spec) return;
  const labels = templateLabelsOf(spec);
  if (labels) {
    if (!isRec(spec.selector) || Object.keys(spec.selector).length === 0) spec.selector = { ...labels };
    const meta = child(rc, 'metadata');
    if (meta && (!isRec(meta.labels) || Object.keys(meta.labels).length === 0)) meta.labels = { ...labels };
  }
  defaultReplicas(spec);
  defaultPodTemplate(spec.template);
}

export function defaultStatefulSet(ss: Rec): void {
  const spec = child(ss, 'spec');
  if (!spec) return;
  if (absent(spec.podManagementPolicy) || spec.podManagementPolicy === '') spec.podManagementPolicy = 'OrderedReady';
  const us = child(spec, 'updateStrategy');
  if (us) {
    if (absent(us.type) || us.type === '') {
      us.type = 'RollingUpdate';
      if (absent(us.rollingUpdate)) us.rollingUpdate = {};
    }
    if (us.type === 'RollingUpdate' && isRec(us.rollingUpdate) && absent(us.rollingUpdate.partition)) us.rollingUpdate.partition = 0;
  }
  const pvc = child(spec, 'persistentVolumeClaimRetentionPolicy');
  if (pvc) {
    if (absent(pvc.whenDeleted) || pvc.whenDeleted === '') pvc.whenDeleted = 'Retain';
    if (absent(pvc.whenScaled) || pvc.whenScaled === '') pvc.whenScaled = 'Retain';
  }
  defaultReplicas(spec);
  defaultRevisionHistory(spec);
  defaultPodTemplate(spec.template);
}

export function defaultDaemonSet(ds: Rec): void {
  const spec = child(ds, 'spec');
  if (!spec) return;
  const us = child(spec, 'updateStrategy');
  if (us) {
    if (absent(us.type) || us.type === '') us.type = 'RollingUpdate';
    if (us.type === 'RollingUpdate') {
      const ru = child(us, 'rollingUpdate');
      if (ru) {
        if (absent(ru.maxUnavailable)) ru.maxUnavailable = 1;
        if (absent(ru.maxSurge)) ru.maxSurge = 0;
      }
    }
  }
  defaultRevisionHistory(spec);
  defaultPodTemplate(spec.template);
}

function defaultJobSpec(spec: Rec): void {
  defaultPodTemplate(spec.template);
}

export function defaultJob(job: Rec): void {
  const spec = child(job, 'spec');
  if (!spec) return;
  if (absent(spec.completions) && absent(spec.parallelism)) {
    spec.completions = 1;
    spec.parallelism = 1;
  }
  if (absent(spec.parallelism)) spec.parallelism = 1;
  if (absent(spec.backoffLimit)) spec.backoffLimit = absent(spec.backoffLimitPerIndex) ? 6 : 2147483647;
  const labels = templateLabelsOf(spec);
  const meta = child(job, 'metadata');
  if (labels && meta && (!isRec(meta.labels) || Object.keys(meta.labels).length === 0)) meta.labels = { ...labels };
  if (absent(spec.completionMode) || spec.completionMode === '') spec.completionMode = 'NonIndexed';
  if (absent(spec.suspend)) spec.suspend = false;
  if (absent(spec.podReplacementPolicy)) spec.podReplacementPolicy = absent(spec.podFailurePolicy) ? 'TerminatingOrFailed' : 'Failed';
  defaultJobSpec(spec);
}

export function defaultCronJob(cj: Rec): void {
  const spec = child(cj, 'spec');
  if (!spec) return;
  if (absent(spec.concurrencyPolicy) || spec.concurrencyPolicy === '') spec.concurrencyPolicy = 'Allow';
  if (absent(spec.suspend)) spec.suspend = false;
  if (absent(spec.successfulJobsHistoryLimit)) spec.successfulJobsHistoryLimit = 3;
  if (absent(spec.failedJobsHistoryLimit)) spec.failedJobsHistoryLimit = 1;
  const jt = isRec(spec.jobTemplate) ? spec.jobTemplate : undefined;
  if (jt && isRec(jt.spec)) defaultJobSpec(jt.spec);
}

export function defaultEndpoints(ep: Rec): void {
  for (const ss of recs(ep.subsets)) {
    for (const port of recs(ss.ports)) if (absent(port.protocol) || port.protocol === '') port.protocol = 'TCP';
  }
}

/** `SetDefaults_Namespace`: every named namespace carries the `kubernetes.io/metadata.name` label. */
export function defaultNamespace(ns: Rec): void {
  const meta = child(ns, 'metadata');
  if (!meta || typeof meta.name !== 'string' || meta.name === '') return;
  const labels = child(meta, 'labels');
  if (labels) labels['kubernetes.io/metadata.name'] = meta.name;
}

/** SetDefaults_Secret: an untyped Secret is `Opaque` (`kubectl create secret generic` sends none). */
export function defaultSecret(o: Rec): void {
  if (o.type === undefined || o.type === '') o.type = 'Opaque';
}

/**
 * Applies upstream's defaults for `obj.kind` in place (the object must be mutable: clone what the
 * store handed out): the kind's declared defaulter (api/kinds/). Unknown kinds are left alone.
 * Never throws on malformed input: fields of the wrong shape are skipped and left for
 * validation to report.
 */
export function applyDefaults(obj: KObject): void {
  if (!isRec(obj)) return;
  kindDecl(typeof obj.kind === 'string' ? obj.kind : '')?.defaults?.(obj as Rec);
}
