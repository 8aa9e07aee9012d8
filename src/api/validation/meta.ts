/**
 * ObjectMeta, labels, annotations and label selectors, as apimachinery's `ValidateObjectMeta`,
 * `ValidateObjectMetaUpdate`, `ValidateLabels`, `ValidateAnnotations`, `ValidateLabelSelector`.
 * Also the small shape helpers every validator here uses: input is untrusted JSON, so a
 * wrong-typed field becomes a field error instead of an exception.
 */
import { type FieldError, type Path, forbidden, invalid, required, tooLong } from '../field.js';
import { type NameFn, isQualifiedName, isValidLabelValue, nameIsDNSLabel } from '../names.js';

export type Rec = Record<string, unknown>;

export const isRec = (v: unknown): v is Rec => v !== null && typeof v === 'object' && !Array.isArray(v);

/** An optional object field: `undefined` when absent (or wrongly typed, which is reported). */
export function rec(v: unknown, p: Path, errs: FieldError[]): Rec | undefined {
  if (v === undefined || v === null) return undefined;
  if (isRec(v)) return v;
  errs.push(invalid(p, v, 'must be an object'));
  return undefined;
}

/** An optional list field: `[]` when absent (or wrongly typed, which is reported). */
export function list(v: unknown, p: Path, errs: FieldError[]): unknown[] {
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return v;
  errs.push(invalid(p, v, 'must be a list'));
  return [];
}

/** An optional string field: `''` when absent, `null` when wrongly typed (reported; skip further checks). */
export function str(v: unknown, p: Path, errs: FieldError[]): string | null {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  errs.push(invalid(p, v, 'must be a string'));
  return null;
}

/** An optional integer field: `undefined` when absent, `null` when wrongly typed (reported). */
export function int(v: unknown, p: Path, errs: FieldError[]): number | undefined | null {
  if (v === undefined || v === null) return undefined;
  if (Number.isInteger(v)) return v as number;
  errs.push(invalid(p, v, 'must be an integer'));
  return null;
}

/** A string→string map field (labels, annotations, selectors); absent → `undefined`. */
export function strMap(v: unknown, p: Path, errs: FieldError[]): Record<string, string> | undefined {
  const r = rec(v, p, errs);
  if (!r) return undefined;
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(r)) {
    if (typeof x === 'string') out[k] = x;
    else errs.push(invalid(p.key(k), x, 'must be a string'));
  }
  return out;
}

export const IS_NEGATIVE_ERROR = 'must be greater than or equal to 0';
export const FIELD_IMMUTABLE = 'field is immutable';

export function validateNonnegative(v: unknown, p: Path): FieldError[] {
  if (v === undefined || v === null) return [];
  if (!Number.isInteger(v)) return [invalid(p, v, 'must be an integer')];
  return (v as number) < 0 ? [invalid(p, v, IS_NEGATIVE_ERROR)] : [];
}

/** Deep equality over JSON values (key order ignored). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => jsonEqual(x, b[i]));
  }
  if (isRec(a) && isRec(b)) {
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    if (ka.length !== kb.length) return false;
    return ka.every((k) => jsonEqual(a[k], b[k]));
  }
  return false;
}

export function validateImmutable(newVal: unknown, oldVal: unknown, p: Path): FieldError[] {
  return jsonEqual(newVal, oldVal) ? [] : [invalid(p, newVal ?? null, FIELD_IMMUTABLE)];
}

/** Label map: keys are qualified names, values label values; both reported at the map's path. */
export function validateLabels(v: unknown, p: Path): FieldError[] {
  const errs: FieldError[] = [];
  const m = strMap(v, p, errs);
  for (const [k, val] of Object.entries(m ?? {})) {
    for (const msg of isQualifiedName(k)) errs.push(invalid(p, k, msg));
    for (const msg of isValidLabelValue(val)) errs.push(invalid(p, val, msg));
  }
  return errs;
}

export const TOTAL_ANNOTATION_SIZE_LIMIT_B = 256 * 1024;

export function validateAnnotations(v: unknown, p: Path): FieldError[] {
  const errs: FieldError[] = [];
  const m = strMap(v, p, errs);
  let total = 0;
  for (const [k, val] of Object.entries(m ?? {})) {
    // the rule is "qualified name" except that case does not matter
    for (const msg of isQualifiedName(k.toLowerCase())) errs.push(invalid(p, k, msg));
    total += Buffer.byteLength(k) + Buffer.byteLength(val);
  }
  if (total > TOTAL_ANNOTATION_SIZE_LIMIT_B) errs.push(tooLong(p, TOTAL_ANNOTATION_SIZE_LIMIT_B));
  return errs;
}

const SELECTOR_OPS = new Set(['In', 'NotIn', 'Exists', 'DoesNotExist']);

/** metav1.LabelSelector (`matchLabels` + `matchExpressions`). */
export function validateLabelSelector(v: unknown, p: Path): FieldError[] {
  const errs: FieldError[] = [];
  const sel = rec(v, p, errs);
  if (!sel) return errs;
  errs.push(...validateLabels(sel.matchLabels, p.child('matchLabels')));
  const exprsPath = p.child('matchExpressions');
  list(sel.matchExpressions, exprsPath, errs).forEach((e, i) => {
    const ep = exprsPath.index(i);
    const expr = rec(e, ep, errs);
    if (!expr) return;
    const values = list(expr.values, ep.child('values'), errs);
    switch (expr.operator) {
      case 'In':
      case 'NotIn':
        if (values.length === 0) {
          errs.push(required(ep.child('values'), "must be specified when `operator` is 'In' or 'NotIn'"));
        }
        break;
      case 'Exists':
      case 'DoesNotExist':
        if (values.length > 0) {
          errs.push(forbidden(ep.child('values'), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"));
        }
        break;
      default:
        errs.push(invalid(ep.child('operator'), expr.operator ?? '', 'not a valid selector operator'));
    }
    const key = str(expr.key, ep.child('key'), errs);
    if (key !== null) for (const msg of isQualifiedName(key)) errs.push(invalid(ep.child('key'), key, msg));
    values.forEach((val, j) => {
      const s = str(val, ep.child('values').index(j), errs);
      if (s !== null) for (const msg of isValidLabelValue(s)) errs.push(invalid(ep.child('values').index(j), s, msg));
    });
  });
  return errs;
}

/** Would `metav1.LabelSelectorAsSelector` accept this selector? (It rejects what validation rejects.) */
export function labelSelectorParses(v: unknown): boolean {
  if (v === undefined || v === null) return true;
  if (!isRec(v)) return false;
  const ml = v.matchLabels;
  if (ml !== undefined && ml !== null) {
    if (!isRec(ml)) return false;
    for (const [k, x] of Object.entries(ml)) {
      if (typeof x !== 'string' || isQualifiedName(k).length || isValidLabelValue(x).length) return false;
    }
  }
  const me = v.matchExpressions;
  if (me !== undefined && me !== null) {
    if (!Array.isArray(me)) return false;
    for (const e of me) {
      if (!isRec(e) || typeof e.key !== 'string' || !SELECTOR_OPS.has(e.operator as string)) return false;
      if (isQualifiedName(e.key).length) return false;
      const vals = e.values ?? [];
      if (!Array.isArray(vals) || vals.some((x) => typeof x !== 'string' || isValidLabelValue(x).length)) return false;
      if ((e.operator === 'In' || e.operator === 'NotIn') && vals.length === 0) return false;
      if ((e.operator === 'Exists' || e.operator === 'DoesNotExist') && vals.length > 0) return false;
    }
  }
  return true;
}

/** Finalizers without a `/` must be one of the standard ones (`validateKubeFinalizerName`). */
const STANDARD_FINALIZERS = new Set(['kubernetes', 'orphan', 'foregroundDeletion']);

function validateFinalizers(v: unknown, p: Path): FieldError[] {
  const errs: FieldError[] = [];
  const names: string[] = [];
  list(v, p, errs).forEach((f, i) => {
    const s = str(f, p.index(i), errs);
    if (s === null) return;
    names.push(s);
    for (const msg of isQualifiedName(s)) errs.push(invalid(p.index(i), s, msg));
    if (!s.includes('/') && !STANDARD_FINALIZERS.has(s)) {
      errs.push(invalid(p.index(i), s, 'name is neither a standard finalizer name nor is it fully qualified'));
    }
  });
  if (names.includes('orphan') && names.includes('foregroundDeletion')) {
    errs.push(invalid(p, names, 'finalizer orphan and foregroundDeletion cannot be both set'));
  }
  return errs;
}

export interface MetaRules {
  namespaced: boolean;
  nameFn: NameFn;
}

/**
 * `ValidateObjectMeta`. Unlike upstream (which runs after name generation), a missing name is
 * accepted when `generateName` is set, so callers may validate before generating the name.
 */
export function validateObjectMeta(v: unknown, rules: MetaRules, p: Path): FieldError[] {
  const errs: FieldError[] = [];
  const meta = rec(v, p, errs) ?? {};
  const generateName = str(meta.generateName, p.child('generateName'), errs);
  if (generateName) {
    for (const msg of rules.nameFn(generateName, true)) errs.push(invalid(p.child('generateName'), generateName, msg));
  }
  const name = str(meta.name, p.child('name'), errs);
  if (name === '') {
    if (!generateName) errs.push(required(p.child('name'), 'name or generateName is required'));
  } else if (name !== null) {
    for (const msg of rules.nameFn(name, false)) errs.push(invalid(p.child('name'), name, msg));
  }
  const ns = str(meta.namespace, p.child('namespace'), errs);
  if (rules.namespaced) {
    if (ns === '') errs.push(required(p.child('namespace')));
    else if (ns !== null) for (const msg of nameIsDNSLabel(ns, false)) errs.push(invalid(p.child('namespace'), ns, msg));
  } else if (ns) {
    errs.push(forbidden(p.child('namespace'), 'not allowed on this type'));
  }
  errs.push(...validateNonnegative(meta.generation, p.child('generation')));
  errs.push(...validateLabels(meta.labels, p.child('labels')));
  errs.push(...validateAnnotations(meta.annotations, p.child('annotations')));
  errs.push(...validateFinalizers(meta.finalizers, p.child('finalizers')));
  return errs;
}

/**
 * The immutability part of `ValidateObjectMetaUpdate`: name, namespace, and uid when the new
 * object carries one (the store copies server-set fields such as uid/creationTimestamp itself).
 */
export function validateObjectMetaUpdate(newV: unknown, oldV: unknown, p: Path): FieldError[] {
  const n = isRec(newV) ? newV : {};
  const o = isRec(oldV) ? oldV : {};
  const errs: FieldError[] = [];
  if (Number.isInteger(n.generation) && Number.isInteger(o.generation) && (n.generation as number) < (o.generation as number)) {
    errs.push(invalid(p.child('generation'), n.generation, 'must not be decremented'));
  }
  errs.push(...validateImmutable(n.name ?? '', o.name ?? '', p.child('name')));
  errs.push(...validateImmutable(n.namespace ?? '', o.namespace ?? '', p.child('namespace')));
  if (n.uid) errs.push(...validateImmutable(n.uid, o.uid ?? '', p.child('uid')));
  return errs;
}
