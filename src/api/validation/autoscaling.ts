/**
 * HorizontalPodAutoscaler (autoscaling/v2) validation, after upstream's
 * ValidateHorizontalPodAutoscaler (pkg/apis/autoscaling/validation): the scale target, replica
 * bounds, each metric's source and target, and the scaling behavior's windows and policies —
 * with upstream's field paths and messages.
 */
import { type FieldError, type Path, invalid, notSupported, path, required } from '../field.js';
import { nameIsDNSSubdomain } from '../names.js';
import { quantityValue } from '../quantity.js';
import { type Rec, isRec, validateObjectMeta } from './meta.js';

const METRIC_TYPES = ['ContainerResource', 'External', 'Object', 'Pods', 'Resource'];
const TARGET_TYPES = ['AverageValue', 'Utilization', 'Value'];
const SELECT_POLICIES = ['Disabled', 'Max', 'Min'];
const POLICY_TYPES = ['Percent', 'Pods'];
/** upstream MaxStabilizationWindowSeconds and MaxPeriodSeconds */
const MAX_WINDOW = 3600;
const MAX_PERIOD = 1800;
/** the source field each metric type populates */
const SOURCE_FIELD: Readonly<Record<string, string>> = {
  ContainerResource: 'containerResource',
  External: 'external',
  Object: 'object',
  Pods: 'pods',
  Resource: 'resource',
};

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

/** a path segment name as upstream's ValidatePathSegmentName: no `/`, `%`, and not `.` or `..` */
function pathSegmentProblems(name: string): string[] {
  if (name === '.' || name === '..') return [`may not be '${name}'`];
  const out: string[] = [];
  if (name.includes('/')) out.push(`may not contain '/'`);
  if (name.includes('%')) out.push(`may not contain '%'`);
  return out;
}

function validateScaleTargetRef(ref: unknown, p: Path): FieldError[] {
  if (!isRec(ref)) return [required(p.child('kind'), ''), required(p.child('name'), '')];
  const errs: FieldError[] = [];
  if (typeof ref.kind !== 'string' || ref.kind === '') errs.push(required(p.child('kind'), ''));
  else for (const msg of pathSegmentProblems(ref.kind)) errs.push(invalid(p.child('kind'), ref.kind, msg));
  if (typeof ref.name !== 'string' || ref.name === '') errs.push(required(p.child('name'), ''));
  else for (const msg of pathSegmentProblems(ref.name)) errs.push(invalid(p.child('name'), ref.name, msg));
  return errs;
}

function validateTarget(t: unknown, p: Path, resource: boolean): FieldError[] {
  if (!isRec(t)) return [required(p.child('type'), 'must specify a metric target type')];
  const errs: FieldError[] = [];
  if (t.type === undefined || t.type === '') errs.push(required(p.child('type'), 'must specify a metric target type'));
  else if (!TARGET_TYPES.includes(String(t.type))) errs.push(notSupported(p.child('type'), t.type, TARGET_TYPES));
  if (t.averageUtilization !== undefined && (!isInt(t.averageUtilization) || t.averageUtilization < 1)) {
    errs.push(invalid(p.child('averageUtilization'), t.averageUtilization, 'must be greater than 0'));
  }
  for (const k of ['value', 'averageValue'] as const) {
    if (t[k] === undefined) continue;
    const v = quantityValue(t[k]);
    if (v === undefined) errs.push(invalid(p.child(k), t[k], 'must be a quantity, e.g. 500m or 100Mi'));
    else if (v <= 0) errs.push(invalid(p.child(k), t[k], 'must be positive'));
  }
  if (resource && t.type === 'Utilization' && t.averageUtilization === undefined) {
    errs.push(required(p.child('averageUtilization'), 'must set averageUtilization when type is Utilization'));
  }
  if (resource && t.type === 'AverageValue' && t.averageValue === undefined) {
    errs.push(required(p.child('averageValue'), 'must set averageValue when type is AverageValue'));
  }
  if (resource && t.type === 'Value') errs.push(invalid(p.child('type'), t.type, 'must be either Utilization or AverageValue'));
  return errs;
}

function validateMetric(m: unknown, p: Path): FieldError[] {
  if (!isRec(m)) return [required(p.child('type'), 'must specify a metric source type')];
  const errs: FieldError[] = [];
  const type = m.type;
  if (type === undefined || type === '') errs.push(required(p.child('type'), 'must specify a metric source type'));
  else if (!METRIC_TYPES.includes(String(type))) {
    errs.push(notSupported(p.child('type'), type, METRIC_TYPES));
    return errs;
  }
  const set = Object.values(SOURCE_FIELD).filter((f) => m[f] !== undefined && m[f] !== null);
  const own = SOURCE_FIELD[String(type)];
  if (own && set.some((f) => f !== own)) errs.push(forbiddenOthers(p, own));
  if (!own) return errs;
  const src = m[own];
  if (!isRec(src)) {
    errs.push(required(p.child(own), 'must populate information for the given metric source'));
    return errs;
  }
  const sp = p.child(own);
  if (own === 'resource' || own === 'containerResource') {
    if (typeof src.name !== 'string' || src.name === '') errs.push(required(sp.child('name'), 'must specify a resource name'));
    if (own === 'containerResource' && (typeof src.container !== 'string' || src.container === '')) errs.push(required(sp.child('container'), 'must specify a container'));
  } else {
    const metric = src.metric;
    if (!isRec(metric) || typeof metric.name !== 'string' || metric.name === '') errs.push(required(sp.child('metric').child('name'), 'must specify a metric name'));
    if (own === 'object') {
      const ref = src.describedObject;
      if (!isRec(ref) || !ref.kind) errs.push(required(sp.child('describedObject').child('kind'), ''));
      if (!isRec(ref) || !ref.name) errs.push(required(sp.child('describedObject').child('name'), ''));
    }
  }
  errs.push(...validateTarget(src.target, sp.child('target'), own === 'resource' || own === 'containerResource'));
  return errs;
}

const forbiddenOthers = (p: Path, own: string): FieldError => ({
  type: 'FieldValueForbidden',
  field: p.toString(),
  detail: `must populate the given metric source only (${own})`,
});

function validateRules(r: unknown, p: Path): FieldError[] {
  if (r === undefined || r === null) return [];
  if (!isRec(r)) return [invalid(p, r, 'must be an object')];
  const errs: FieldError[] = [];
  const w = r.stabilizationWindowSeconds;
  if (w !== undefined && w !== null) {
    if (!isInt(w)) errs.push(invalid(p.child('stabilizationWindowSeconds'), w, 'must be an integer'));
    else if (w < 0) errs.push(invalid(p.child('stabilizationWindowSeconds'), w, 'must be greater than or equal to zero'));
    else if (w > MAX_WINDOW) errs.push(invalid(p.child('stabilizationWindowSeconds'), w, `must be less than or equal to ${MAX_WINDOW}`));
  }
  if (r.selectPolicy !== undefined && r.selectPolicy !== null && !SELECT_POLICIES.includes(String(r.selectPolicy))) {
    errs.push(notSupported(p.child('selectPolicy'), r.selectPolicy, SELECT_POLICIES));
  }
  const pp = p.child('policies');
  if (!Array.isArray(r.policies) || r.policies.length === 0) {
    errs.push(required(pp, 'must specify at least one Policy'));
    return errs;
  }
  r.policies.forEach((pol, i) => {
    const ip = pp.index(i);
    if (!isRec(pol)) {
      errs.push(invalid(ip, pol, 'must be an object'));
      return;
    }
    if (!POLICY_TYPES.includes(String(pol.type))) errs.push(notSupported(ip.child('type'), pol.type ?? '', POLICY_TYPES));
    if (!isInt(pol.value) || pol.value <= 0) errs.push(invalid(ip.child('value'), pol.value ?? 0, 'must be greater than zero'));
    if (!isInt(pol.periodSeconds) || pol.periodSeconds <= 0) errs.push(invalid(ip.child('periodSeconds'), pol.periodSeconds ?? 0, 'must be greater than zero'));
    else if (pol.periodSeconds > MAX_PERIOD) errs.push(invalid(ip.child('periodSeconds'), pol.periodSeconds, `must be less than or equal to ${MAX_PERIOD}`));
  });
  return errs;
}

export function validateHorizontalPodAutoscaler(o: Rec): FieldError[] {
  const errs = validateObjectMeta(o.metadata, { namespaced: true, nameFn: nameIsDNSSubdomain }, path('metadata'));
  const spec = o.spec;
  const sp = path('spec');
  if (!isRec(spec)) return [...errs, required(sp, '')];
  const min = spec.minReplicas;
  if (min !== undefined && min !== null && (!isInt(min) || min < 1)) errs.push(invalid(sp.child('minReplicas'), min, 'must be greater than or equal to 1'));
  const max = spec.maxReplicas;
  if (!isInt(max) || max < 1) errs.push(invalid(sp.child('maxReplicas'), max ?? 0, 'must be greater than 0'));
  else if (isInt(min) && min > max) errs.push(invalid(sp.child('maxReplicas'), max, 'must be greater than or equal to `minReplicas`'));
  errs.push(...validateScaleTargetRef(spec.scaleTargetRef, sp.child('scaleTargetRef')));
  if (spec.metrics !== undefined && spec.metrics !== null) {
    if (!Array.isArray(spec.metrics)) errs.push(invalid(sp.child('metrics'), spec.metrics, 'must be a list'));
    else spec.metrics.forEach((m, i) => errs.push(...validateMetric(m, sp.child('metrics').index(i))));
  }
  const b = spec.behavior;
  if (b !== undefined && b !== null) {
    if (!isRec(b)) errs.push(invalid(sp.child('behavior'), b, 'must be an object'));
    else {
      errs.push(...validateRules(b.scaleUp, sp.child('behavior').child('scaleUp')));
      errs.push(...validateRules(b.scaleDown, sp.child('behavior').child('scaleDown')));
    }
  }
  return errs;
}
