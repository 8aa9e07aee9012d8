import type { LabelSelector } from 'kubernetes-types/meta/v1.js';
import { badRequest } from './errors.js';
import { parseSelectorString } from './selector-parser.js';

export type Labels = Readonly<Record<string, string>> | undefined;

export type Requirement =
  | { key: string; op: 'in' | 'notin'; values: readonly string[] }
  | { key: string; op: 'exists' | '!exists' }
  /** `key>n`, `key<n`: the label must exist and parse as a 64-bit integer (labels.Parse's Gt/Lt) */
  | { key: string; op: 'gt' | 'lt'; values: readonly [string] };

/** A parsed selector: every requirement must hold. An empty selector matches everything. */
export type Selector = readonly Requirement[];

export const EVERYTHING: Selector = Object.freeze([]);

export function matches(sel: Selector, labels: Labels): boolean {
  for (const r of sel) {
    const has = labels !== undefined && Object.prototype.hasOwnProperty.call(labels, r.key);
    switch (r.op) {
      case 'exists':
        if (!has) return false;
        break;
      case '!exists':
        if (has) return false;
        break;
      case 'in':
        if (!has || !r.values.includes(labels![r.key])) return false;
        break;
      case 'notin':
        if (has && r.values.includes(labels![r.key])) return false;
        break;
      case 'gt':
      case 'lt':
        if (!has || !compares(labels![r.key], r.op, r.values[0])) return false;
        break;
    }
  }
  return true;
}

const INT64 = /^[+-]?[0-9]+$/;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** strconv.ParseInt(s, 10, 64): `undefined` when it would fail (not an integer, out of range). */
function int64(s: string): bigint | undefined {
  if (!INT64.test(s)) return undefined;
  const n = BigInt(s);
  return n < INT64_MIN || n > INT64_MAX ? undefined : n;
}

export const isInt64 = (s: string): boolean => int64(s) !== undefined;

function compares(labelValue: string, op: 'gt' | 'lt', bound: string): boolean {
  const a = int64(labelValue);
  const b = int64(bound);
  if (a === undefined || b === undefined) return false;
  return op === 'gt' ? a > b : a < b;
}

/** A Service/ReplicationController style selector: equality on every key. `undefined` selects nothing. */
export function fromMap(m: Readonly<Record<string, string>>): Selector {
  return Object.entries(m).map(([key, v]) => ({ key, op: 'in' as const, values: [v] }));
}

/** Does a map selector (Service.spec.selector) match? An empty or absent map selects nothing, as for Services. */
export function mapSelects(sel: Readonly<Record<string, string>> | undefined, labels: Labels): boolean {
  if (!sel) return false;
  const keys = Object.keys(sel);
  if (keys.length === 0) return false;
  if (!labels) return false;
  for (const k of keys) if (labels[k] !== sel[k]) return false;
  return true;
}

/** metav1.LabelSelector → Selector. An empty LabelSelector matches everything (as upstream). */
export function fromLabelSelector(ls: LabelSelector | undefined): Selector {
  if (!ls) return EVERYTHING;
  const out: Requirement[] = [];
  for (const [key, v] of Object.entries(ls.matchLabels ?? {})) out.push({ key, op: 'in', values: [v] });
  for (const e of ls.matchExpressions ?? []) {
    switch (e.operator) {
      case 'In':
        out.push({ key: e.key, op: 'in', values: e.values ?? [] });
        break;
      case 'NotIn':
        out.push({ key: e.key, op: 'notin', values: e.values ?? [] });
        break;
      case 'Exists':
        out.push({ key: e.key, op: 'exists' });
        break;
      case 'DoesNotExist':
        out.push({ key: e.key, op: '!exists' });
        break;
      default:
        throw badRequest(`"${e.operator}" is not a valid label selector operator`);
    }
  }
  return out;
}

/** Renders a selector in the string form `kubectl -l` accepts (and `status.selector` shows). */
export function format(sel: Selector): string {
  return sel
    .map((r) => {
      switch (r.op) {
        case 'exists':
          return r.key;
        case '!exists':
          return `!${r.key}`;
        case 'in':
          return r.values.length === 1 ? `${r.key}=${r.values[0]}` : `${r.key} in (${r.values.join(',')})`;
        case 'notin':
          return r.values.length === 1 ? `${r.key}!=${r.values[0]}` : `${r.key} notin (${r.values.join(',')})`;
        case 'gt':
          return `${r.key}>${r.values[0]}`;
        case 'lt':
          return `${r.key}<${r.values[0]}`;
      }
    })
    .join(',');
}

/**
 * Parses the label selector string of the API (`?labelSelector=`, `kubectl -l`) with the grammar
 * and error messages of apimachinery's `labels.Parse`; a bad selector is a BadRequest carrying
 * upstream's text (e.g. `unable to parse requirement: found ')', expected: identifier`).
 */
export function parse(s: string | undefined): Selector {
  if (s === undefined) return EVERYTHING;
  const r = parseSelectorString(s);
  if (typeof r === 'string') throw badRequest(r);
  return r.length === 0 ? EVERYTHING : r;
}

export { type FieldRequirement, escapeFieldValue, fieldValue, fieldsMatch, parseFields } from './field-selector.js';
