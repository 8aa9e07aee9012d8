/**
 * Every kind kubeloop serves, each declared once (api/kind.ts). Adding a kind: a module here
 * with its `defineKind(...)` and one line in `KIND_DECLS`; controllers that act on it are
 * registered in controllers/index.ts.
 */
import type { KindDecl, KindInfo } from '../kind.js';
import { horizontalPodAutoscaler } from './autoscaling.js';
import { daemonSet, deployment, controllerRevision, replicaSet, statefulSet } from './apps.js';
import { cronJob, job } from './batch.js';
import { configMap, endpoints, event, namespace, node, persistentVolumeClaim, pod, replicationController, secret, service } from './core.js';
import { endpointSlice } from './endpoint-slice.js';
import { ingress } from './ingress.js';
import { lease } from './lease.js';
import { nodeMetrics, podMetrics } from './metrics.js';
import { podDisruptionBudget } from './pod-disruption-budget.js';
import { selfSubjectAccessReview, selfSubjectReview, selfSubjectRulesReview } from './reviews.js';
import { serviceAccount } from './service-account.js';

/** in discovery order */
export const KIND_DECLS: readonly KindDecl[] = Object.freeze([
  namespace,
  node,
  pod,
  service,
  endpoints,
  event,
  configMap,
  secret,
  serviceAccount,
  persistentVolumeClaim,
  replicationController,
  deployment,
  replicaSet,
  statefulSet,
  daemonSet,
  controllerRevision,
  job,
  cronJob,
  endpointSlice,
  lease,
  ingress,
  podDisruptionBudget,
  horizontalPodAutoscaler,
  selfSubjectAccessReview,
  selfSubjectRulesReview,
  selfSubjectReview,
  podMetrics,
  nodeMetrics,
]);

const BY_KIND = new Map(KIND_DECLS.map((d) => [d.info.kind, d]));

/** The declaration of `kind`, or undefined. */
export function kindDecl(kind: string): KindDecl | undefined {
  return BY_KIND.get(kind);
}

/** The infos of the kinds the store holds (virtual kinds are answered, never stored). */
export const STORED_KINDS: readonly KindInfo[] = Object.freeze(KIND_DECLS.filter((d) => !d.virtual).map((d) => d.info));
