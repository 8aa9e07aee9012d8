/**
 * Field ownership (`metadata.managedFields`) and server-side apply, after
 * sigs.k8s.io/structured-merge-diff:
 *
 * - A field set is a set of paths; a path is a list of elements `f:<field>`,
 *   `k:{"name":"web"}` (an item of a list-map, by its keys), `v:<json>` (an item of a set).
 *   On the wire (FieldsV1) it is a trie: `{"f:spec":{"f:ports":{"k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:port":{}}}}}`.
 * - An Update (create, PUT, patch) by manager M gives M the fields whose value it changed and
 *   takes them from everyone else.
 * - An Apply by M sets M's Apply set to exactly the applied configuration's fields; a field it
 *   sets to another value than the live one, owned by another manager, is a conflict (409)
 *   unless `force`; fields M applied before and no longer applies are removed unless someone
 *   else owns them.
 */
import { isDeepStrictEqual } from 'node:util';
import type { KObject } from '../api/types.js';
import { errorWithCauses } from './status.js';
import { type Schemas, type TypeRef, listMeta } from './schema.js';

type Rec = Record<string, unknown>;
const isObj = (v: unknown): v is Rec => v !== null && typeof v === 'object' && !Array.isArray(v);

export interface ManagedFieldsEntry {
  manager?: string;
  operation?: 'Apply' | 'Update';
  apiVersion?: string;
  time?: string;
  fieldsType?: 'FieldsV1';
  fieldsV1?: Rec;
  subresource?: string;
}

type PathEl = string;
type FieldPath = PathEl[];

/** metadata fields the server owns: never part of anyone's field set */
const SERVER_META = new Set(['name', 'namespace', 'uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields', 'selfLink', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generateName']);

const now = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

const keyOfPath = (p: FieldPath): string => JSON.stringify(p);

/**
 * The OpenAPI defaults of list-map key fields: the only key with one is the ports lists'
 * `protocol` (`port`+`protocol`, `containerPort`+`protocol`), default TCP. As
 * structured-merge-diff does, an item that omits a defaulted key is keyed by the default, so an
 * applied `{port: 80}` is the live `{port: 80, protocol: TCP}` and not a second item.
 */
const MAP_KEY_DEFAULTS: Readonly<Record<string, unknown>> = Object.freeze({ protocol: 'TCP' });

/** the value of key field `k` of a list-map item, its default when absent */
const keyValue = (item: Rec, k: string): unknown => item[k] ?? MAP_KEY_DEFAULTS[k];

/** does list-map item `x` have the key values `keys` (a `k:` path element, or another item's keys)? */
const hasKeys = (x: unknown, keys: Rec | readonly string[], other?: Rec): boolean =>
  isObj(x) &&
  (Array.isArray(keys)
    ? (keys as readonly string[]).every((k) => isDeepStrictEqual(keyValue(x, k), keyValue(other!, k)))
    : Object.entries(keys).every(([k, kv]) => isDeepStrictEqual(keyValue(x, k), kv)));

function sortedKeysJson(item: Rec, keys: readonly string[]): string {
  const o: Rec = {};
  for (const k of [...keys].sort()) {
    const v = keyValue(item, k);
    if (v !== undefined) o[k] = v;
  }
  return JSON.stringify(o);
}

export class FieldManager {
  readonly #schemas: Schemas;

  constructor(schemas: Schemas) {
    this.#schemas = schemas;
  }

  /** The paths set in `obj` (a whole object of model class `cls`), without server-owned ones. */
  fieldSet(obj: KObject, cls: string | undefined, subresource?: string): Set<string> {
    const out = new Set<string>();
    const rec = obj as Rec;
    for (const [k, v] of Object.entries(rec)) {
      if (k === 'apiVersion' || k === 'kind' || v === undefined || v === null) continue;
      if ((k === 'status') !== (subresource === 'status')) continue;
      if (k === 'metadata' && isObj(v)) {
        for (const [mk, mv] of Object.entries(v)) {
          if (SERVER_META.has(mk) || mv === undefined || mv === null) continue;
          this.#collect(mv, this.#schemas.field('V1ObjectMeta', mk), ['f:metadata', `f:${mk}`], 'V1ObjectMeta', mk, out);
        }
        continue;
      }
      this.#collect(v, this.#schemas.field(cls, k), [`f:${k}`], cls, k, out);
    }
    return out;
  }

  #collect(v: unknown, t: TypeRef | undefined, path: FieldPath, ownerCls: string | undefined, field: string, out: Set<string>): void {
    if (v === undefined || v === null) return;
    if (Array.isArray(v)) {
      const lm = listMeta(ownerCls, field);
      const itemType = t?.k === 'array' ? t.of : undefined;
      const itemCls = itemType?.k === 'object' ? itemType.name : undefined;
      if (lm.listType === 'map' && lm.mapKeys && v.every(isObj)) {
        for (const item of v as Rec[]) {
          const el = [...path, `k:${sortedKeysJson(item, lm.mapKeys)}`];
          out.add(keyOfPath(el));
          for (const [k, x] of Object.entries(item)) this.#collect(x, this.#schemas.field(itemCls, k), [...el, `f:${k}`], itemCls, k, out);
        }
        return;
      }
      if (lm.listType === 'set') {
        for (const item of v) out.add(keyOfPath([...path, `v:${JSON.stringify(item)}`]));
        return;
      }
      out.add(keyOfPath(path));
      return;
    }
    if (isObj(v)) {
      const entries = Object.entries(v).filter(([, x]) => x !== undefined && x !== null);
      const isStruct = t?.k === 'object';
      const isMap = t?.k === 'map';
      if (entries.length === 0 || (!isStruct && !isMap && t !== undefined)) {
        out.add(keyOfPath(path));
        return;
      }
      const cls = isStruct ? (t as { name: string }).name : undefined;
      for (const [k, x] of entries) {
        const ft = isStruct ? this.#schemas.field(cls, k) : isMap ? (t as { of: TypeRef }).of : undefined;
        this.#collect(x, ft, [...path, `f:${k}`], cls, k, out);
      }
      return;
    }
    out.add(keyOfPath(path));
  }

  /** The value at a path, or undefined. */
  valueAt(obj: unknown, pathKey: string): unknown {
    let cur: unknown = obj;
    for (const el of JSON.parse(pathKey) as FieldPath) {
      if (cur === undefined) return undefined;
      if (el.startsWith('f:')) cur = isObj(cur) ? cur[el.slice(2)] : undefined;
      else if (el.startsWith('k:')) {
        const keys = JSON.parse(el.slice(2)) as Rec;
        cur = Array.isArray(cur) ? cur.find((x) => hasKeys(x, keys)) : undefined;
      } else if (el.startsWith('v:')) {
        const val = JSON.parse(el.slice(2));
        cur = Array.isArray(cur) && cur.some((x) => isDeepStrictEqual(x, val)) ? val : undefined;
      }
    }
    return cur;
  }

  /** Removes the field at a path from `obj` (mutated). */
  removeAt(obj: unknown, pathKey: string): void {
    const path = JSON.parse(pathKey) as FieldPath;
    let cur: unknown = obj;
    for (let i = 0; i < path.length; i++) {
      const el = path[i];
      const last = i === path.length - 1;
      if (el.startsWith('f:')) {
        if (!isObj(cur)) return;
        if (last) delete cur[el.slice(2)];
        else cur = cur[el.slice(2)];
      } else if (el.startsWith('k:') || el.startsWith('v:')) {
        if (!Array.isArray(cur)) return;
        const match = el.startsWith('k:')
          ? (() => {
              const keys = JSON.parse(el.slice(2)) as Rec;
              return (x: unknown) => hasKeys(x, keys);
            })()
          : (x: unknown) => isDeepStrictEqual(x, JSON.parse(el.slice(2)));
        const idx = cur.findIndex(match);
        if (idx < 0) return;
        if (last) cur.splice(idx, 1);
        else cur = cur[idx];
      }
    }
  }

  /**
   * managedFields after an Update by `manager` from `old` (undefined on create) to `next`.
   * When the request itself changed `managedFields`, they are kept as sent (as upstream).
   */
  update(o: { old?: KObject; next: KObject; manager: string; cls?: string; apiVersion: string; subresource?: string }): ManagedFieldsEntry[] | undefined {
    const sent = o.next.metadata?.managedFields as ManagedFieldsEntry[] | undefined;
    const prev = (o.old?.metadata?.managedFields ?? []) as ManagedFieldsEntry[];
    if (o.old && sent !== undefined && !isDeepStrictEqual(sent, prev)) return sent.length ? sent : undefined;
    const sets = decode(prev);
    const before = o.old ? this.fieldSet(o.old, o.cls, o.subresource) : new Set<string>();
    const after = this.fieldSet(o.next, o.cls, o.subresource);
    const changed = new Set<string>();
    for (const p of after) {
      if (!before.has(p) || !isDeepStrictEqual(this.valueAt(o.old, p), this.valueAt(o.next, p))) changed.add(p);
    }
    const id = entryId({ manager: o.manager, operation: 'Update', apiVersion: o.apiVersion, subresource: o.subresource });
    if (changed.size === 0 && o.old) return prev.length ? prev : undefined;
    const mine = sets.get(id)?.fields ?? new Set<string>();
    for (const p of changed) mine.add(p);
    for (const [k, e] of sets) {
      if (k === id) continue;
      for (const p of changed) e.fields.delete(p);
    }
    sets.set(id, { entry: { manager: o.manager, operation: 'Update', apiVersion: o.apiVersion, ...(o.subresource ? { subresource: o.subresource } : {}) }, fields: mine, touched: true });
    return this.#encode(sets, o.next, o.subresource, after);
  }

  /**
   * Server-side apply of `config` by `manager` onto `live` (undefined: create). Returns the
   * object to store, with its managedFields; throws Conflict (409) listing the fields.
   */
  apply(o: { live?: KObject; config: KObject; manager: string; cls?: string; apiVersion: string; force: boolean; subresource?: string }): KObject {
    const prev = (o.live?.metadata?.managedFields ?? []) as ManagedFieldsEntry[];
    const sets = decode(prev);
    const id = entryId({ manager: o.manager, operation: 'Apply', apiVersion: o.apiVersion, subresource: o.subresource });
    const applied = this.fieldSet(o.config, o.cls, o.subresource);

    // conflicts: a field we set to a different value, owned by someone else
    const conflicts = new Map<string, string[]>();
    if (o.live) {
      for (const p of applied) {
        const lv = this.valueAt(o.live, p);
        if (lv === undefined) continue;
        const cv = this.valueAt(o.config, p);
        if (isObj(cv) && isObj(lv) && Object.keys(cv).length > 0) continue;
        if (isDeepStrictEqual(lv, cv)) continue;
        for (const [k, e] of sets) {
          if (k === id || !e.fields.has(p)) continue;
          const who = `${e.entry.manager ?? ''}\u0000${e.entry.apiVersion ?? ''}\u0000${e.entry.subresource ?? ''}`;
          conflicts.set(who, [...(conflicts.get(who) ?? []), p]);
        }
      }
    }
    if (conflicts.size && !o.force) throw conflictError(conflicts);

    // what we applied before and no longer apply goes, unless someone else holds it
    const next = structuredClone(o.live ?? {}) as KObject;
    const before = sets.get(id)?.fields ?? new Set<string>();
    const others = new Set<string>();
    for (const [k, e] of sets) if (k !== id) for (const p of e.fields) others.add(p);
    const dropped = [...before].filter((p) => !applied.has(p) && !others.has(p));
    // deepest first, so removing a list item does not shift a sibling's path
    for (const p of dropped.sort((a, b) => b.length - a.length)) this.removeAt(next, p);

    this.#mergeApply(next as Rec, o.config as Rec, o.cls ? { k: 'object', name: o.cls } : undefined, o.cls);

    // forced: the applied fields leave their previous owners
    for (const [k, e] of sets) {
      if (k === id) continue;
      for (const paths of conflicts.values()) for (const p of paths) e.fields.delete(p);
    }
    sets.set(id, { entry: { manager: o.manager, operation: 'Apply', apiVersion: o.apiVersion, ...(o.subresource ? { subresource: o.subresource } : {}) }, fields: applied, touched: true });
    const all = this.fieldSet(next, o.cls, o.subresource);
    const mf = this.#encode(sets, next, o.subresource, all);
    const meta = (next.metadata ??= {});
    if (mf) meta.managedFields = mf as never;
    else delete meta.managedFields;
    return next;
  }

  #mergeApply(live: Rec, config: Rec, t: TypeRef | undefined, cls: string | undefined): void {
    for (const [k, cv] of Object.entries(config)) {
      if (cv === undefined) continue;
      if (cv === null) {
        delete live[k];
        continue;
      }
      const ft = t?.k === 'object' ? this.#schemas.field(t.name, k) : t?.k === 'map' ? t.of : undefined;
      const lv = live[k];
      if (isObj(cv)) {
        if (!isObj(lv)) live[k] = {};
        this.#mergeApply(live[k] as Rec, cv, ft, ft?.k === 'object' ? ft.name : undefined);
      } else if (Array.isArray(cv)) {
        const lm = listMeta(t?.k === 'object' ? t.name : cls, k);
        const itemType = ft?.k === 'array' ? ft.of : undefined;
        if (lm.listType === 'map' && lm.mapKeys && Array.isArray(lv) && cv.every(isObj)) {
          const out = lv.map((x) => x);
          for (const item of cv as Rec[]) {
            const idx = out.findIndex((x) => hasKeys(x, lm.mapKeys!, item));
            if (idx >= 0) this.#mergeApply(out[idx] as Rec, item, itemType, itemType?.k === 'object' ? itemType.name : undefined);
            else out.push(structuredClone(item));
          }
          live[k] = out;
        } else if (lm.listType === 'set' && Array.isArray(lv)) {
          const out = [...lv];
          for (const item of cv) if (!out.some((x) => isDeepStrictEqual(x, item))) out.push(item);
          live[k] = out;
        } else {
          live[k] = structuredClone(cv);
        }
      } else {
        live[k] = cv;
      }
    }
  }

  #encode(sets: Map<string, EntrySet>, obj: KObject, subresource: string | undefined, existing: Set<string>): ManagedFieldsEntry[] | undefined {
    const out: ManagedFieldsEntry[] = [];
    for (const e of sets.values()) {
      // fields that no longer exist are nobody's (status fields belong to status managers)
      const keep = new Set([...e.fields].filter((p) => (e.entry.subresource ?? undefined) !== subresource || existing.has(p) || this.valueAt(obj, p) !== undefined));
      if (keep.size === 0) continue;
      out.push({
        manager: e.entry.manager,
        operation: e.entry.operation,
        apiVersion: e.entry.apiVersion,
        time: e.touched ? now() : e.entry.time,
        fieldsType: 'FieldsV1',
        fieldsV1: toTrie(keep),
        ...(e.entry.subresource ? { subresource: e.entry.subresource } : {}),
      });
    }
    return out.length ? out : undefined;
  }
}

interface EntrySet {
  entry: ManagedFieldsEntry;
  fields: Set<string>;
  touched?: boolean;
}

const entryId = (e: ManagedFieldsEntry): string => `${e.manager}\u0000${e.operation}\u0000${e.apiVersion}\u0000${e.subresource ?? ''}`;

function decode(entries: ManagedFieldsEntry[]): Map<string, EntrySet> {
  const m = new Map<string, EntrySet>();
  for (const e of entries) m.set(entryId(e), { entry: e, fields: fromTrie(e.fieldsV1 ?? {}) });
  return m;
}

export function toTrie(paths: Iterable<string>): Rec {
  const root: Rec = {};
  const all = [...paths].map((p) => JSON.parse(p) as FieldPath);
  const members = new Set([...paths]);
  for (const p of all) {
    let node = root;
    for (const el of p) node = (node[el] ??= {}) as Rec;
  }
  // a node that is itself a member and has children gets ".": {}
  const mark = (node: Rec, prefix: FieldPath) => {
    for (const [k, child] of Object.entries(node)) {
      if (k === '.') continue;
      const p = [...prefix, k];
      const c = child as Rec;
      if (Object.keys(c).length > 0) {
        if (members.has(keyOfPath(p))) c['.'] = {};
        mark(c, p);
      }
    }
  };
  mark(root, []);
  return root;
}

export function fromTrie(trie: Rec): Set<string> {
  const out = new Set<string>();
  const walk = (node: Rec, prefix: FieldPath) => {
    for (const [k, child] of Object.entries(node)) {
      if (k === '.') {
        out.add(keyOfPath(prefix));
        continue;
      }
      const p = [...prefix, k];
      if (!isObj(child) || Object.keys(child).length === 0) out.add(keyOfPath(p));
      else walk(child, p);
    }
  };
  walk(trie, []);
  return out;
}

/** `.spec.template.spec.containers[name="web"].image`, as upstream renders field paths. */
export function renderPath(pathKey: string): string {
  let s = '';
  for (const el of JSON.parse(pathKey) as FieldPath) {
    if (el.startsWith('f:')) s += `.${el.slice(2)}`;
    else if (el.startsWith('k:')) {
      const keys = JSON.parse(el.slice(2)) as Rec;
      s += `[${Object.entries(keys).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}]`;
    } else if (el.startsWith('v:')) s += `[=${el.slice(2)}]`;
  }
  return s;
}

function conflictError(conflicts: Map<string, string[]>): Error {
  const total = [...conflicts.values()].reduce((n, l) => n + l.length, 0);
  const causes: { reason: string; message: string; field: string }[] = [];
  const parts: string[] = [];
  for (const [who, paths] of conflicts) {
    const [manager, apiVersion, subresource] = who.split('\u0000');
    const mgr = `"${manager}"${subresource ? ` with subresource "${subresource}"` : ''}${apiVersion ? ` using ${apiVersion}` : ''}`;
    const using = `conflict${paths.length > 1 ? 's' : ''} with ${mgr}`;
    for (const p of paths) causes.push({ reason: 'FieldManagerConflict', message: `conflict with ${mgr}`, field: renderPath(p) });
    parts.push(paths.length === 1 && conflicts.size === 1 ? `${using}: ${renderPath(paths[0])}` : `${using}:\n${paths.map((p) => `- ${renderPath(p)}`).join('\n')}`);
  }
  return errorWithCauses('Conflict', `Apply failed with ${total} conflict${total > 1 ? 's' : ''}: ${parts.join('\n')}`, causes);
}
