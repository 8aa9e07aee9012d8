/**
 * Request bodies decoded within bounds: nothing recursive or expanding runs on a body before
 * it is known to nest at most `MAX_DEPTH` levels and, for YAML, to expand through its aliases
 * to at most the body limit. The checks are linear and iterative, so a hostile body costs one
 * pass over its bytes and never the daemon's stack.
 *
 * Why: 100,000-deep JSON overflowed the stack in the recursive patch/validation code (500);
 * a 1 MB YAML anchor referenced 90 times was stored as a 91 MB object; the `yaml` package's
 * parser is superlinear in depth and in the number of keys (a 3 MiB body held the event loop
 * for seconds), so YAML is read with js-yaml, linear and depth-bounded.
 */
import yaml from 'js-yaml';
import { ApiError } from '../api/errors.js';

/**
 * Nesting limit for request bodies. Upstream's decoders stop at 10,000 (Go's encoding/json
 * scanner, go-yaml's max depth); kubeloop's recursive code (merge and strategic merge patches,
 * managed fields, schema checks) must stay well inside Node's stack at that depth, so the
 * bound is lower. Real objects nest < 50 levels (CRD schemas included).
 */
export const MAX_DEPTH = 1000;

const depthError = (max: number): ApiError =>
  new ApiError('BadRequest', `couldn't get version/kind; json parse error: the body nests deeper than ${max} levels (exceeded max depth ${max})`);

/**
 * Throws a 400 when JSON text nests deeper than `max` objects/arrays: one pass over the
 * characters, string contents skipped; it does not validate (JSON.parse does that next).
 */
export function checkJsonDepth(text: string, max = MAX_DEPTH): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 0x5c) i++; // backslash: skip the escaped character
      else if (ch === 0x22) inString = false;
    } else if (ch === 0x22) {
      inString = true;
    } else if (ch === 0x7b || ch === 0x5b) {
      if (++depth > max) throw depthError(max);
    } else if (ch === 0x7d || ch === 0x5d) {
      depth--;
    }
  }
}

export interface Size {
  /** approximate length of the value as JSON */
  bytes: number;
  /** objects/arrays nested, the value itself included (a scalar is 0) */
  depth: number;
}

const leafBytes = (v: unknown): number => (typeof v === 'string' ? v.length + 2 : typeof v === 'number' || typeof v === 'boolean' ? String(v).length : 4);

interface Frame {
  node: object;
  children: unknown[];
  next: number;
  bytes: number;
  /** deepest child collection */
  sub: number;
}

/**
 * Size and depth of a decoded value as it will be stored (JSON), without recursion. A
 * collection reached twice (a YAML alias) is measured once and counted each time it appears,
 * so the cost is linear in the distinct collections while the size is that of the expansion;
 * a collection that contains itself is refused. Throws a 400 naming the limit as soon as the
 * depth passes `maxDepth`.
 */
export function measure(root: unknown, limits: { maxDepth: number }): Size & { shared: boolean } {
  if (root === null || typeof root !== 'object') return { bytes: leafBytes(root), depth: 0, shared: false };
  const done = new Map<object, Size>();
  const open = new Set<object>();
  const stack: Frame[] = [];
  let shared = false;
  const push = (o: object): void => {
    if (open.has(o)) throw new ApiError('BadRequest', 'the request body refers to itself (a YAML alias inside its own anchor)');
    if (stack.length + 1 > limits.maxDepth) throw depthError(limits.maxDepth);
    open.add(o);
    let bytes = 2;
    let children: unknown[];
    if (Array.isArray(o)) {
      children = o;
      bytes += Math.max(0, o.length - 1);
    } else {
      const keys = Object.keys(o);
      children = keys.map((k) => (o as Record<string, unknown>)[k]);
      for (const k of keys) bytes += k.length + 4;
    }
    stack.push({ node: o, children, next: 0, bytes, sub: 0 });
  };
  const add = (f: Frame, s: Size): void => {
    f.bytes += s.bytes;
    if (s.depth > f.sub) f.sub = s.depth;
  };
  push(root);
  for (;;) {
    const f = stack[stack.length - 1];
    if (f.next < f.children.length) {
      const ch = f.children[f.next++];
      if (ch === null || typeof ch !== 'object') {
        add(f, { bytes: leafBytes(ch), depth: 0 });
        continue;
      }
      const seen = done.get(ch);
      if (!seen) {
        push(ch);
        continue;
      }
      shared = true;
      if (stack.length + seen.depth > limits.maxDepth) throw depthError(limits.maxDepth);
      add(f, seen);
      continue;
    }
    stack.pop();
    open.delete(f.node);
    const size = { bytes: f.bytes, depth: f.sub + 1 };
    done.set(f.node, size);
    const parent = stack[stack.length - 1];
    if (!parent) return { ...size, shared };
    add(parent, size);
  }
}

/** Throws a 400 when a decoded value nests deeper than `max` (e.g. a patch result). */
export function checkDepth(v: unknown, max = MAX_DEPTH): void {
  measure(v, { maxDepth: max });
}

/**
 * YAML text → a plain value (a tree: every alias a copy of its anchor), refused with a 400
 * when it nests deeper than `maxDepth` or expands beyond `maxBytes`. The YAML 1.2 core
 * schema (no timestamps or binary: values stay what JSON would carry); duplicate keys are an
 * error, as before.
 */
export function loadYaml(text: string, limits: { maxDepth: number; maxBytes: number }): unknown {
  let v: unknown;
  let aliased = false;
  try {
    // js-yaml's own limit keeps its recursive descent shallow; it counts the scalar at the
    // bottom, and a flow collection once more, so it is set 2 above ours and measure() below
    // applies ours exactly
    v = yaml.load(text, {
      schema: yaml.CORE_SCHEMA,
      maxDepth: limits.maxDepth + 2,
      // every scalar or collection js-yaml reads closes with its kind set; a node that closes
      // with a value but no kind is an alias (of a scalar too, which measure() cannot tell from
      // a copy), wherever it stands: after ':', ',', '[', '-' or as a key
      listener: (event, state) => {
        if (event === 'close' && !state.kind && state.result !== null && state.result !== undefined) aliased = true;
      },
    } as yaml.LoadOptions);
  } catch (e) {
    if (e instanceof yaml.YAMLException && e.reason.startsWith('nesting exceeded maxDepth')) throw depthError(limits.maxDepth);
    const msg = e instanceof yaml.YAMLException ? e.message : (e as Error).message;
    throw new ApiError('BadRequest', `couldn't get version/kind; json parse error: ${msg}`);
  }
  // js-yaml returns an alias as its anchor's very value: measure() counts it everywhere it
  // appears. Without aliases the value is a tree about its text's size, which the body limit
  // bounded (it may still pass maxBytes as JSON through implicit nulls and quotes: not refused)
  const { shared, bytes } = measure(v, limits);
  if ((aliased || shared) && bytes > limits.maxBytes) {
    throw new ApiError(
      'BadRequest',
      `the request body expands to more than ${limits.maxBytes} bytes through its YAML aliases (an alias counts as a copy of its anchor, and the expansion is held to the request body limit, ${limits.maxBytes} bytes): repeat less, or send the data once`,
    );
  }
  return shared ? JSON.parse(JSON.stringify(v)) : v;
}
