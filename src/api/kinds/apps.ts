/** The apps/v1 kinds. */
import { defaultDaemonSet, defaultDeployment, defaultReplicaSet, defaultStatefulSet } from '../defaults.js';
import { defineKind, kindInfo } from '../kind.js';
import { validateDaemonSet, validateDeployment, validateReplicaSet, validateStatefulSet } from '../validation/workloads.js';
import { workloadValidator } from './workload.js';

export const deployment = defineKind({
  info: kindInfo('Deployment', 'apps/v1', 'deployments', { shortNames: ['deploy'], categories: ['all'], hasStatus: true }),
  model: 'V1Deployment',
  defaults: defaultDeployment,
  validate: workloadValidator('Deployment', validateDeployment),
  scale: { selector: 'labelSelector' },
});

export const replicaSet = defineKind({
  info: kindInfo('ReplicaSet', 'apps/v1', 'replicasets', { shortNames: ['rs'], categories: ['all'], hasStatus: true }),
  model: 'V1ReplicaSet',
  defaults: defaultReplicaSet,
  validate: workloadValidator('ReplicaSet', validateReplicaSet),
  scale: { selector: 'labelSelector' },
});

export const statefulSet = defineKind({
  info: kindInfo('StatefulSet', 'apps/v1', 'statefulsets', { shortNames: ['sts'], categories: ['all'], hasStatus: true }),
  model: 'V1StatefulSet',
  defaults: defaultStatefulSet,
  validate: workloadValidator('StatefulSet', validateStatefulSet),
  scale: { selector: 'labelSelector' },
});

export const daemonSet = defineKind({
  info: kindInfo('DaemonSet', 'apps/v1', 'daemonsets', { shortNames: ['ds'], categories: ['all'], hasStatus: true }),
  model: 'V1DaemonSet',
  defaults: defaultDaemonSet,
  validate: workloadValidator('DaemonSet', validateDaemonSet),
});

export const controllerRevision = defineKind({
  info: kindInfo('ControllerRevision', 'apps/v1', 'controllerrevisions'),
});
