import type { ObjectMeta } from 'kubernetes-types/meta/v1.js';
import type { KindInfo } from './kind.js';
import { STORED_KINDS } from './kinds/index.js';

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

export type { KindInfo } from './kind.js';

/** Every kind kubeloop stores, from the kinds' declarations (api/kinds/index.ts). */
export const KINDS: readonly KindInfo[] = STORED_KINDS;

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
