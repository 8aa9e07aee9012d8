import type { ObjectMeta } from 'kubernetes-types/meta/v1.js';

export type { ObjectMeta, OwnerReference, LabelSelector, Condition } from 'kubernetes-types/meta/v1.js';
export type {
  Pod,
  PodSpec,
  PodStatus,
  PodTemplateSpec,
  Container,
  ContainerPort,
  ContainerStatus,
  Probe,
  Service,
  ServiceSpec,
  ServicePort,
  Endpoints,
  EndpointSubset,
  EndpointAddress,
  EndpointPort,
  Namespace,
  Node,
  Event,
  ConfigMap,
  Secret,
  PersistentVolumeClaim,
  ReplicationController,
  EnvVar,
} from 'kubernetes-types/core/v1.js';
export type { Deployment, ReplicaSet, StatefulSet, DaemonSet, ControllerRevision } from 'kubernetes-types/apps/v1.js';
export type { Job, CronJob } from 'kubernetes-types/batch/v1.js';
export type { EndpointSlice } from 'kubernetes-types/discovery/v1.js';
export type { Lease, LeaseSpec } from 'kubernetes-types/coordination/v1.js';

/** Any API object. Objects handed out by the store are deep-frozen: clone before changing. */
export interface KObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
}

/** An object with the fields the store guarantees once it has been written. */
export type Stored<T extends KObject> = T & {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta & { name: string; resourceVersion: string; uid: string; creationTimestamp: string };
};

export interface KindInfo {
  kind: string;
  /** `v1` or `group/version` */
  apiVersion: string;
  group: string;
  version: string;
  /** lower-case plural resource name, as in URLs and error messages */
  plural: string;
  singular: string;
  namespaced: boolean;
  shortNames: readonly string[];
  categories: readonly string[];
  /** has a `/status` subresource: status is not changed by a main-resource update */
  hasStatus: boolean;
}

const k = (
  kind: string,
  apiVersion: string,
  plural: string,
  opts: Partial<Pick<KindInfo, 'namespaced' | 'shortNames' | 'categories' | 'hasStatus'>> = {},
): KindInfo => {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  return Object.freeze({
    kind,
    apiVersion,
    group,
    version,
    plural,
    singular: kind.toLowerCase(),
    namespaced: opts.namespaced ?? true,
    shortNames: Object.freeze(opts.shortNames ?? []),
    categories: Object.freeze(opts.categories ?? []),
    hasStatus: opts.hasStatus ?? false,
  });
};

/** Every kind kubeloop stores. Adding a kind here makes it storable; behaviour lives elsewhere. */
export const KINDS: readonly KindInfo[] = Object.freeze([
  k('Namespace', 'v1', 'namespaces', { namespaced: false, shortNames: ['ns'], hasStatus: true }),
  k('Node', 'v1', 'nodes', { namespaced: false, shortNames: ['no'], hasStatus: true }),
  k('Pod', 'v1', 'pods', { shortNames: ['po'], categories: ['all'], hasStatus: true }),
  k('Service', 'v1', 'services', { shortNames: ['svc'], categories: ['all'], hasStatus: true }),
  k('Endpoints', 'v1', 'endpoints', { shortNames: ['ep'] }),
  k('Event', 'v1', 'events', { shortNames: ['ev'] }),
  k('ConfigMap', 'v1', 'configmaps', { shortNames: ['cm'] }),
  k('Secret', 'v1', 'secrets'),
  k('PersistentVolumeClaim', 'v1', 'persistentvolumeclaims', { shortNames: ['pvc'], hasStatus: true }),
  k('ReplicationController', 'v1', 'replicationcontrollers', {
    shortNames: ['rc'],
    categories: ['all'],
    hasStatus: true,
  }),
  k('Deployment', 'apps/v1', 'deployments', { shortNames: ['deploy'], categories: ['all'], hasStatus: true }),
  k('ReplicaSet', 'apps/v1', 'replicasets', { shortNames: ['rs'], categories: ['all'], hasStatus: true }),
  k('StatefulSet', 'apps/v1', 'statefulsets', { shortNames: ['sts'], categories: ['all'], hasStatus: true }),
  k('DaemonSet', 'apps/v1', 'daemonsets', { shortNames: ['ds'], categories: ['all'], hasStatus: true }),
  k('ControllerRevision', 'apps/v1', 'controllerrevisions'),
  k('Job', 'batch/v1', 'jobs', { categories: ['all'], hasStatus: true }),
  k('CronJob', 'batch/v1', 'cronjobs', { shortNames: ['cj'], categories: ['all'], hasStatus: true }),
  k('EndpointSlice', 'discovery.k8s.io/v1', 'endpointslices'),
  k('Lease', 'coordination.k8s.io/v1', 'leases'),
]);

const BY_KIND = new Map(KINDS.map((i) => [i.kind, i]));

export function kindInfo(kind: string): KindInfo | undefined {
  return BY_KIND.get(kind);
}

/** Kind info, or a clear error naming the kinds kubeloop knows. */
export function requireKind(kind: string): KindInfo {
  const info = BY_KIND.get(kind);
  if (!info) {
    throw new Error(`unknown kind "${kind}": kubeloop stores ${KINDS.map((i) => i.kind).join(', ')}`);
  }
  return info;
}

/** `ns/name` for namespaced objects, `name` for cluster-scoped ones. */
export function objectKey(namespace: string | undefined, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

export function keyOf(obj: KObject): string {
  return objectKey(obj.metadata?.namespace, obj.metadata?.name ?? '');
}

/** Deep-freeze a plain JSON value in place and return it. */
export function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v as object)) deepFreeze(x);
  }
  return v;
}

/** A mutable deep copy of a (possibly frozen) stored object. */
export function clone<T>(v: T): T {
  return structuredClone(v);
}

/** Drops `readonly` (kubernetes-types marks server-set fields readonly; the store sets them). */
export type Mutable<T> = { -readonly [K in keyof T]: T[K] };
