import type { LabelSelector } from 'kubernetes-types/meta/v1.js';
import { badRequest } from './errors.js';

export type Labels = Readonly<Record<string, string>> | undefined;

export type Requirement =
  | { key: string; op: 'in' | 'notin'; values: readonly string[] }
  | { key: string; op: 'exists' | '!exists' };

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
    }
  }
  return true;
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
      }
    })
    .join(',');
}

/**
 * Parses the label selector string syntax of the API (`?labelSelector=`):
 * `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, comma-separated.
 */
export function parse(s: string | undefined): Selector {
  if (!s || !s.trim()) return EVERYTHING;
  const out: Requirement[] = [];
  let i = 0;
  const src = s;
  const ws = () => {
    while (i < src.length && /\s/.test(src[i])) i++;
  };
  const ident = (): string => {
    ws();
    const m = /^[A-Za-z0-9_./-]*/.exec(src.slice(i))![0];
    i += m.length;
    return m;
  };
  const fail = (why: string): never => {
    throw badRequest(`unable to parse requirement: ${why} in label selector "${s}"`);
  };
  while (i < src.length) {
    ws();
    let negate = false;
    if (src[i] === '!') {
      negate = true;
      i++;
    }
    const key = ident();
    if (!key) fail('found no key');
    ws();
    if (negate) {
      out.push({ key, op: '!exists' });
    } else if (i >= src.length || src[i] === ',') {
      out.push({ key, op: 'exists' });
    } else if (src.startsWith('!=', i)) {
      i += 2;
      out.push({ key, op: 'notin', values: [ident()] });
    } else if (src.startsWith('==', i)) {
      i += 2;
      out.push({ key, op: 'in', values: [ident()] });
    } else if (src[i] === '=') {
      i += 1;
      out.push({ key, op: 'in', values: [ident()] });
    } else {
      const word = ident();
      if (word !== 'in' && word !== 'notin') fail(`unexpected "${word || src[i]}"`);
      ws();
      if (src[i] !== '(') fail('expected "("');
      const close = src.indexOf(')', i);
      if (close < 0) fail('expected ")"');
      const values = src
        .slice(i + 1, close)
        .split(',')
        .map((v) => v.trim())
        .filter((v) => v !== '');
      i = close + 1;
      out.push({ key, op: word === 'in' ? 'in' : 'notin', values });
    }
    ws();
    if (i < src.length) {
      if (src[i] !== ',') fail(`unexpected "${src[i]}"`);
      i++;
    }
  }
  return out;
}

/** Field selectors: `a.b=c`, `a.b==c`, `a.b!=c`, comma-separated, over dotted paths of the object. */
export interface FieldRequirement {
  field: string;
  op: '=' | '!=';
  value: string;
}

export function parseFields(s: string | undefined): FieldRequirement[] {
  if (!s || !s.trim()) return [];
  return s.split(',').map((part) => {
    const m = /^\s*([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*?)\s*$/.exec(part);
    if (!m) throw badRequest(`invalid field selector: "${part}": expected <field>=<value> or <field>!=<value>`);
    return { field: m[1], op: m[2] === '!=' ? '!=' : '=', value: m[3] };
  });
}

export function fieldValue(obj: unknown, field: string): string {
  let cur: unknown = obj;
  for (const p of field.split('.')) {
    if (cur === null || typeof cur !== 'object') return '';
    cur = (cur as Record<string, unknown>)[p];
  }
  return cur === undefined || cur === null ? '' : String(cur);
}

export function fieldsMatch(reqs: readonly FieldRequirement[], obj: unknown): boolean {
  for (const r of reqs) {
    const v = fieldValue(obj, r.field);
    if (r.op === '=' ? v !== r.value : v === r.value) return false;
  }
  return true;
}
