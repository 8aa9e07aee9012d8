import type { Node, Pod } from '../api/types.js';
import type { Taint, Toleration } from 'kubernetes-types/core/v1.js';

type PodSpec = NonNullable<Pod['spec']>;
type Term = NonNullable<
  NonNullable<NonNullable<PodSpec['affinity']>['nodeAffinity']>['requiredDuringSchedulingIgnoredDuringExecution']
>['nodeSelectorTerms'][number];

/**
 * Why a pod spec cannot run on a node — nodeSelector, required node affinity, NoSchedule /
 * NoExecute taints — in the scheduler's wording, or undefined when it can. Shared by the
 * scheduler and the DaemonSet controller (upstream's `NodeShouldRunDaemonPod` uses the same
 * predicates); node readiness and cordoning are the callers' business.
 */
export function specUnfitFor(spec: PodSpec | undefined, node: Node, extraTolerations: readonly Toleration[] = []): string | undefined {
  const labels = node.metadata?.labels ?? {};
  for (const [k, v] of Object.entries(spec?.nodeSelector ?? {})) {
    if (labels[k] !== v) return "node(s) didn't match Pod's node affinity/selector";
  }
  const terms = spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
  if (terms?.length && !terms.some((t) => termMatches(t, node))) return "node(s) didn't match Pod's node affinity/selector";
  const tolerations = [...(spec?.tolerations ?? []), ...extraTolerations];
  for (const t of node.spec?.taints ?? []) {
    if (t.effect === 'PreferNoSchedule') continue;
    if (!tolerations.some((tol) => tolerates(tol, t))) return `node(s) had untolerated taint {${t.key}: ${t.value ?? ''}}`;
  }
  return undefined;
}

/** upstream `ToleratesTaint` */
export function tolerates(tol: Toleration, t: Taint): boolean {
  if (tol.effect && tol.effect !== t.effect) return false;
  if (tol.key && tol.key !== t.key) return false;
  if (!tol.key && tol.operator !== 'Exists') return false;
  if (tol.operator === 'Exists') return true;
  return (tol.value ?? '') === (t.value ?? '');
}

/** one nodeSelectorTerm: every expression (labels) and field (`metadata.name`) must hold */
function termMatches(t: Term, node: Node): boolean {
  const exprs = t.matchExpressions ?? [];
  const fields = t.matchFields ?? [];
  if (!exprs.length && !fields.length) return false;
  const labels = node.metadata?.labels ?? {};
  for (const e of exprs) if (!requirementHolds(labels[e.key], e.operator, e.values)) return false;
  for (const f of fields) {
    if (!requirementHolds(f.key === 'metadata.name' ? node.metadata?.name : undefined, f.operator, f.values)) return false;
  }
  return true;
}

/** `v`: the node's value for the key (undefined: it has none) */
function requirementHolds(v: string | undefined, op: string, values: string[] | undefined): boolean {
  const has = v !== undefined;
  switch (op) {
    case 'In':
      return has && (values ?? []).includes(v);
    case 'NotIn':
      return !has || !(values ?? []).includes(v);
    case 'Exists':
      return has;
    case 'DoesNotExist':
      return !has;
    case 'Gt':
      return has && Number(v) > Number(values?.[0]);
    case 'Lt':
      return has && Number(v) < Number(values?.[0]);
    default:
      return false;
  }
}
