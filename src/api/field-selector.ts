/**
 * Field selectors (`?fieldSelector=`) as apimachinery's `fields.ParseSelector` and the
 * apiserver's per-kind field label conversion: terms split on unescaped commas, each
 * `field!=value`, `field==value` or `field=value` (first operator wins, no trimming: the field is
 * everything before it), values unescaped (`\\`, `\,`, `\=`), and only the fields the kind
 * supports upstream. An unknown field is an error, never a term that quietly matches everything
 * (which would let a typo in `DELETE ...?fieldSelector=` delete a whole collection).
 */
import { badRequest } from './errors.js';

export interface FieldRequirement {
  field: string;
  op: '=' | '!=';
  value: string;
}

/** Fields every kind supports (`DefaultMetaV1FieldSelectorConversion`). */
const META = ['metadata.name', 'metadata.namespace'] as const;

/**
 * Kinds with their own field label conversion upstream (pkg/apis/core/v1/conversion.go,
 * apps/v1, batch/v1). Their unknown fields are `field label not supported: <f>`; other kinds
 * answer with the default conversion's message.
 */
const SELECTABLE: Readonly<Record<string, readonly string[]>> = Object.freeze({
  Pod: [
    ...META,
    'spec.nodeName',
    'spec.restartPolicy',
    'spec.schedulerName',
    'spec.serviceAccountName',
    'spec.hostNetwork',
    'status.phase',
    'status.podIP',
    'status.podIPs',
    'status.nominatedNodeName',
  ],
  Node: ['metadata.name', 'spec.unschedulable'],
  ReplicationController: [...META, 'status.replicas'],
  ReplicaSet: [...META, 'status.replicas'],
  Job: [...META, 'status.successful'],
  Namespace: ['metadata.name', 'status.phase'],
  Secret: [...META, 'type'],
  Service: [...META, 'spec.clusterIP', 'spec.type'],
  Event: [
    ...META,
    'involvedObject.kind',
    'involvedObject.namespace',
    'involvedObject.name',
    'involvedObject.uid',
    'involvedObject.apiVersion',
    'involvedObject.resourceVersion',
    'involvedObject.fieldPath',
    'reason',
    'reportingComponent',
    'source',
    'type',
  ],
});

/** Values the Go field sets render from zero values (`strconv.FormatBool`, `strconv.Itoa`). */
const ZERO: Readonly<Record<string, string>> = Object.freeze({
  'spec.hostNetwork': 'false',
  'spec.unschedulable': 'false',
  'status.replicas': '0',
  'status.successful': '0',
});

/** Terms split on commas not preceded by a backslash escape (the escape stays in the term). */
function splitTerms(s: string): string[] {
  const out: string[] = [];
  let start = 0;
  let escaped = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (escaped) escaped = false;
    else if (c === '\\') escaped = true;
    else if (c === ',') {
      out.push(s.slice(start, i));
      start = i + 1;
    }
  }
  out.push(s.slice(start));
  return out;
}

const OPS = ['!=', '==', '='] as const;

function splitTerm(term: string): { field: string; op: (typeof OPS)[number]; rhs: string } | undefined {
  for (let i = 0; i < term.length; i++) {
    for (const op of OPS) if (term.startsWith(op, i)) return { field: term.slice(0, i), op, rhs: term.slice(i + op.length) };
  }
  return undefined;
}

/** `fields.EscapeValue`: a value that may hold `\`, `,` or `=` made safe to put in a term. */
export const escapeFieldValue = (v: string): string => v.replace(/[\\,=]/g, (c) => `\\${c}`);

/** `fields.UnescapeValue`. */
function unescape(s: string): string {
  if (!/[\\,=]/.test(s)) return s;
  let out = '';
  let escaped = false;
  for (const c of s) {
    if (escaped) {
      if (c !== '\\' && c !== ',' && c !== '=') throw badRequest(`invalid field selector: invalid escape sequence: \\${c}`);
      out += c;
      escaped = false;
    } else if (c === '\\') {
      escaped = true;
    } else if (c === ',' || c === '=') {
      throw badRequest(`invalid field selector: unescaped character in value: ${c}`);
    } else {
      out += c;
    }
  }
  if (escaped) throw badRequest('invalid field selector: invalid escape sequence: \\');
  return out;
}

function checkField(kind: string, field: string): void {
  const own = SELECTABLE[kind];
  if (own) {
    if (!own.includes(field)) throw badRequest(`field label not supported: ${field}`);
  } else if (!(META as readonly string[]).includes(field)) {
    throw badRequest(`"${field}" is not a known field selector: only "metadata.name", "metadata.namespace"`);
  }
}

/**
 * Parses a field selector; with `kind`, also rejects fields that kind cannot select on (the
 * API always passes it; internal callers selecting on their own fields may leave it out).
 */
export function parseFields(s: string | undefined, kind?: string): FieldRequirement[] {
  if (!s) return [];
  const terms = splitTerms(s).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const out: FieldRequirement[] = [];
  for (const term of terms) {
    if (term === '') continue;
    const t = splitTerm(term);
    if (!t) throw badRequest(`invalid selector: '${s}'; can't understand '${term}'`);
    const value = unescape(t.rhs);
    if (kind !== undefined) checkField(kind, t.field);
    out.push({ field: t.field, op: t.op === '!=' ? '!=' : '=', value });
  }
  return out;
}

/** The selectable value of `field` on an object: its scalar at that dotted path, rendered as upstream. */
export function fieldValue(obj: unknown, field: string): string {
  // an Event's `source` selects on its component (upstream's event field set)
  if (field === 'source') return fieldValue(obj, 'source.component');
  if (field === 'status.podIPs') {
    // the primary pod IP (pods here are single-stack, so it is the only one)
    const ips = (obj as { status?: { podIPs?: { ip?: string }[] } } | null)?.status?.podIPs;
    return Array.isArray(ips) && typeof ips[0]?.ip === 'string' ? ips[0].ip : '';
  }
  let cur: unknown = obj;
  for (const p of field.split('.')) {
    if (cur === null || typeof cur !== 'object') {
      cur = undefined;
      break;
    }
    cur = (cur as Record<string, unknown>)[p];
  }
  if (cur === undefined || cur === null) return ZERO[field] ?? '';
  return typeof cur === 'object' ? '' : String(cur);
}

export function fieldsMatch(reqs: readonly FieldRequirement[], obj: unknown): boolean {
  for (const r of reqs) {
    const v = fieldValue(obj, r.field);
    if (r.op === '=' ? v !== r.value : v === r.value) return false;
  }
  return true;
}
