/**
 * RFC 6902 JSON patch (`application/json-patch+json`, sent by `kubectl rollout undo` and
 * `kubectl patch --type=json`). Errors are BadRequest with upstream's wording where it matters.
 *
 * Bounded as the kube-apiserver bounds it: at most 10,000 operations, and the bytes all `copy`
 * operations add together at most `JSON_PATCH_MAX_COPY_BYTES` (json-patch's
 * AccumulatedCopySizeLimit), checked on a non-recursive measure of the value BEFORE it is
 * cloned; a `move` re-links its value instead of cloning it. Without these, 17 copies of a 1 KB
 * object into its own child (a 2.5 KB body) grew the daemon by 230 MB.
 */
import { ApiError, badRequest } from '../../api/errors.js';
import { MAX_DEPTH, measure } from '../body-limits.js';

/** The apiserver's JSONPatchMaxCopyBytes (generic apiserver config: 3 MiB, its body limit too). */
export const JSON_PATCH_MAX_COPY_BYTES = 3 * 1024 * 1024;
/** handlers/patch.go maxJSONPatchOperations */
export const MAX_JSON_PATCH_OPERATIONS = 10_000;

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

/** Puts `value` itself (callers clone what must not be shared) at `path`. */
function add(doc: unknown, path: string, value: unknown, op: string, replace: boolean): unknown {
  const tokens = pointer(path);
  if (tokens.length === 0) return value;
  const [parent, last] = parentOf(doc, tokens, op, path);
  if (Array.isArray(parent)) {
    const i = index(parent, last, op, path, !replace);
    if (replace) parent[i] = value;
    else parent.splice(i, 0, value);
  } else {
    if (replace && !(last in parent)) throw badRequest(`${op} operation does not apply: doc is missing key: ${path}: missing value`);
    parent[last] = value;
  }
  return doc;
}

/**
 * json-patch's AccumulatedCopySizeError, which the apiserver answers as a patch that does not
 * apply: 422 (NewGenericServerResponse(StatusUnprocessableEntity, ...)).
 */
const copyTooLarge = (accumulated: number, limit: number): ApiError =>
  new ApiError(
    'Invalid',
    `the server rejected our request due to an error in our request: Unable to complete the copy, the accumulated size increase of copy is ${accumulated}, exceeding the limit ${limit}: copy less, or send the values themselves`,
  );

/** Applies the operations to a copy of `doc`; `maxCopyBytes` bounds what all `copy` operations add together. */
export function applyJsonPatch(doc: unknown, ops: unknown, maxCopyBytes = JSON_PATCH_MAX_COPY_BYTES): unknown {
  if (!Array.isArray(ops)) throw badRequest('the server rejected our request due to an error in our request: a JSON patch is a list of operations');
  if (ops.length > MAX_JSON_PATCH_OPERATIONS) {
    throw new ApiError('RequestEntityTooLarge', `The allowed maximum operations in a JSON patch is ${MAX_JSON_PATCH_OPERATIONS}, got ${ops.length}`);
  }
  let out = structuredClone(doc);
  let copied = 0;
  for (const raw of ops as JsonPatchOp[]) {
    if (!isObj(raw) || typeof raw.op !== 'string' || typeof raw.path !== 'string') {
      throw badRequest('the server rejected our request due to an error in our request: every JSON patch operation needs "op" and "path"');
    }
    switch (raw.op) {
      // the values come from the body: their clones together are at most its size
      case 'add':
        out = add(out, raw.path, structuredClone(raw.value), 'add', false);
        break;
      case 'replace':
        out = add(out, raw.path, structuredClone(raw.value), 'replace', true);
        break;
      case 'remove':
        remove(out, raw.path, 'remove');
        break;
      case 'move': {
        const v = remove(out, raw.from ?? '', 'move');
        out = add(out, raw.path, v, 'move', false);
        break;
      }
      case 'copy': {
        const v = get(out, raw.from ?? '', 'copy');
        // measured (iteratively, depth-bounded) before anything is cloned
        copied += measure(v, { maxDepth: MAX_DEPTH }).bytes;
        if (copied > maxCopyBytes) throw copyTooLarge(copied, maxCopyBytes);
        out = add(out, raw.path, structuredClone(v), 'copy', false);
        break;
      }
      case 'test': {
        const v = get(out, raw.path, 'test');
        // JSON.stringify recurses: the compared value must nest within the limit first
        measure(v, { maxDepth: MAX_DEPTH });
        if (JSON.stringify(v) !== JSON.stringify(raw.value)) throw badRequest(`testing value ${raw.path} failed: test failed`);
        break;
      }
      default:
        throw badRequest(`Unexpected kind: ${raw.op}`);
    }
  }
  return out;
}
