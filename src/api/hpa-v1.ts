/**
 * autoscaling/v1 HorizontalPodAutoscaler as a view of the stored autoscaling/v2 object, as
 * upstream converts between them (pkg/apis/autoscaling/v1/conversion.go): the CPU utilization
 * metric is `targetCPUUtilizationPercentage`, its current value `currentCPUUtilizationPercentage`;
 * what v1 cannot say (other metrics, behavior, conditions, current metrics) travels in
 * upstream's annotations, so a v1 client that reads, changes and writes an object keeps it.
 * (Upstream writes the metrics annotations in the v2beta1 shape; here they carry v2's JSON.)
 */
type Rec = Record<string, unknown>;
const isRec = (v: unknown): v is Rec => v !== null && typeof v === 'object' && !Array.isArray(v);

export const HPA_V1_ANNOTATIONS = Object.freeze({
  metrics: 'autoscaling.alpha.kubernetes.io/metrics',
  currentMetrics: 'autoscaling.alpha.kubernetes.io/current-metrics',
  conditions: 'autoscaling.alpha.kubernetes.io/conditions',
  behavior: 'autoscaling.alpha.kubernetes.io/behavior',
});

const isCpuUtilization = (m: unknown): boolean =>
  isRec(m) && m.type === 'Resource' && isRec(m.resource) && m.resource.name === 'cpu' && isRec(m.resource.target) && m.resource.target.type === 'Utilization';

/** The v2 object as autoscaling/v1 shows it. */
export function hpaToV1(v2: Rec): Rec {
  const meta: Rec = { ...(isRec(v2.metadata) ? v2.metadata : {}) };
  const ann: Record<string, string> = { ...(isRec(meta.annotations) ? (meta.annotations as Record<string, string>) : {}) };
  const spec = isRec(v2.spec) ? v2.spec : {};
  const status = isRec(v2.status) ? v2.status : undefined;
  const metrics = Array.isArray(spec.metrics) ? spec.metrics : [];
  const cpu = metrics.find(isCpuUtilization) as Rec | undefined;
  const others = metrics.filter((m) => m !== cpu);
  if (others.length) ann[HPA_V1_ANNOTATIONS.metrics] = JSON.stringify(others);
  if (spec.behavior !== undefined) ann[HPA_V1_ANNOTATIONS.behavior] = JSON.stringify(spec.behavior);
  const v1spec: Rec = {
    ...(spec.scaleTargetRef !== undefined ? { scaleTargetRef: spec.scaleTargetRef } : {}),
    ...(spec.minReplicas !== undefined ? { minReplicas: spec.minReplicas } : {}),
    maxReplicas: spec.maxReplicas,
    ...(cpu ? { targetCPUUtilizationPercentage: ((cpu.resource as Rec).target as Rec).averageUtilization } : {}),
  };
  let v1status: Rec | undefined;
  if (status) {
    const current = Array.isArray(status.currentMetrics) ? (status.currentMetrics as unknown[]).filter(isRec) : [];
    const curCpu = current.find((m) => m.type === 'Resource' && isRec(m.resource) && m.resource.name === 'cpu');
    const curUtil = curCpu && isRec(curCpu.resource) && isRec(curCpu.resource.current) ? curCpu.resource.current.averageUtilization : undefined;
    const otherCurrent = current.filter((m) => m !== curCpu);
    if (otherCurrent.length) ann[HPA_V1_ANNOTATIONS.currentMetrics] = JSON.stringify(otherCurrent);
    if (Array.isArray(status.conditions) && status.conditions.length) ann[HPA_V1_ANNOTATIONS.conditions] = JSON.stringify(status.conditions);
    v1status = {
      ...(status.observedGeneration !== undefined ? { observedGeneration: status.observedGeneration } : {}),
      ...(status.lastScaleTime !== undefined ? { lastScaleTime: status.lastScaleTime } : {}),
      currentReplicas: status.currentReplicas ?? 0,
      desiredReplicas: status.desiredReplicas ?? 0,
      ...(curUtil !== undefined ? { currentCPUUtilizationPercentage: curUtil } : {}),
    };
  }
  if (Object.keys(ann).length) meta.annotations = ann;
  return { ...v2, apiVersion: 'autoscaling/v1', kind: 'HorizontalPodAutoscaler', metadata: meta, spec: v1spec, ...(v1status ? { status: v1status } : {}) };
}

function parseAnnotation(ann: Record<string, unknown>, key: string): unknown {
  const raw = ann[key];
  delete ann[key];
  if (typeof raw !== 'string') return undefined;
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return undefined;
  }
}

/** A v1 object (as a client sent it) as the v2 object to store. */
export function hpaFromV1(v1: Rec): Rec {
  const meta: Rec = { ...(isRec(v1.metadata) ? v1.metadata : {}) };
  const ann: Record<string, unknown> = { ...(isRec(meta.annotations) ? meta.annotations : {}) };
  const spec = isRec(v1.spec) ? v1.spec : {};
  const others = parseAnnotation(ann, HPA_V1_ANNOTATIONS.metrics);
  const behavior = parseAnnotation(ann, HPA_V1_ANNOTATIONS.behavior);
  const currentOthers = parseAnnotation(ann, HPA_V1_ANNOTATIONS.currentMetrics);
  const conditions = parseAnnotation(ann, HPA_V1_ANNOTATIONS.conditions);
  const metrics: unknown[] = [];
  if (spec.targetCPUUtilizationPercentage !== undefined && spec.targetCPUUtilizationPercentage !== null) {
    metrics.push({ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: spec.targetCPUUtilizationPercentage } } });
  }
  if (Array.isArray(others)) metrics.push(...others);
  if (Object.keys(ann).length) meta.annotations = ann;
  else delete meta.annotations;
  const v2spec: Rec = {
    ...(spec.scaleTargetRef !== undefined ? { scaleTargetRef: spec.scaleTargetRef } : {}),
    ...(spec.minReplicas !== undefined ? { minReplicas: spec.minReplicas } : {}),
    maxReplicas: spec.maxReplicas,
    ...(metrics.length ? { metrics } : {}),
    ...(isRec(behavior) ? { behavior } : {}),
  };
  const out: Rec = { ...v1, apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler', metadata: meta, spec: v2spec };
  if (isRec(v1.status)) {
    const s = v1.status;
    const current: unknown[] = [];
    if (s.currentCPUUtilizationPercentage !== undefined) {
      current.push({ type: 'Resource', resource: { name: 'cpu', current: { averageUtilization: s.currentCPUUtilizationPercentage } } });
    }
    if (Array.isArray(currentOthers)) current.push(...currentOthers);
    out.status = {
      ...(s.observedGeneration !== undefined ? { observedGeneration: s.observedGeneration } : {}),
      ...(s.lastScaleTime !== undefined ? { lastScaleTime: s.lastScaleTime } : {}),
      currentReplicas: s.currentReplicas ?? 0,
      desiredReplicas: s.desiredReplicas ?? 0,
      ...(current.length ? { currentMetrics: current } : {}),
      ...(Array.isArray(conditions) ? { conditions } : {}),
    };
  }
  return out;
}
