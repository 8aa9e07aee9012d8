/**
 * Strategic merge patch (`application/strategic-merge-patch+json`), what kubectl's client-side
 * apply, `edit`, `set` and `patch` send for built-in kinds.
 *
 * Like a JSON merge patch, except per the Go types' markers (schema.ts): lists with a merge key
 * merge element by element (containers by `name`, ports by `containerPort`/`port`, ...), lists
 * of scalars with the merge strategy are unions, and the directives
 * `$patch: replace|delete|merge`, `$retainKeys`, `$setElementOrder/<list>` and
 * `$deleteFromPrimitiveList/<list>` apply. Lists without a strategy are replaced.
 */
import { badRequest } from '../../api/errors.js';
import { type ListMeta, type Schemas, type TypeRef, listMeta } from '../schema.js';

type Rec = Record<string, unknown>;
const isObj = (v: unknown): v is Rec => v !== null && typeof v === 'object' && !Array.isArray(v);

const SET_ORDER = '$setElementOrder/';
const DELETE_PRIMITIVE = '$deleteFromPrimitiveList/';

export class StrategicMerge {
  readonly #schemas: Schemas;

  constructor(schemas: Schemas) {
    this.#schemas = schemas;
  }

  /** The patched copy of `original`, an object of model class `cls` (undefined: no type knowledge). */
  apply(original: unknown, patch: unknown, cls: string | undefined): unknown {
    if (!isObj(patch)) throw badRequest('the strategic merge patch must be a JSON object');
    const out = this.#mergeObj(isObj(original) ? structuredClone(original) : {}, patch, cls ? { k: 'object', name: cls } : undefined);
    return out ?? {};
  }

  #fieldType(t: TypeRef | undefined, k: string): TypeRef | undefined {
    if (!t) return undefined;
    if (t.k === 'object') return this.#schemas.field(t.name, k);
    if (t.k === 'map') return t.of;
    return undefined;
  }

  /** Merges `patch` into `orig` (mutated); undefined when the map is to be deleted. */
  #mergeObj(orig: Rec, patch: Rec, t: TypeRef | undefined): Rec | undefined {
    const directive = patch.$patch;
    if (directive === 'delete') return undefined;
    if (directive === 'replace') {
      const { $patch: _p, ...rest } = patch;
      return this.#mergeObj({}, rest, t);
    }
    if (directive !== undefined && directive !== 'merge') throw badRequest(`Unknown patch type: ${String(directive)} in map: ${JSON.stringify(patch)}`);
    const retain = patch.$retainKeys;
    if (retain !== undefined) {
      if (!Array.isArray(retain)) throw badRequest('$retainKeys must be a list of strings');
      for (const k of Object.keys(orig)) if (!retain.includes(k)) delete orig[k];
    }
    const orders = new Map<string, unknown[]>();
    for (const [k, v] of Object.entries(patch)) {
      if (k.startsWith(DELETE_PRIMITIVE)) {
        const field = k.slice(DELETE_PRIMITIVE.length);
        if (Array.isArray(orig[field]) && Array.isArray(v)) {
          orig[field] = (orig[field] as unknown[]).filter((x) => !v.some((d) => JSON.stringify(d) === JSON.stringify(x)));
        }
      } else if (k.startsWith(SET_ORDER)) {
        if (Array.isArray(v)) orders.set(k.slice(SET_ORDER.length), v);
      }
    }
    for (const [k, v] of Object.entries(patch)) {
      if (k.startsWith('$')) continue;
      if (v === null) {
        delete orig[k];
        continue;
      }
      const ft = this.#fieldType(t, k);
      if (isObj(v)) {
        const sub = isObj(orig[k]) ? (orig[k] as Rec) : {};
        const objType = ft && (ft.k === 'object' || ft.k === 'map') ? ft : undefined;
        const merged = this.#mergeObj(isObj(orig[k]) ? sub : {}, v, objType);
        if (merged === undefined) delete orig[k];
        else orig[k] = merged;
      } else if (Array.isArray(v)) {
        const lm = t?.k === 'object' ? listMeta(t.name, k) : ({ listType: 'atomic' } as ListMeta);
        const itemType = ft?.k === 'array' ? ft.of : undefined;
        orig[k] = this.#mergeList(Array.isArray(orig[k]) ? (orig[k] as unknown[]) : [], v, lm, itemType);
      } else {
        orig[k] = v;
      }
    }
    for (const [field, order] of orders) {
      if (!Array.isArray(orig[field])) continue;
      const lm = t?.k === 'object' ? listMeta(t.name, field) : undefined;
      orig[field] = reorder(orig[field] as unknown[], order, lm?.mergeKey);
    }
    return orig;
  }

  #clean(v: unknown, t: TypeRef | undefined): unknown {
    if (isObj(v)) return this.#mergeObj({}, v, t && (t.k === 'object' || t.k === 'map') ? t : undefined) ?? {};
    if (Array.isArray(v)) return v.filter((x) => !(isObj(x) && x.$patch !== undefined && Object.keys(x).length === 1)).map((x) => this.#clean(x, t?.k === 'array' ? t.of : t));
    return v;
  }

  #mergeList(orig: unknown[], patch: unknown[], lm: ListMeta, itemType: TypeRef | undefined): unknown[] {
    const replaceAll = patch.some((p) => isObj(p) && p.$patch === 'replace' && Object.keys(p).length === 1);
    if (lm.strategy !== 'merge' || replaceAll) {
      return patch.filter((p) => !(isObj(p) && p.$patch === 'replace' && Object.keys(p).length === 1)).map((p) => this.#clean(p, itemType));
    }
    const out = orig.map((x) => structuredClone(x));
    if (!lm.mergeKey) {
      // a set of scalars: union, in order
      for (const p of patch) {
        if (isObj(p) && p.$patch === 'delete') continue;
        if (!out.some((x) => JSON.stringify(x) === JSON.stringify(p))) out.push(p);
      }
      return out;
    }
    const key = lm.mergeKey;
    for (const p of patch) {
      if (!isObj(p)) continue;
      if (!(key in p)) throw badRequest(`map: ${JSON.stringify(p)} does not contain declared merge key: ${key}`);
      const idx = out.findIndex((x) => isObj(x) && sameKey(x[key], p[key]));
      if (p.$patch === 'delete') {
        if (idx >= 0) {
          for (let i = out.length - 1; i >= 0; i--) if (isObj(out[i]) && sameKey((out[i] as Rec)[key], p[key])) out.splice(i, 1);
        }
        continue;
      }
      if (idx >= 0) {
        const merged = this.#mergeObj(out[idx] as Rec, p, itemType);
        if (merged === undefined) out.splice(idx, 1);
        else out[idx] = merged;
      } else {
        out.push(this.#clean(p, itemType));
      }
    }
    return out;
  }
}

const sameKey = (a: unknown, b: unknown): boolean => a === b || (a !== undefined && b !== undefined && String(a) === String(b));

/** Orders `list` as `order` says (by merge key, or by value for scalars); the rest keep their order after. */
function reorder(list: unknown[], order: unknown[], key: string | undefined): unknown[] {
  const id = (x: unknown): string => JSON.stringify(key && isObj(x) ? x[key] : x);
  const pos = new Map(order.map((o, i) => [id(o), i]));
  const inOrder = list.filter((x) => pos.has(id(x))).sort((a, b) => pos.get(id(a))! - pos.get(id(b))!);
  const rest = list.filter((x) => !pos.has(id(x)));
  return [...inOrder, ...rest];
}
