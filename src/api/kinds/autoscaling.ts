/**
 * autoscaling/v2 HorizontalPodAutoscaler: defaults, validation, `kubectl get hpa`'s columns.
 * The controller is controllers/hpa.ts; autoscaling/v1 is served as a conversion of the same
 * stored object (api/hpa-v1.ts).
 */
import { defineKind, infoOf } from '../kind.js';
import { validateHorizontalPodAutoscaler } from '../validation/autoscaling.js';
import { withMetaUpdate } from './meta-only.js';

type Rec = Record<string, unknown>;
const isRec = (v: unknown): v is Rec => v !== null && typeof v === 'object' && !Array.isArray(v);
const recs = (v: unknown): Rec[] => (Array.isArray(v) ? v.filter(isRec) : []);

/** upstream's default target when no metric is given: 80 % of the pods' CPU requests */
export const DEFAULT_CPU_UTILIZATION = 80;

/** upstream GenerateHPAScaleUpRules / GenerateHPAScaleDownRules: the rules when behavior leaves them out */
export const DEFAULT_SCALE_UP = Object.freeze({
  stabilizationWindowSeconds: 0,
  selectPolicy: 'Max',
  policies: [
    { type: 'Pods', value: 4, periodSeconds: 15 },
    { type: 'Percent', value: 100, periodSeconds: 15 },
  ],
});
export const DEFAULT_SCALE_DOWN = Object.freeze({
  stabilizationWindowSeconds: 300,
  selectPolicy: 'Max',
  policies: [{ type: 'Percent', value: 100, periodSeconds: 15 }],
});

function defaultRules(r: unknown, d: Rec): Rec {
  const out: Rec = isRec(r) ? r : {};
  for (const [k, v] of Object.entries(d)) if (out[k] === undefined || out[k] === null) out[k] = structuredClone(v);
  return out;
}

/** upstream SetDefaults_HorizontalPodAutoscaler (v2) */
export function defaultHorizontalPodAutoscaler(o: Rec): void {
  if (!isRec(o.spec)) return;
  const spec = o.spec;
  if (spec.minReplicas === undefined || spec.minReplicas === null) spec.minReplicas = 1;
  if (spec.metrics === undefined || spec.metrics === null || (Array.isArray(spec.metrics) && spec.metrics.length === 0)) {
    spec.metrics = [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: DEFAULT_CPU_UTILIZATION } } }];
  }
  if (isRec(spec.behavior)) {
    spec.behavior.scaleUp = defaultRules(spec.behavior.scaleUp, DEFAULT_SCALE_UP);
    spec.behavior.scaleDown = defaultRules(spec.behavior.scaleDown, DEFAULT_SCALE_DOWN);
  }
}

/** upstream's formatHPAMetrics: `cpu: 42%/50%` per metric, at most three then `+ N more...` */
export function formatHpaTargets(o: Rec): string {
  const spec = isRec(o.spec) ? o.spec : {};
  const metrics = recs(spec.metrics);
  if (!metrics.length) return '<none>';
  const current = recs(isRec(o.status) ? o.status.currentMetrics : undefined);
  const out: string[] = [];
  metrics.forEach((m, i) => {
    const cur = current[i];
    const src = (isRec(m.resource) ? m.resource : isRec(m.containerResource) ? m.containerResource : undefined) as Rec | undefined;
    const target = isRec(src?.target) ? (src!.target as Rec) : undefined;
    if (src && target) {
      const curSrc = isRec(cur?.resource) ? (cur!.resource as Rec) : isRec(cur?.containerResource) ? (cur!.containerResource as Rec) : undefined;
      const curVal = isRec(curSrc?.current) ? (curSrc!.current as Rec) : {};
      const name = String(src.name ?? '');
      if (target.averageUtilization !== undefined) {
        const c = curVal.averageUtilization !== undefined ? `${String(curVal.averageUtilization)}%` : '<unknown>';
        out.push(`${name}: ${c}/${String(target.averageUtilization)}%`);
      } else {
        const c = curVal.averageValue !== undefined ? String(curVal.averageValue) : '<unknown>';
        out.push(`${name}: ${c}/${String(target.averageValue ?? '<unset>')}`);
      }
      return;
    }
    out.push(`<unknown>/${String(m.type ?? '')}`);
  });
  const shown = out.slice(0, 3).join(', ');
  return out.length > 3 ? `${shown} + ${out.length - 3} more...` : shown;
}

export const horizontalPodAutoscaler = defineKind({
  info: infoOf('HorizontalPodAutoscaler', 'autoscaling/v2', 'horizontalpodautoscalers', { shortNames: ['hpa'], categories: ['all'], hasStatus: true }),
  model: 'V2HorizontalPodAutoscaler',
  defaults: defaultHorizontalPodAutoscaler,
  validate: withMetaUpdate(validateHorizontalPodAutoscaler),
  // autoscaling/v1's messages (what `kubectl autoscale` 1.32 POSTs, through its typed v1 client),
  // after k8s.io/api/autoscaling/v1/generated.proto; named …V1 beside the other kinds' messages
  protobuf: `
message HorizontalPodAutoscalerV1 {
  optional ObjectMeta metadata = 1;
  optional HorizontalPodAutoscalerSpecV1 spec = 2;
  optional HorizontalPodAutoscalerStatusV1 status = 3;
}
message CrossVersionObjectReference {
  optional string kind = 1;
  optional string name = 2;
  optional string apiVersion = 3;
}
message HorizontalPodAutoscalerSpecV1 {
  optional CrossVersionObjectReference scaleTargetRef = 1;
  optional int32 minReplicas = 2;
  optional int32 maxReplicas = 3;
  optional int32 targetCPUUtilizationPercentage = 4;
}
message HorizontalPodAutoscalerStatusV1 {
  optional int64 observedGeneration = 1;
  optional Time lastScaleTime = 2;
  optional int32 currentReplicas = 3;
  optional int32 desiredReplicas = 4;
  optional int32 currentCPUUtilizationPercentage = 5;
}
`,
  // upstream `horizontalPodAutoscalerColumnDefinitions`: Name, Reference, Targets, MinPods, MaxPods, Replicas, Age
  columns: [
    {
      name: 'Reference',
      value: (o) => {
        const ref = isRec(o.spec) && isRec(o.spec.scaleTargetRef) ? o.spec.scaleTargetRef : {};
        return `${String(ref.kind ?? '')}/${String(ref.name ?? '')}`;
      },
    },
    { name: 'Targets', value: formatHpaTargets },
    { name: 'MinPods', value: (o) => (isRec(o.spec) && o.spec.minReplicas !== undefined ? String(o.spec.minReplicas) : '<unset>') },
    { name: 'MaxPods', type: 'integer', value: (o) => Number(isRec(o.spec) ? (o.spec.maxReplicas ?? 0) : 0) },
    { name: 'Replicas', type: 'integer', value: (o) => Number(isRec(o.status) ? (o.status.currentReplicas ?? 0) : 0) },
  ],
});
