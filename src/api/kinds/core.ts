/** The core (`v1`) kinds. */
import {
  defaultEndpoints,
  defaultNamespace,
  defaultPod,
  defaultReplicationController,
  defaultSecret,
  defaultService,
  prepareServiceUpdate,
} from '../defaults.js';
import { defineKind, infoOf } from '../kind.js';
import { nameIsDNSLabel } from '../names.js';
import type { KObject } from '../types.js';
import { validateConfigMap, validateConfigMapUpdate, validateSecret, validateSecretUpdate } from '../validation/config.js';
import { validateEndpoints, validateEndpointsUpdate } from '../validation/endpoints.js';
import { validatePodCreate, validatePodEphemeralContainersUpdate, validatePodUpdate } from '../validation/pod.js';
import { validateService, validateServiceUpdate } from '../validation/service.js';
import { validateReplicationController } from '../validation/workloads.js';
import { workloadValidator } from './workload.js';

export const namespace = defineKind({
  info: infoOf('Namespace', 'v1', 'namespaces', { namespaced: false, shortNames: ['ns'], hasStatus: true }),
  model: 'V1Namespace',
  defaults: defaultNamespace,
  nameRule: nameIsDNSLabel,
  // the namespace registry implements no DeleteCollection: one request cannot delete every namespace
  verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
});

export const node = defineKind({
  info: infoOf('Node', 'v1', 'nodes', { namespaced: false, shortNames: ['no'], hasStatus: true }),
  model: 'V1Node',
});

export const pod = defineKind({
  info: infoOf('Pod', 'v1', 'pods', { shortNames: ['po'], categories: ['all'], hasStatus: true }),
  model: 'V1Pod',
  defaults: defaultPod,
  validate: (o, old, opts) => {
    if (!old) return validatePodCreate(o);
    return opts.subresource === 'ephemeralcontainers' ? validatePodEphemeralContainersUpdate(o, old) : validatePodUpdate(o, old);
  },
});

export const service = defineKind({
  info: infoOf('Service', 'v1', 'services', { shortNames: ['svc'], categories: ['all'], hasStatus: true }),
  model: 'V1Service',
  defaults: defaultService,
  prepareUpdate: (o, old) => prepareServiceUpdate(o as KObject, old as KObject),
  validate: (o, old, opts) => {
    const svcOpts = { allowLoopbackExternalIPs: opts.allowLoopbackEndpoints === true };
    return old ? validateServiceUpdate(o, old, svcOpts) : validateService(o, svcOpts);
  },
});

export const endpoints = defineKind({
  info: infoOf('Endpoints', 'v1', 'endpoints', { shortNames: ['ep'] }),
  model: 'V1Endpoints',
  defaults: defaultEndpoints,
  validate: (o, old, opts) => {
    const epOpts = { allowLoopback: opts.allowLoopbackEndpoints === true };
    return old ? validateEndpointsUpdate(o, old, epOpts) : validateEndpoints(o, epOpts);
  },
});

export const event = defineKind({
  info: infoOf('Event', 'v1', 'events', { shortNames: ['ev'] }),
  model: 'CoreV1Event',
});

export const configMap = defineKind({
  info: infoOf('ConfigMap', 'v1', 'configmaps', { shortNames: ['cm'] }),
  model: 'V1ConfigMap',
  validate: (o, old) => (old ? validateConfigMapUpdate(o, old) : validateConfigMap(o)),
});

export const secret = defineKind({
  info: infoOf('Secret', 'v1', 'secrets'),
  model: 'V1Secret',
  defaults: defaultSecret,
  validate: (o, old) => (old ? validateSecretUpdate(o, old) : validateSecret(o)),
});

export const persistentVolumeClaim = defineKind({
  info: infoOf('PersistentVolumeClaim', 'v1', 'persistentvolumeclaims', { shortNames: ['pvc'], hasStatus: true }),
  model: 'V1PersistentVolumeClaim',
});

export const replicationController = defineKind({
  info: infoOf('ReplicationController', 'v1', 'replicationcontrollers', { shortNames: ['rc'], categories: ['all'], hasStatus: true }),
  model: 'V1ReplicationController',
  defaults: defaultReplicationController,
  validate: workloadValidator('ReplicationController', validateReplicationController),
  scale: { selector: 'map' },
});
