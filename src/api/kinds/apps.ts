/** The apps/v1 kinds. */
import { defaultDaemonSet, defaultDeployment, defaultReplicaSet, defaultStatefulSet } from '../defaults.js';
import { defineKind, infoOf } from '../kind.js';
import { validateDaemonSet, validateDeployment, validateReplicaSet, validateStatefulSet } from '../validation/workloads.js';
import { workloadValidator } from './workload.js';

export const deployment = defineKind({
  info: infoOf('Deployment', 'apps/v1', 'deployments', { shortNames: ['deploy'], categories: ['all'], hasStatus: true }),
  model: 'V1Deployment',
  defaults: defaultDeployment,
  validate: workloadValidator('Deployment', validateDeployment),
  scale: { selector: 'labelSelector' },
});

export const replicaSet = defineKind({
  info: infoOf('ReplicaSet', 'apps/v1', 'replicasets', { shortNames: ['rs'], categories: ['all'], hasStatus: true }),
  model: 'V1ReplicaSet',
  defaults: defaultReplicaSet,
  validate: workloadValidator('ReplicaSet', validateReplicaSet),
  scale: { selector: 'labelSelector' },
});

export const statefulSet = defineKind({
  info: infoOf('StatefulSet', 'apps/v1', 'statefulsets', { shortNames: ['sts'], categories: ['all'], hasStatus: true }),
  model: 'V1StatefulSet',
  defaults: defaultStatefulSet,
  validate: workloadValidator('StatefulSet', validateStatefulSet),
  scale: { selector: 'labelSelector' },
});

export const daemonSet = defineKind({
  info: infoOf('DaemonSet', 'apps/v1', 'daemonsets', { shortNames: ['ds'], categories: ['all'], hasStatus: true }),
  model: 'V1DaemonSet',
  defaults: defaultDaemonSet,
  validate: workloadValidator('DaemonSet', validateDaemonSet),
});

export const controllerRevision = defineKind({
  info: infoOf('ControllerRevision', 'apps/v1', 'controllerrevisions'),
});
