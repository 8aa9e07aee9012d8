/**
 * The `/scale` subresource (autoscaling/v1 Scale) of the kinds that declare `scale` (Deployments,
 * ReplicaSets, StatefulSets, ReplicationControllers): `kubectl scale` PATCHes it with a merge patch.
 */
import { kindDecl } from '../api/kinds/index.js';
import { format, fromLabelSelector, fromMap } from '../api/labels.js';
import type { KObject, LabelSelector, Stored } from '../api/types.js';

interface Scalable extends KObject {
  spec?: { replicas?: number; selector?: LabelSelector | Record<string, string> };
  status?: { replicas?: number };
}

export interface Scale {
  kind: 'Scale';
  apiVersion: 'autoscaling/v1';
  metadata: Record<string, unknown>;
  spec: { replicas?: number };
  status: { replicas: number; selector?: string };
}

export function toScale(obj: Stored<KObject>): Scale {
  const o = obj as Stored<Scalable>;
  const sel = o.spec?.selector;
  const selector =
    sel === undefined
      ? undefined
      : kindDecl(obj.kind)?.scale?.selector === 'map'
        ? format(fromMap(sel as Record<string, string>))
        : format(fromLabelSelector(sel as LabelSelector));
  return {
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata: {
      name: o.metadata.name,
      namespace: o.metadata.namespace,
      uid: o.metadata.uid,
      resourceVersion: o.metadata.resourceVersion,
      creationTimestamp: o.metadata.creationTimestamp,
    },
    spec: { replicas: o.spec?.replicas ?? 1 },
    status: { replicas: o.status?.replicas ?? 0, ...(selector ? { selector } : {}) },
  };
}
