/**
 * `validateObject` — the one entry point: kind dispatch, create vs update (`old` given), all
 * problems at once in upstream order. Input is the defaulted object (see `applyDefaults`).
 * Kinds without rules here get ObjectMeta validation only.
 */
import type { FieldError } from '../field.js';
import { path } from '../field.js';
import { type NameFn, nameIsDNSLabel, nameIsDNSSubdomain } from '../names.js';
import { type KObject, kindInfo } from '../types.js';
import { validateConfigMap, validateConfigMapUpdate, validateSecret, validateSecretUpdate } from './config.js';
import { validateEndpoints, validateEndpointsUpdate } from './endpoints.js';
import { validateLease } from './lease.js';
import { type Rec, isRec, validateObjectMeta, validateObjectMetaUpdate } from './meta.js';
import { validatePod, validatePodUpdate } from './pod.js';
import { validateService, validateServiceUpdate } from './service.js';
import {
  validateCronJob,
  validateDaemonSet,
  validateDeployment,
  validateJob,
  validateReplicaSet,
  validateReplicationController,
  validateStatefulSet,
  validateWorkloadSpecUpdate,
} from './workloads.js';

export interface ValidateOptions {
  /**
   * Accept Endpoints addresses and Service `externalIPs` in 127.0.0.0/8 and ::1 (upstream
   * rejects them); daemon flag `--allow-loopback-endpoints`.
   */
  allowLoopbackEndpoints?: boolean;
}

const WORKLOADS: Record<string, (o: Rec) => FieldError[]> = {
  Deployment: validateDeployment,
  ReplicaSet: validateReplicaSet,
  ReplicationController: validateReplicationController,
  StatefulSet: validateStatefulSet,
  DaemonSet: validateDaemonSet,
  Job: validateJob,
  CronJob: validateCronJob,
};

/** Name rule per kind for the kinds validated by metadata only (`ValidateNamespaceName` etc.). */
const NAME_RULES: Record<string, NameFn> = {
  Namespace: nameIsDNSLabel,
};

function validateMetaOnly(o: Rec, kind: string): FieldError[] {
  const namespaced = kindInfo(kind)?.namespaced ?? true;
  return validateObjectMeta(o.metadata, { namespaced, nameFn: NAME_RULES[kind] ?? nameIsDNSSubdomain }, path('metadata'));
}

export function validateObject(obj: KObject, old?: KObject, opts: ValidateOptions = {}): FieldError[] {
  const o: Rec = isRec(obj) ? (obj as Rec) : {};
  const prev: Rec | undefined = old && isRec(old) ? (old as Rec) : undefined;
  const kind = typeof o.kind === 'string' ? o.kind : '';
  const epOpts = { allowLoopback: opts.allowLoopbackEndpoints === true };

  switch (kind) {
    case 'Service': {
      const svcOpts = { allowLoopbackExternalIPs: opts.allowLoopbackEndpoints === true };
      return prev ? validateServiceUpdate(o, prev, svcOpts) : validateService(o, svcOpts);
    }
    case 'Endpoints':
      return prev ? validateEndpointsUpdate(o, prev, epOpts) : validateEndpoints(o, epOpts);
    case 'Pod':
      return prev ? validatePodUpdate(o, prev) : validatePod(o);
    case 'ConfigMap':
      return prev ? validateConfigMapUpdate(o, prev) : validateConfigMap(o);
    case 'Secret':
      return prev ? validateSecretUpdate(o, prev) : validateSecret(o);
    case 'Lease':
      return prev ? [...validateObjectMetaUpdate(o.metadata, prev.metadata, path('metadata')), ...validateLease(o)] : validateLease(o);
  }
  const workload = WORKLOADS[kind];
  if (workload) {
    if (!prev) return workload(o);
    return [
      ...validateObjectMetaUpdate(o.metadata, prev.metadata, path('metadata')),
      ...workload(o),
      ...validateWorkloadSpecUpdate(kind, o, prev),
    ];
  }
  const errs = prev ? validateObjectMetaUpdate(o.metadata, prev.metadata, path('metadata')) : [];
  errs.push(...validateMetaOnly(o, kind));
  return errs;
}

export { validateServiceStatus } from './service.js';
export { LOOPBACK_HINT } from './endpoints.js';
