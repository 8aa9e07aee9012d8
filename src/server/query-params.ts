/**
 * Typed query parameters. Upstream decodes them into Go structs (ListOptions, DeleteOptions), so a
 * non-integer `limit`, `timeoutSeconds` or `gracePeriodSeconds` is a 400 there; here it would
 * otherwise become NaN (a watch with no timeout, a delete with no grace period).
 */
import { badRequest } from '../api/errors.js';
import { parseGoBool } from '../util/parse-bool.js';

/** The integer value of `name`, `undefined` when absent or empty; a BadRequest naming it otherwise. */
export function intParam(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null || v === '') return undefined;
  if (!/^[+-]?[0-9]+$/.test(v) || !Number.isSafeInteger(Number(v))) {
    throw badRequest(`invalid value ${JSON.stringify(v)} for query parameter ${name}: must be an integer`);
  }
  return Number(v);
}

/**
 * The boolean value of `name` as upstream parses it (Go's `strconv.ParseBool`: `1 t T TRUE true
 * True` and `0 f F FALSE false False`), `undefined` when absent or empty; any other spelling is a
 * BadRequest naming the parameter. The Python client sends `watch=True`.
 */
export function boolParam(q: URLSearchParams, name: string): boolean | undefined {
  const v = q.get(name);
  if (v === null || v === '') return undefined;
  const b = parseGoBool(v);
  if (b === undefined) {
    throw badRequest(`invalid value ${JSON.stringify(v)} for query parameter ${name}: must be a boolean (true, false, 1, 0, t, f, True, False, TRUE, FALSE)`);
  }
  return b;
}
