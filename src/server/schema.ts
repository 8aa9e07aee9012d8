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

/** The kinds served, by kind, to their model class. */
export const KIND_CLASSES: Readonly<Record<string, string>> = Object.freeze({
  Namespace: 'V1Namespace',
  Node: 'V1Node',
  Pod: 'V1Pod',
  Service: 'V1Service',
  Endpoints: 'V1Endpoints',
  Event: 'CoreV1Event',
  ConfigMap: 'V1ConfigMap',
  Secret: 'V1Secret',
  PersistentVolumeClaim: 'V1PersistentVolumeClaim',
  ReplicationController: 'V1ReplicationController',
  Deployment: 'V1Deployment',
  ReplicaSet: 'V1ReplicaSet',
  StatefulSet: 'V1StatefulSet',
  DaemonSet: 'V1DaemonSet',
  Job: 'V1Job',
  CronJob: 'V1CronJob',
  EndpointSlice: 'V1EndpointSlice',
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

const GO_SCALAR: Record<string, string> = { 'number/int32': 'int32', 'number/int64': 'int64', 'number/double': 'float64', number: 'int32' };

/**
 * Walks an object against its type, removing unknown fields (as the Go JSON decoder drops them)
 * and reporting them, plus values of the wrong JSON type, as upstream's strict decoder would.
 */
export function checkFields(schemas: Schemas, obj: unknown, cls: string): FieldProblem[] {
  const out: FieldProblem[] = [];
  walk(schemas, obj, { k: 'object', name: cls }, '', cls, out);
  return out;
}

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'object') return 'object';
  return typeof v;
}

function walk(schemas: Schemas, v: unknown, t: TypeRef, path: string, ownerCls: string, out: FieldProblem[]): void {
  if (v === null || v === undefined) return;
  const field = path.split('.').pop()?.replace(/\[.*$/, '') ?? '';
  const typeErr = (want: string) =>
    out.push({
      kind: 'type',
      path,
      message: `json: cannot unmarshal ${jsonType(v) === 'object' ? 'object' : jsonType(v)} into Go struct field ${goTypeName(ownerCls)}.${path.replace(/\[\d+\]/g, '')} of type ${want}`,
    });
  switch (t.k) {
    case 'scalar':
      if (t.t === 'number' && typeof v !== 'number') typeErr(GO_SCALAR[`number/${t.format}`] ?? 'int32');
      else if (t.t === 'boolean' && typeof v !== 'boolean') typeErr('bool');
      else if ((t.t === 'string' || t.t === 'date') && typeof v === 'object') typeErr('string');
      else if (t.t === 'intorstring' && typeof v === 'object') typeErr('intstr.IntOrString');
      return;
    case 'array':
      if (!Array.isArray(v)) {
        typeErr(`[]${describe(t.of)}`);
        return;
      }
      v.forEach((x, i) => walk(schemas, x, t.of, `${path}[${i}]`, ownerCls, out));
      return;
    case 'map':
      if (typeof v !== 'object' || Array.isArray(v)) {
        typeErr(`map[string]${describe(t.of)}`);
        return;
      }
      if (t.of.k === 'scalar') return; // quantities and the like accept several JSON types
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) walk(schemas, x, t.of, `${path}[${k}]`, ownerCls, out);
      return;
    case 'object': {
      const ot = schemas.type(t.name);
      if (!ot) return;
      if (typeof v !== 'object' || Array.isArray(v)) {
        typeErr(goTypeName(t.name));
        return;
      }
      const rec = v as Record<string, unknown>;
      for (const k of Object.keys(rec)) {
        const ft = ot.fields.get(k);
        const p = path ? `${path}.${k}` : k;
        if (!ft) {
          out.push({ kind: 'unknown', path: p, message: `unknown field "${p}"` });
          delete rec[k];
          continue;
        }
        walk(schemas, rec[k], ft, p, t.name, out);
      }
      void field;
    }
  }
}

function describe(t: TypeRef): string {
  switch (t.k) {
    case 'scalar':
      return t.t === 'number' ? 'int32' : t.t === 'boolean' ? 'bool' : 'string';
    case 'array':
      return `[]${describe(t.of)}`;
    case 'map':
      return `map[string]${describe(t.of)}`;
    case 'object':
      return `v1.${goTypeName(t.name)}`;
  }
}
