/**
 * Workload validation: Deployment, ReplicaSet, StatefulSet, DaemonSet (pkg/apis/apps/validation),
 * ReplicationController (core), Job and CronJob (the basic batch rules), in upstream order.
 * Runs on the defaulted object.
 */
import { type FieldError, type Path, forbidden, invalid, notSupported, path, required } from '../field.js';
import { fromLabelSelector, fromMap, matches } from '../labels.js';
import { isValidPercent, nameIsDNSLabel, nameIsDNSSubdomain } from '../names.js';
import {
  FIELD_IMMUTABLE,
  type Rec,
  isRec,
  jsonEqual,
  labelSelectorParses,
  rec,
  validateAnnotations,
  validateLabelSelector,
  validateLabels,
  validateNonnegative,
  validateObjectMeta,
} from './meta.js';
import { cronScheduleError, timeZoneError } from './cron.js';
import { validatePodTemplateSpec } from './pod.js';

const present = (v: unknown): boolean => v !== undefined && v !== null;
const specOf = (o: Rec): Rec => (isRec(o.spec) ? o.spec : {});
const templateLabels = (tpl: unknown): Record<string, string> | undefined =>
  isRec(tpl) && isRec(tpl.metadata) && isRec(tpl.metadata.labels) ? (tpl.metadata.labels as Record<string, string>) : undefined;
const templateSpec = (tpl: unknown): Rec => (isRec(tpl) && isRec(tpl.spec) ? tpl.spec : {});

/** Number of requirements of a parseable metav1.LabelSelector; `null` (absent) selects nothing. */
function selectorSize(sel: unknown): number {
  if (!isRec(sel)) return 0;
  const ml = isRec(sel.matchLabels) ? Object.keys(sel.matchLabels).length : 0;
  const me = Array.isArray(sel.matchExpressions) ? sel.matchExpressions.length : 0;
  return ml + me;
}

/** Does the (parseable) selector match the template labels? An absent selector matches nothing, as upstream. */
function selectorMatchesTemplate(sel: unknown, tpl: unknown): boolean {
  if (!present(sel)) return false;
  return matches(fromLabelSelector(sel as Parameters<typeof fromLabelSelector>[0]), templateLabels(tpl));
}

const SELECTOR_MISMATCH = '`selector` does not match template `labels`';

/**
 * `ValidatePodTemplateSpecForReplicaSet` and friends: template labels match the selector, the pod
 * template is valid, and restartPolicy is Always.
 */
function validateTemplateForController(tpl: unknown, sel: unknown, kindWord: string, p: Path, errs: FieldError[]): void {
  if (selectorSize(sel) > 0 || !present(sel)) {
    if (!selectorMatchesTemplate(sel, tpl)) {
      errs.push(invalid(p.child('metadata').child('labels'), templateLabels(tpl) ?? null, SELECTOR_MISMATCH));
    }
  }
  errs.push(...validatePodTemplateSpec(tpl, p));
  const ts = templateSpec(tpl);
  if (ts.restartPolicy !== 'Always') {
    errs.push(notSupported(p.child('spec').child('restartPolicy'), ts.restartPolicy ?? '', ['Always']));
  }
  if (present(ts.activeDeadlineSeconds)) {
    errs.push(forbidden(p.child('spec').child('activeDeadlineSeconds'), `activeDeadlineSeconds in ${kindWord} is not Supported`));
  }
}

/** `spec.selector` of apps kinds: required, a valid LabelSelector, not empty. */
function validateAppsSelector(spec: Rec, word: string, p: Path, errs: FieldError[]): boolean {
  const sp = p.child('selector');
  if (!present(spec.selector)) {
    errs.push(required(sp));
  } else {
    errs.push(...validateLabelSelector(spec.selector, sp));
    if (selectorSize(spec.selector) === 0) errs.push(invalid(sp, spec.selector, `empty selector is invalid for ${word}`));
  }
  if (!labelSelectorParses(spec.selector)) {
    errs.push(invalid(sp, spec.selector, 'invalid label selector'));
    return false;
  }
  return true;
}

// ---- int-or-percent (maxSurge / maxUnavailable)

function percentValue(v: unknown): number | undefined {
  return typeof v === 'string' && isValidPercent(v).length === 0 ? Number(v.slice(0, -1)) : undefined;
}
/** `getIntOrPercentValue`: a percentage's number, an int, or a string's Atoi (0 when not numeric). */
function intOrPercentValue(v: unknown): number {
  const pct = percentValue(v);
  if (pct !== undefined) return pct;
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && /^[+-]?[0-9]+$/.test(v)) return Number(v);
  return 0;
}
function validatePositiveIntOrPercent(v: unknown, p: Path): FieldError[] {
  if (typeof v === 'string') return isValidPercent(v).map((m) => invalid(p, v, m));
  if (Number.isInteger(v)) return validateNonnegative(v, p);
  return [invalid(p, v ?? null, "must be an integer or percentage (e.g '5%')")];
}
function notMoreThan100Percent(v: unknown, p: Path): FieldError[] {
  const pct = percentValue(v);
  return pct !== undefined && pct > 100 ? [invalid(p, v, 'must not be greater than 100%')] : [];
}

function validateDeploymentStrategy(v: unknown, p: Path, errs: FieldError[]): void {
  const strategy = isRec(v) ? v : {};
  switch (strategy.type) {
    case 'Recreate':
      if (present(strategy.rollingUpdate)) {
        errs.push(forbidden(p.child('rollingUpdate'), "may not be specified when strategy `type` is 'Recreate'"));
      }
      break;
    case 'RollingUpdate': {
      const ru = rec(strategy.rollingUpdate, p.child('rollingUpdate'), errs);
      if (!ru) {
        errs.push(required(p.child('rollingUpdate'), 'this should be defaulted and never be nil'));
        break;
      }
      const rp = p.child('rollingUpdate');
      errs.push(...validatePositiveIntOrPercent(ru.maxUnavailable, rp.child('maxUnavailable')));
      errs.push(...validatePositiveIntOrPercent(ru.maxSurge, rp.child('maxSurge')));
      if (intOrPercentValue(ru.maxUnavailable) === 0 && intOrPercentValue(ru.maxSurge) === 0) {
        errs.push(invalid(rp.child('maxUnavailable'), ru.maxUnavailable ?? 0, 'may not be 0 when `maxSurge` is 0'));
      }
      errs.push(...notMoreThan100Percent(ru.maxUnavailable, rp.child('maxUnavailable')));
      break;
    }
    default:
      errs.push(notSupported(p, strategy, ['Recreate', 'RollingUpdate']));
  }
}

export function validateDeployment(d: Rec): FieldError[] {
  const errs = validateObjectMeta(d.metadata, { namespaced: true, nameFn: nameIsDNSSubdomain }, path('metadata'));
  const p = path('spec');
  const spec = rec(d.spec, p, errs) ?? {};
  errs.push(...validateNonnegative(spec.replicas, p.child('replicas')));
  if (validateAppsSelector(spec, 'deployment', p, errs)) {
    validateTemplateForController(spec.template, spec.selector, 'ReplicaSet', p.child('template'), errs);
  }
  validateDeploymentStrategy(spec.strategy, p.child('strategy'), errs);
  errs.push(...validateNonnegative(spec.minReadySeconds, p.child('minReadySeconds')));
  errs.push(...validateNonnegative(spec.revisionHistoryLimit, p.child('revisionHistoryLimit')));
  if (present(spec.progressDeadlineSeconds)) {
    errs.push(...validateNonnegative(spec.progressDeadlineSeconds, p.child('progressDeadlineSeconds')));
    if ((spec.progressDeadlineSeconds as number) <= ((spec.minReadySeconds as number) ?? 0)) {
      errs.push(invalid(p.child('progressDeadlineSeconds'), spec.progressDeadlineSeconds, 'must be greater than minReadySeconds'));
    }
  }
  return errs;
}

export function validateReplicaSet(rs: Rec): FieldError[] {
  const errs = validateObjectMeta(rs.metadata, { namespaced: true, nameFn: nameIsDNSSubdomain }, path('metadata'));
  const p = path('spec');
  const spec = rec(rs.spec, p, errs) ?? {};
  errs.push(...validateNonnegative(spec.replicas, p.child('replicas')));
  errs.push(...validateNonnegative(spec.minReadySeconds, p.child('minReadySeconds')));
  // upstream's ReplicaSet message says "deployment" too
  if (validateAppsSelector(spec, 'deployment', p, errs)) {
    validateTemplateForController(spec.template, spec.selector, 'ReplicaSet', p.child('template'), errs);
  }
  return errs;
}

export function validateReplicationController(rc: Rec): FieldError[] {
  const errs = validateObjectMeta(rc.metadata, { namespaced: true, nameFn: nameIsDNSSubdomain }, path('metadata'));
  const p = path('spec');
  const spec = rec(rc.spec, p, errs) ?? {};
  errs.push(...validateNonnegative(spec.minReadySeconds, p.child('minReadySeconds')));
  const sel = isRec(spec.selector) ? (spec.selector as Record<string, string>) : {};
  if (Object.keys(sel).length === 0) errs.push(required(p.child('selector')));
  errs.push(...validateNonnegative(spec.replicas, p.child('replicas')));
  const tp = p.child('template');
  if (!present(spec.template)) {
    errs.push(required(tp));
  } else {
    if (Object.keys(sel).length > 0 && !matches(fromMap(sel), templateLabels(spec.template))) {
      errs.push(invalid(tp.child('metadata').child('labels'), templateLabels(spec.template) ?? null, SELECTOR_MISMATCH));
    }
    errs.push(...validatePodTemplateSpec(spec.template, tp));
    const ts = templateSpec(spec.template);
    if (ts.restartPolicy !== 'Always') errs.push(notSupported(tp.child('spec').child('restartPolicy'), ts.restartPolicy ?? '', ['Always']));
    if (present(ts.activeDeadlineSeconds)) {
      errs.push(forbidden(tp.child('spec').child('activeDeadlineSeconds'), 'activeDeadlineSeconds in ReplicationController is not Supported'));
    }
  }
  return errs;
}

export function validateStatefulSet(ss: Rec): FieldError[] {
  const errs = validateObjectMeta(ss.metadata, { namespaced: true, nameFn: nameIsDNSLabel }, path('metadata'));
  const p = path('spec');
  const spec = rec(ss.spec, p, errs) ?? {};
  const pmp = spec.podManagementPolicy;
  if (!present(pmp) || pmp === '') errs.push(required(p.child('podManagementPolicy')));
  else if (pmp !== 'OrderedReady' && pmp !== 'Parallel') {
    errs.push(invalid(p.child('podManagementPolicy'), pmp, "must be 'OrderedReady' or 'Parallel'"));
  }
  const us = isRec(spec.updateStrategy) ? spec.updateStrategy : {};
  switch (us.type) {
    case undefined:
    case null:
    case '':
      errs.push(required(p.child('updateStrategy')));
      break;
    case 'OnDelete':
      if (present(us.rollingUpdate)) {
        errs.push(invalid(p.child('updateStrategy').child('rollingUpdate'), us.rollingUpdate, "only allowed for updateStrategy 'RollingUpdate'"));
      }
      break;
    case 'RollingUpdate':
      if (isRec(us.rollingUpdate)) {
        errs.push(...validateNonnegative(us.rollingUpdate.partition, p.child('updateStrategy').child('rollingUpdate').child('partition')));
      }
      break;
    default:
      errs.push(invalid(p.child('updateStrategy'), us, "must be 'RollingUpdate' or 'OnDelete'"));
  }
  errs.push(...validateNonnegative(spec.replicas, p.child('replicas')));
  errs.push(...validateNonnegative(spec.minReadySeconds, p.child('minReadySeconds')));
  if (validateAppsSelector(spec, 'statefulset', p, errs)) {
    const tp = p.child('template');
    if (selectorSize(spec.selector) > 0 && !selectorMatchesTemplate(spec.selector, spec.template)) {
      errs.push(invalid(tp.child('metadata').child('labels'), templateLabels(spec.template) ?? null, SELECTOR_MISMATCH));
    }
    // upstream validates only the template's labels and annotations here, not its pod spec
    // ("TODO: Add validation for PodSpec" in ValidatePodTemplateSpecForStatefulSet)
    const meta = isRec(spec.template) && isRec(spec.template.metadata) ? spec.template.metadata : {};
    errs.push(...validateLabels(meta.labels, tp.child('labels')));
    errs.push(...validateAnnotations(meta.annotations, tp.child('annotations')));
  }
  const ts = templateSpec(spec.template);
  if (ts.restartPolicy !== 'Always') {
    errs.push(notSupported(p.child('template').child('spec').child('restartPolicy'), ts.restartPolicy ?? '', ['Always']));
  }
  if (present(ts.activeDeadlineSeconds)) {
    errs.push(forbidden(p.child('template').child('spec').child('activeDeadlineSeconds'), 'activeDeadlineSeconds in StatefulSet is not Supported'));
  }
  return errs;
}

export function validateDaemonSet(ds: Rec): FieldError[] {
  const errs = validateObjectMeta(ds.metadata, { namespaced: true, nameFn: nameIsDNSSubdomain }, path('metadata'));
  const p = path('spec');
  const spec = rec(ds.spec, p, errs) ?? {};
  errs.push(...validateLabelSelector(spec.selector, p.child('selector')));
  if (labelSelectorParses(spec.selector) && !selectorMatchesTemplate(spec.selector, spec.template)) {
    errs.push(invalid(p.child('template').child('metadata').child('labels'), templateLabels(spec.template) ?? null, SELECTOR_MISMATCH));
  }
  if (present(spec.selector) && selectorSize(spec.selector) === 0) {
    errs.push(invalid(p.child('selector'), spec.selector, 'empty selector is invalid for daemonset'));
  }
  errs.push(...validatePodTemplateSpec(spec.template, p.child('template')));
  const ts = templateSpec(spec.template);
  if (ts.restartPolicy !== 'Always') {
    errs.push(notSupported(p.child('template').child('spec').child('restartPolicy'), ts.restartPolicy ?? '', ['Always']));
  }
  if (present(ts.activeDeadlineSeconds)) {
    errs.push(forbidden(p.child('template').child('spec').child('activeDeadlineSeconds'), 'activeDeadlineSeconds in DaemonSet is not Supported'));
  }
  errs.push(...validateNonnegative(spec.minReadySeconds, p.child('minReadySeconds')));
  const us = isRec(spec.updateStrategy) ? spec.updateStrategy : {};
  const up = p.child('updateStrategy');
  if (us.type === 'RollingUpdate') {
    const ru = isRec(us.rollingUpdate) ? us.rollingUpdate : undefined;
    if (!ru) {
      errs.push(required(up.child('rollingUpdate')));
    } else {
      const rp = up.child('rollingUpdate');
      errs.push(...validatePositiveIntOrPercent(ru.maxUnavailable, rp.child('maxUnavailable')));
      errs.push(...validatePositiveIntOrPercent(ru.maxSurge, rp.child('maxSurge')));
      errs.push(...notMoreThan100Percent(ru.maxUnavailable, rp.child('maxUnavailable')));
      errs.push(...notMoreThan100Percent(ru.maxSurge, rp.child('maxSurge')));
      const hasUnavailable = intOrPercentValue(ru.maxUnavailable) !== 0;
      const hasSurge = intOrPercentValue(ru.maxSurge) !== 0;
      if (hasUnavailable && hasSurge) errs.push(invalid(rp.child('maxSurge'), ru.maxSurge, 'may not be set when maxUnavailable is non-zero'));
      if (!hasUnavailable && !hasSurge) errs.push(required(rp.child('maxUnavailable'), 'cannot be 0 when maxSurge is 0'));
    }
  } else if (us.type !== 'OnDelete') {
    errs.push(notSupported(up, us, ['RollingUpdate', 'OnDelete']));
  }
  errs.push(...validateNonnegative(spec.revisionHistoryLimit, p.child('revisionHistoryLimit')));
  return errs;
}

function validateJobSpec(spec: Rec, p: Path, errs: FieldError[]): void {
  for (const f of ['parallelism', 'completions', 'backoffLimit']) errs.push(...validateNonnegative(spec[f], p.child(f)));
  const ads = spec.activeDeadlineSeconds;
  if (present(ads) && (!Number.isInteger(ads) || (ads as number) <= 0)) {
    errs.push(invalid(p.child('activeDeadlineSeconds'), ads, 'must be greater than 0'));
  }
  if (present(spec.selector)) {
    errs.push(...validateLabelSelector(spec.selector, p.child('selector')));
    if (labelSelectorParses(spec.selector) && selectorSize(spec.selector) > 0 && !selectorMatchesTemplate(spec.selector, spec.template)) {
      errs.push(invalid(p.child('template').child('metadata').child('labels'), templateLabels(spec.template) ?? null, SELECTOR_MISMATCH));
    }
  }
  errs.push(...validatePodTemplateSpec(spec.template, p.child('template')));
  const rp = templateSpec(spec.template).restartPolicy;
  const rpPath = p.child('template').child('spec').child('restartPolicy');
  // SetDefaults_PodSpec makes an absent restartPolicy Always, hence both cases here
  if (!present(rp) || rp === '' || rp === 'Always') errs.push(required(rpPath, 'valid values: "OnFailure", "Never"'));
  else if (rp !== 'OnFailure' && rp !== 'Never') errs.push(notSupported(rpPath, rp, ['OnFailure', 'Never']));
}

export function validateJob(job: Rec): FieldError[] {
  const errs = validateObjectMeta(job.metadata, { namespaced: true, nameFn: nameIsDNSSubdomain }, path('metadata'));
  const p = path('spec');
  validateJobSpec(rec(job.spec, p, errs) ?? {}, p, errs);
  return errs;
}

export function validateCronJob(cj: Rec): FieldError[] {
  const errs = validateObjectMeta(cj.metadata, { namespaced: true, nameFn: nameIsDNSSubdomain }, path('metadata'));
  const p = path('spec');
  const spec = rec(cj.spec, p, errs) ?? {};
  const sp = p.child('schedule');
  if (typeof spec.schedule !== 'string' || spec.schedule === '') errs.push(required(sp));
  else {
    const err = cronScheduleError(spec.schedule);
    if (err) errs.push(invalid(sp, spec.schedule, err));
    if (spec.schedule.includes('TZ') && present(spec.timeZone)) {
      errs.push(invalid(sp, spec.schedule, 'cannot use both timeZone field and TZ or CRON_TZ in schedule'));
    }
  }
  const tz = spec.timeZone;
  const tzp = p.child('timeZone');
  if (tz === '') errs.push(invalid(tzp, tz, 'timeZone must be nil or non-empty string'));
  else if (typeof tz === 'string') {
    if (tz.toLowerCase() === 'local') errs.push(invalid(tzp, tz, 'timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones'));
    const err = timeZoneError(tz);
    if (err) errs.push(invalid(tzp, tz, err));
  }
  const cp = spec.concurrencyPolicy;
  if (!present(cp) || cp === '') errs.push(required(p.child('concurrencyPolicy')));
  else if (!['Allow', 'Forbid', 'Replace'].includes(cp as string)) {
    errs.push(notSupported(p.child('concurrencyPolicy'), cp, ['Allow', 'Forbid', 'Replace']));
  }
  errs.push(...validateNonnegative(spec.startingDeadlineSeconds, p.child('startingDeadlineSeconds')));
  errs.push(...validateNonnegative(spec.successfulJobsHistoryLimit, p.child('successfulJobsHistoryLimit')));
  errs.push(...validateNonnegative(spec.failedJobsHistoryLimit, p.child('failedJobsHistoryLimit')));
  const jt = p.child('jobTemplate');
  const tpl = rec(spec.jobTemplate, jt, errs) ?? {};
  validateJobSpec(rec(tpl.spec, jt.child('spec'), errs) ?? {}, jt.child('spec'), errs);
  return errs;
}

const STS_UPDATABLE = ['replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy', 'minReadySeconds'];

/**
 * Update-only spec rules of the workload kinds (metadata immutability is checked by the caller):
 * apps/v1 selectors are immutable; a StatefulSet spec may change only in a few fields.
 */
export function validateWorkloadSpecUpdate(kind: string, obj: Rec, old: Rec): FieldError[] {
  const spec = specOf(obj);
  const oldSpec = specOf(old);
  switch (kind) {
    case 'Deployment':
    case 'ReplicaSet':
    case 'DaemonSet':
    case 'Job':
      return jsonEqual(spec.selector ?? null, oldSpec.selector ?? null)
        ? []
        : [invalid(path('spec', 'selector'), spec.selector ?? null, FIELD_IMMUTABLE)];
    case 'StatefulSet': {
      const a: Rec = { ...spec };
      const b: Rec = { ...oldSpec };
      for (const f of STS_UPDATABLE) {
        delete a[f];
        delete b[f];
      }
      return jsonEqual(a, b)
        ? []
        : [
            forbidden(
              path('spec'),
              "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ),
          ];
    }
    default:
      return [];
  }
}
