/**
 * What the server knows about the shape of each kind: field names and types (for unknown-field
 * detection, `fieldValidation`), list semantics (strategic-merge-patch merge keys, server-side
 * apply list-map keys) and the OpenAPI components built from them.
 *
 * The field lists are data from `@kubernetes/client-node`'s generated models (one class per
 * OpenAPI definition, `attributeTypeMap` = the definition's properties). The list semantics
 * are the `patchStrategy`/`patchMergeKey`/`listType` markers of the upstream Go types, for the
 * kinds kubeloop serves.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { KIND_DECLS } from '../api/kinds/index.js';

export type TypeRef =
  | { k: 'scalar'; t: 'string' | 'number' | 'boolean' | 'date' | 'intorstring' | 'any'; format: string }
  | { k: 'array'; of: TypeRef }
  | { k: 'map'; of: TypeRef }
  | { k: 'object'; name: string };

export interface ObjectType {
  /** client-node class name, e.g. `V1ServicePort` */
  name: string;
  fields: ReadonlyMap<string, TypeRef>;
}

export interface ListMeta {
  /** strategic merge patch: `merge` (by key, or a set of scalars), or replace when absent */
  strategy?: 'merge';
  retainKeys?: boolean;
  /** strategic merge patch merge key */
  mergeKey?: string;
  /** server-side apply: `map` (keyed by mapKeys), `set` (scalars), `atomic` (default) */
  listType: 'map' | 'set' | 'atomic';
  mapKeys?: readonly string[];
}

/** The kinds served, by kind, to their model class (their declarations' `model`), and the classes of subresource kinds. */
export const KIND_CLASSES: Readonly<Record<string, string>> = Object.freeze({
  ...Object.fromEntries(KIND_DECLS.filter((d) => d.model).map((d) => [d.info.kind, d.model!])),
  Scale: 'V1Scale',
  DeleteOptions: 'V1DeleteOptions',
});

const merge = (mergeKey: string, mapKeys: string[] = [mergeKey], retainKeys = false): ListMeta => ({
  strategy: 'merge',
  mergeKey,
  listType: 'map',
  mapKeys,
  ...(retainKeys ? { retainKeys } : {}),
});
const byType = merge('type');
const containerLists: Record<string, ListMeta> = {
  ports: merge('containerPort', ['containerPort', 'protocol']),
  env: merge('name'),
  volumeMounts: merge('mountPath'),
  volumeDevices: merge('devicePath'),
};
const podSpecLists: Record<string, ListMeta> = {
  containers: merge('name'),
  initContainers: merge('name'),
  ephemeralContainers: merge('name'),
  volumes: merge('name', ['name'], true),
  imagePullSecrets: merge('name'),
  hostAliases: merge('ip'),
  topologySpreadConstraints: merge('topologyKey', ['topologyKey', 'whenUnsatisfiable']),
  schedulingGates: merge('name'),
  resourceClaims: merge('name', ['name'], true),
};

/** `Class.field` → list semantics (upstream struct tags). Lists not named here are atomic. */
const LISTS: Readonly<Record<string, ListMeta>> = Object.freeze({
  'V1ObjectMeta.ownerReferences': merge('uid'),
  'V1ObjectMeta.finalizers': { strategy: 'merge', listType: 'set' },
  ...prefixed('V1PodSpec', podSpecLists),
  ...prefixed('V1Container', containerLists),
  ...prefixed('V1EphemeralContainer', containerLists),
  'V1ServiceSpec.ports': merge('port', ['port', 'protocol']),
  'V1PodStatus.conditions': byType,
  'V1PodStatus.podIPs': merge('ip'),
  'V1NodeStatus.conditions': byType,
  'V1NodeStatus.addresses': byType,
  'V1NamespaceStatus.conditions': byType,
  'V1ServiceStatus.conditions': byType,
  'V1DeploymentStatus.conditions': byType,
  'V1ReplicaSetStatus.conditions': byType,
  'V1StatefulSetStatus.conditions': byType,
  'V1DaemonSetStatus.conditions': byType,
  'V1ReplicationControllerStatus.conditions': byType,
  'V1PersistentVolumeClaimStatus.conditions': byType,
  'V1ResourceRequirements.claims': { listType: 'map', mapKeys: ['name'] },
});

/** `Class.field` of maps that strategic merge patch treats with `retainKeys` (union types). */
const RETAIN_KEYS_FIELDS = new Set(['V1DeploymentSpec.strategy', 'V1Volume']);

function prefixed(cls: string, m: Record<string, ListMeta>): Record<string, ListMeta> {
  return Object.fromEntries(Object.entries(m).map(([k, v]) => [`${cls}.${k}`, v]));
}

interface RawAttr {
  name: string;
  baseName: string;
  type: string;
  format: string;
}

/** Parses client-node's type strings: `Array<X>`, `{ [key: string]: X; }`, `V1Foo`, `string`... */
export function parseTypeString(t: string, format = ''): TypeRef {
  t = t.trim();
  const arr = /^Array<(.+)>$/.exec(t);
  if (arr) return { k: 'array', of: parseTypeString(arr[1]) };
  const map = /^\{\s*\[key: string\]:\s*(.+?);?\s*\}$/.exec(t);
  if (map) return { k: 'map', of: parseTypeString(map[1], format) };
  switch (t) {
    case 'string':
      return { k: 'scalar', t: 'string', format };
    case 'number':
      return { k: 'scalar', t: 'number', format };
    case 'boolean':
      return { k: 'scalar', t: 'boolean', format };
    case 'Date':
      return { k: 'scalar', t: 'date', format };
    case 'IntOrString':
      return { k: 'scalar', t: 'intorstring', format };
    case 'any':
    case 'object':
      return { k: 'scalar', t: 'any', format };
    default:
      return { k: 'object', name: t };
  }
}

/**
 * The loaded model classes, from the kinds' roots through every referenced type. `load()` once
 * (async: the models are ES modules), then everything is synchronous.
 */
export class Schemas {
  readonly #types = new Map<string, ObjectType>();
  #loading: Promise<void> | undefined;

  load(): Promise<void> {
    this.#loading ??= this.#loadAll(Object.values(KIND_CLASSES));
    return this.#loading;
  }

  get loaded(): boolean {
    return this.#types.size > 0;
  }

  async #loadAll(roots: string[]): Promise<void> {
    const req = createRequire(import.meta.url);
    // the package has no exports map: its generated models are plain files next to its entry
    const entry = req.resolve('@kubernetes/client-node');
    const dir = join(dirname(entry), 'gen', 'models');
    const queue = [...roots];
    const seen = new Set<string>();
    while (queue.length) {
      const batch = queue.splice(0).filter((n) => !seen.has(n));
      for (const n of batch) seen.add(n);
      const mods = await Promise.all(
        batch.map(async (n) => {
          try {
            return [n, (await import(pathToFileURL(join(dir, `${n}.js`)).href)) as Record<string, unknown>] as const;
          } catch {
            return [n, undefined] as const;
          }
        }),
      );
      for (const [n, mod] of mods) {
        const cls = mod?.[n] as { attributeTypeMap?: RawAttr[] } | undefined;
        if (!cls?.attributeTypeMap) continue;
        const fields = new Map<string, TypeRef>();
        for (const a of cls.attributeTypeMap) {
          const ref = parseTypeString(a.type, a.format);
          fields.set(a.baseName, ref);
          for (const dep of objectNames(ref)) if (!seen.has(dep)) queue.push(dep);
        }
        this.#types.set(n, { name: n, fields });
      }
    }
  }

  type(name: string): ObjectType | undefined {
    return this.#types.get(name);
  }

  forKind(kind: string): ObjectType | undefined {
    const cls = KIND_CLASSES[kind];
    return cls ? this.#types.get(cls) : undefined;
  }

  /** The type of `field` inside an object of class `cls`. */
  field(cls: string | undefined, field: string): TypeRef | undefined {
    return cls ? this.#types.get(cls)?.fields.get(field) : undefined;
  }

  allTypes(): IterableIterator<ObjectType> {
    return this.#types.values();
  }
}

function* objectNames(r: TypeRef): Generator<string> {
  if (r.k === 'object') yield r.name;
  else if (r.k === 'array' || r.k === 'map') yield* objectNames(r.of);
}

/** List semantics of `cls.field` (atomic when unknown). */
export function listMeta(cls: string | undefined, field: string): ListMeta {
  return (cls && LISTS[`${cls}.${field}`]) || { listType: 'atomic' };
}

/** Does strategic merge patch apply `retainKeys` to the map at `cls.field` (or to every `cls` item)? */
export function retainKeys(cls: string | undefined, field: string, itemCls?: string): boolean {
  return (cls !== undefined && RETAIN_KEYS_FIELDS.has(`${cls}.${field}`)) || (itemCls !== undefined && RETAIN_KEYS_FIELDS.has(itemCls));
}

/** The class of the elements/values of a field, when they are objects. */
export function elementClass(r: TypeRef | undefined): string | undefined {
  if (!r) return undefined;
  if (r.k === 'object') return r.name;
  if (r.k === 'array' || r.k === 'map') return elementClass(r.of);
  return undefined;
}

/** The Go type name upstream messages use (`ServicePort` for `V1ServicePort`). */
export function goTypeName(cls: string): string {
  return cls.replace(/^(CoreV1|DiscoveryV1|EventsV1|V1beta\d|V1alpha\d|V\d)/, '');
}

export interface FieldProblem {
  kind: 'unknown' | 'type';
  /** `spec.prots` (unknown) */
  path: string;
  message: string;
}

const GO_INT: Record<string, { name: string; min: number; max: number }> = {
  int32: { name: 'int32', min: -(2 ** 31), max: 2 ** 31 - 1 },
  int64: { name: 'int64', min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER },
  '': { name: 'int32', min: -(2 ** 31), max: 2 ** 31 - 1 },
};

/**
 * Fields typed `resource.Quantity` upstream: client-node models them as strings, but the Go
 * decoder also accepts a JSON number there (`cpu: 1`).
 */
const QUANTITY_FIELDS = new Set(['limits', 'requests', 'overhead', 'sizeLimit', 'capacity', 'allocatable', 'allocatedResources', 'divisor', 'hard', 'used']);

/**
 * Walks an object against its type, removing unknown fields (as the Go JSON decoder drops them)
 * and reporting them, plus every value the Go decoder would refuse: a wrong JSON type (also
 * inside lists and maps: `data: {"k": 1}`, `command: [1, 2]`), a fractional or out-of-range
 * integer, and a `[]byte` field (Secret `data`, ConfigMap `binaryData`) that is not base64.
 * Type problems carry the decoder's message (`json: cannot unmarshal number into Go struct field
 * ConfigMap.data of type string`). Recursion follows the schema's own (finite) nesting only.
 */
export function checkFields(schemas: Schemas, obj: unknown, cls: string): FieldProblem[] {
  const out: FieldProblem[] = [];
  walk(schemas, obj, { k: 'object', name: cls }, { path: '', goPath: '', owner: cls, field: '' }, out);
  return out;
}

/** The JSON value kind as Go's decoder names it in UnmarshalTypeError. */
function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'object') return 'object';
  if (typeof v === 'boolean') return 'bool';
  return typeof v;
}

interface At {
  /** `spec.containers[0].command[1]` (unknown-field messages carry indices, as upstream's) */
  path: string;
  /** `spec.containers.command` (the decoder's field stack has no indices or map keys) */
  goPath: string;
  /** innermost struct class, named in the decoder's message */
  owner: string;
  /** the struct field name the value sits under */
  field: string;
}

/** `base64.StdEncoding` decoding: the input byte where it fails, or `undefined` for valid input. */
export function base64ErrorAt(s: string): number | undefined {
  const skipNewlines = (i: number): number => {
    while (i < s.length && (s[i] === '\n' || s[i] === '\r')) i++;
    return i;
  };
  let si = 0;
  for (;;) {
    for (let j = 0; j < 4; j++) {
      si = skipNewlines(si);
      if (si === s.length) return j === 0 ? undefined : si - j;
      const c = s[si++];
      if (c === '=') {
        if (j < 2) return si - 1;
        if (j === 2) {
          si = skipNewlines(si);
          if (si === s.length) return s.length;
          if (s[si] !== '=') return si - 1;
          si++;
        }
        si = skipNewlines(si);
        return si < s.length ? si : undefined;
      }
      if (!/[A-Za-z0-9+/]/.test(c)) return si - 1;
    }
  }
}

function walk(schemas: Schemas, v: unknown, t: TypeRef, at: At, out: FieldProblem[]): void {
  if (v === null || v === undefined) return;
  const typeErr = (want: string, shown = jsonType(v)) =>
    out.push({ kind: 'type', path: at.path, message: `json: cannot unmarshal ${shown} into Go struct field ${goTypeName(at.owner)}.${at.goPath} of type ${want}` });
  switch (t.k) {
    case 'scalar':
      switch (t.t) {
        case 'string':
        case 'date':
          if (typeof v === 'string') {
            if (t.format === 'byte') {
              const bad = base64ErrorAt(v);
              if (bad !== undefined) out.push({ kind: 'type', path: at.path, message: `illegal base64 data at input byte ${bad}` });
            }
          } else if (!(typeof v === 'number' && QUANTITY_FIELDS.has(at.field))) {
            typeErr(t.format === 'byte' ? '[]uint8' : 'string');
          }
          return;
        case 'number': {
          if (typeof v !== 'number') return void typeErr(GO_INT[t.format]?.name ?? 'float64');
          const int = GO_INT[t.format];
          if (int && (!Number.isInteger(v) || v < int.min || v > int.max)) typeErr(int.name, `number ${String(v)}`);
          return;
        }
        case 'boolean':
          if (typeof v !== 'boolean') typeErr('bool');
          return;
        case 'intorstring':
          if (typeof v !== 'string' && !(typeof v === 'number' && Number.isInteger(v))) typeErr('intstr.IntOrString');
          return;
        case 'any':
          return;
      }
      return;
    case 'array':
      if (!Array.isArray(v)) {
        typeErr(`[]${describe(t.of)}`);
        return;
      }
      v.forEach((x, i) => walk(schemas, x, t.of, { ...at, path: `${at.path}[${i}]` }, out));
      return;
    case 'map':
      if (typeof v !== 'object' || Array.isArray(v)) {
        typeErr(`map[string]${describe(t.of)}`);
        return;
      }
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) walk(schemas, x, t.of, { ...at, path: `${at.path}[${k}]` }, out);
      return;
    case 'object': {
      const ot = schemas.type(t.name);
      if (!ot) return;
      if (typeof v !== 'object' || Array.isArray(v)) {
        typeErr(describe(t));
        return;
      }
      const rec = v as Record<string, unknown>;
      for (const k of Object.keys(rec)) {
        const ft = ot.fields.get(k);
        const p = at.path ? `${at.path}.${k}` : k;
        if (!ft) {
          out.push({ kind: 'unknown', path: p, message: `unknown field "${p}"` });
          delete rec[k];
          continue;
        }
        walk(schemas, rec[k], ft, { path: p, goPath: at.goPath ? `${at.goPath}.${k}` : k, owner: t.name, field: k }, out);
      }
    }
  }
}

function describe(t: TypeRef): string {
  switch (t.k) {
    case 'scalar':
      if (t.t === 'number') return GO_INT[t.format]?.name ?? 'float64';
      if (t.t === 'boolean') return 'bool';
      if (t.t === 'intorstring') return 'intstr.IntOrString';
      if (t.t === 'any') return 'interface {}';
      return t.format === 'byte' ? '[]uint8' : 'string';
    case 'array':
      return `[]${describe(t.of)}`;
    case 'map':
      return `map[string]${describe(t.of)}`;
    case 'object':
      return `v1.${goTypeName(t.name)}`;
  }
}
