/**
 * RFC 6902 JSON patch (`application/json-patch+json`, sent by `kubectl rollout undo` and
 * `kubectl patch --type=json`). Errors are BadRequest with upstream's wording where it matters.
 */
import { badRequest } from '../../api/errors.js';

export interface JsonPatchOp {
  op: string;
  path: string;
  value?: unknown;
  from?: string;
}

type Container = Record<string, unknown> | unknown[];

function pointer(p: string): string[] {
  if (p === '') return [];
  if (!p.startsWith('/')) throw badRequest(`the server rejected our request due to an error in our request: invalid JSON pointer "${p}"`);
  return p
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function parentOf(doc: unknown, tokens: string[], op: string, path: string): [Container, string] {
  let cur: unknown = doc;
  for (const t of tokens.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[Number(t)];
    else if (isObj(cur)) cur = cur[t];
    else cur = undefined;
    if (cur === undefined) throw badRequest(`${op} operation does not apply: doc is missing path: "${path}": missing value`);
  }
  if (!Array.isArray(cur) && !isObj(cur)) throw badRequest(`${op} operation does not apply: doc is missing path: "${path}": missing value`);
  return [cur, tokens[tokens.length - 1]];
}

function index(arr: unknown[], t: string, op: string, path: string, forInsert: boolean): number {
  if (forInsert && t === '-') return arr.length;
  const i = Number(t);
  if (!/^\d+$/.test(t) || i > arr.length || (!forInsert && i >= arr.length)) {
    throw badRequest(`${op} operation does not apply: doc is missing path: "${path}": missing value`);
  }
  return i;
}

function get(doc: unknown, path: string, op: string): unknown {
  let cur = doc;
  for (const t of pointer(path)) {
    if (Array.isArray(cur)) cur = cur[Number(t)];
    else if (isObj(cur)) cur = cur[t];
    else cur = undefined;
    if (cur === undefined) throw badRequest(`${op} operation does not apply: doc is missing path: "${path}": missing value`);
  }
  return cur;
}

function remove(doc: unknown, path: string, op: string): unknown {
  const tokens = pointer(path);
  const [parent, last] = parentOf(doc, tokens, op, path);
  if (Array.isArray(parent)) return parent.splice(index(parent, last, op, path, false), 1)[0];
  if (!(last in parent)) throw badRequest(`${op} operation does not apply: doc is missing path: "${path}": missing value`);
  const v = parent[last];
  delete parent[last];
  return v;
}

function add(doc: unknown, path: string, value: unknown, op: string, replace: boolean): unknown {
  const tokens = pointer(path);
  if (tokens.length === 0) return structuredClone(value);
  const [parent, last] = parentOf(doc, tokens, op, path);
  if (Array.isArray(parent)) {
    const i = index(parent, last, op, path, !replace);
    if (replace) parent[i] = structuredClone(value);
    else parent.splice(i, 0, structuredClone(value));
  } else {
    if (replace && !(last in parent)) throw badRequest(`${op} operation does not apply: doc is missing key: ${path}: missing value`);
    parent[last] = structuredClone(value);
  }
  return doc;
}

/** Applies the operations to a copy of `doc`. */
export function applyJsonPatch(doc: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw badRequest('the server rejected our request due to an error in our request: a JSON patch is a list of operations');
  let out = structuredClone(doc);
  for (const raw of ops as JsonPatchOp[]) {
    if (!isObj(raw) || typeof raw.op !== 'string' || typeof raw.path !== 'string') {
      throw badRequest('the server rejected our request due to an error in our request: every JSON patch operation needs "op" and "path"');
    }
    switch (raw.op) {
      case 'add':
        out = add(out, raw.path, raw.value, 'add', false);
        break;
      case 'replace':
        out = add(out, raw.path, raw.value, 'replace', true);
        break;
      case 'remove':
        remove(out, raw.path, 'remove');
        break;
      case 'move': {
        const v = remove(out, raw.from ?? '', 'move');
        out = add(out, raw.path, v, 'move', false);
        break;
      }
      case 'copy':
        out = add(out, raw.path, get(out, raw.from ?? '', 'copy'), 'copy', false);
        break;
      case 'test': {
        const v = get(out, raw.path, 'test');
        if (JSON.stringify(v) !== JSON.stringify(raw.value)) throw badRequest(`testing value ${raw.path} failed: test failed`);
        break;
      }
      default:
        throw badRequest(`Unexpected kind: ${raw.op}`);
    }
  }
  return out;
}
