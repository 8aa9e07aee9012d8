/**
 * OpenAPI v3: the root index and one document per group version, as kube-apiserver serves
 * them at `/openapi/v3` and `/openapi/v3/apis/<group>/<version>`.
 *
 * kubectl reads them for two things: whether a kind's PATCH operation takes the
 * `fieldValidation` query parameter (then it validates server-side, `?fieldValidation=Strict`,
 * instead of downloading `/openapi/v2` for client-side validation), and `kubectl explain`.
 * The PATCH operations deliberately do not list `application/strategic-merge-patch+json`:
 * kubectl then computes apply patches from its compiled-in Go types (as against a cluster
 * without OpenAPI v3), which know every merge key, instead of from these schemas.
 */
import { createHash } from 'node:crypto';
import { type Descriptions, describe, loadDescriptions } from './descriptions.js';
import { GROUP_VERSIONS, type Resource, groupVersionString, resourcesOf } from './resources.js';
import { KIND_CLASSES, type Schemas, type TypeRef, listMeta, retainKeys } from './schema.js';

const META_CLASSES = new Set([
  'V1ObjectMeta',
  'V1ListMeta',
  'V1LabelSelector',
  'V1LabelSelectorRequirement',
  'V1OwnerReference',
  'V1ManagedFieldsEntry',
  'V1Status',
  'V1StatusDetails',
  'V1StatusCause',
  'V1DeleteOptions',
  'V1Preconditions',
  'V1Condition',
]);

/** the OpenAPI definitions' package of a group's models: `io.k8s.api.<first label of the group, core for "">.<version>` */
const groupPackage = (group: string, version: string): string => `io.k8s.api.${group ? group.split('.')[0] : 'core'}.${version}`;

const stripPrefix = (cls: string): string => cls.replace(/^(CoreV1|DiscoveryV1|V1)/, '');

export class OpenApi {
  readonly #schemas: Schemas;
  #docs: Map<string, { json: string; hash: string }> | undefined;
  #defNames = new Map<string, string>();
  #descriptions: Descriptions | undefined;

  constructor(schemas: Schemas) {
    this.#schemas = schemas;
  }

  /**
   * Puts the upstream descriptions into the documents (read on the first call, kept after); the
   * documents built before are dropped, so their hashes change once, when the descriptions arrive.
   */
  async withDescriptions(): Promise<void> {
    if (this.#descriptions) return;
    this.#descriptions = await loadDescriptions();
    this.#docs = undefined;
  }

  /** `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=…"}, …}}` */
  root(): Record<string, unknown> {
    const paths: Record<string, unknown> = {};
    for (const [key, d] of this.#all()) paths[key] = { serverRelativeURL: `/openapi/v3/${key}?hash=${d.hash}` };
    return { paths };
  }

  /** The JSON text of one group version's document (`api/v1`, `apis/apps/v1`), or undefined. */
  document(key: string): string | undefined {
    return this.#all().get(key)?.json;
  }

  #all(): Map<string, { json: string; hash: string }> {
    if (this.#docs) return this.#docs;
    this.#assignNames();
    const docs = new Map<string, { json: string; hash: string }>();
    for (const gv of GROUP_VERSIONS) {
      const key = gv.group ? `apis/${gv.group}/${gv.version}` : `api/${gv.version}`;
      const json = JSON.stringify(this.#build(gv.group, gv.version));
      docs.set(key, { json, hash: createHash('sha512').update(json).digest('hex').slice(0, 128).toUpperCase() });
    }
    this.#docs = docs;
    return docs;
  }

  /** Definition names like upstream's: `io.k8s.api.core.v1.Service`. */
  #assignNames(): void {
    const byKind = Object.entries(KIND_CLASSES);
    const groupOfKind = (kind: string): { group: string; version: string } => {
      for (const r of GROUP_VERSIONS) {
        if (resourcesOf(r.group, r.version).some((x) => x.info.kind === kind)) return r;
      }
      return kind === 'Scale' ? { group: 'autoscaling', version: 'v1' } : { group: '', version: 'v1' };
    };
    for (const [kind, cls] of byKind) {
      const { group, version } = groupOfKind(kind);
      const queue = [cls];
      while (queue.length) {
        const c = queue.shift()!;
        if (this.#defNames.has(c)) continue;
        const pkg = META_CLASSES.has(c) ? 'io.k8s.apimachinery.pkg.apis.meta.v1' : groupPackage(group, version);
        this.#defNames.set(c, `${pkg}.${stripPrefix(c)}`);
        for (const t of this.#schemas.type(c)?.fields.values() ?? []) {
          for (const n of names(t)) if (!this.#defNames.has(n)) queue.push(n);
        }
      }
    }
  }

  #build(group: string, version: string): Record<string, unknown> {
    const paths: Record<string, unknown> = {};
    const used = new Set<string>();
    const gvk = (kind: string, g = group, v = version) => ({ group: g, version: v, kind });
    const ref = (cls: string) => {
      used.add(cls);
      return { $ref: `#/components/schemas/${this.#defNames.get(cls) ?? cls}` };
    };
    const param = (name: string, where = 'query', type = 'string') => ({ name, in: where, schema: { type }, ...(where === 'path' ? { required: true } : {}) });
    const writeParams = [param('dryRun'), param('fieldManager'), param('fieldValidation')];
    const json = (schema: unknown) => ({ 'application/json': { schema } });
    const ok = (schema: unknown) => ({ '200': { description: 'OK', content: json(schema) } });
    const prefix = group ? `/apis/${group}/${version}` : `/api/${version}`;

    for (const r of resourcesOf(group, version)) {
      const i = r.info;
      const cls = KIND_CLASSES[i.kind];
      if (!cls) continue;
      const body = ref(cls);
      const ns = i.namespaced ? `/namespaces/{namespace}` : '';
      const nsParam = i.namespaced ? [param('namespace', 'path')] : [];
      const tag = `${group || 'core'}_${version}`;
      const op = (action: string, verb: string, extra: Record<string, unknown> = {}, k = gvk(i.kind)) => ({
        tags: [tag],
        operationId: `${verb}${i.namespaced ? 'Namespaced' : ''}${i.kind}`,
        'x-kubernetes-action': action,
        'x-kubernetes-group-version-kind': k,
        ...extra,
      });
      const patchOp = (target: unknown, k = gvk(i.kind), what = 'patch') =>
        op('patch', what, {
          parameters: [...writeParams, param('force', 'query', 'boolean')],
          requestBody: {
            content: {
              'application/json-patch+json': { schema: { type: 'object' } },
              'application/merge-patch+json': { schema: { type: 'object' } },
              'application/apply-patch+yaml': { schema: { type: 'object' } },
            },
            required: true,
          },
          responses: ok(target),
        }, k);
      paths[`${prefix}${ns}/${i.plural}`] = {
        parameters: nsParam,
        get: op('list', 'list', { parameters: [param('labelSelector'), param('fieldSelector'), param('limit', 'query', 'integer'), param('continue'), param('watch', 'query', 'boolean'), param('resourceVersion')], responses: ok({ type: 'object' }) }),
        post: op('post', 'create', { parameters: writeParams, requestBody: { content: json(body), required: true }, responses: { ...ok(body), '201': { description: 'Created', content: json(body) } } }),
        // only where the resource declares it (namespaces do not)
        ...(r.verbs.includes('deletecollection')
          ? { delete: op('deletecollection', 'deleteCollection', { parameters: [param('labelSelector'), param('fieldSelector'), param('propagationPolicy'), param('dryRun')], responses: ok({ type: 'object' }) }) }
          : {}),
      };
      paths[`${prefix}${ns}/${i.plural}/{name}`] = {
        parameters: [param('name', 'path'), ...nsParam],
        get: op('get', 'read', { responses: ok(body) }),
        put: op('put', 'replace', { parameters: writeParams, requestBody: { content: json(body), required: true }, responses: ok(body) }),
        patch: patchOp(body),
        delete: op('delete', 'delete', { parameters: [param('propagationPolicy'), param('gracePeriodSeconds', 'query', 'integer'), param('dryRun')], responses: ok(body) }),
      };
      for (const s of subresourcesWithSchema(r)) {
        const k = gvk(s.kind, s.group, s.version);
        const target = ref(KIND_CLASSES[s.kind] ?? cls);
        paths[`${prefix}${ns}/${i.plural}/{name}/${s.name}`] = {
          parameters: [param('name', 'path'), ...nsParam],
          get: op('get', `read${cap(s.name)}`, { responses: ok(target) }, k),
          put: op('put', `replace${cap(s.name)}`, { parameters: writeParams, requestBody: { content: json(target), required: true }, responses: ok(target) }, k),
          patch: patchOp(target, k, `patch${cap(s.name)}`),
        };
      }
    }

    // every type reachable from what the paths reference
    const schemas: Record<string, unknown> = {};
    const queue = [...used];
    const seen = new Set<string>();
    while (queue.length) {
      const c = queue.shift()!;
      if (seen.has(c)) continue;
      seen.add(c);
      const t = this.#schemas.type(c);
      if (!t) continue;
      const properties: Record<string, unknown> = {};
      for (const [f, tr] of t.fields) {
        properties[f] = this.#schemaOf(tr, c, f);
        for (const n of names(tr)) if (!seen.has(n)) queue.push(n);
      }
      const docs = this.#descriptions ? describe(this.#descriptions, this.#defNames.get(c) ?? c) : undefined;
      if (docs) for (const [f, text] of docs.fields) if (properties[f]) (properties[f] as Record<string, unknown>).description = text;
      const required = docs?.required.filter((f) => properties[f]) ?? [];
      const def: Record<string, unknown> = { ...(docs?.description ? { description: docs.description } : {}), type: 'object', properties, ...(required.length ? { required } : {}) };
      const kind = Object.entries(KIND_CLASSES).find(([, v]) => v === c)?.[0];
      if (kind && t.fields.has('apiVersion')) {
        const r = GROUP_VERSIONS.map((gv) => resourcesOf(gv.group, gv.version).find((x) => x.info.kind === kind)).find(Boolean);
        def['x-kubernetes-group-version-kind'] = [r ? gvk(kind, r.info.group, r.info.version) : gvk(kind, kind === 'Scale' ? 'autoscaling' : '', 'v1')];
      }
      if (retainKeys(undefined, '', c)) def['x-kubernetes-patch-strategy'] = 'retainKeys';
      schemas[this.#defNames.get(c) ?? c] = def;
    }
    return {
      openapi: '3.0.0',
      info: { title: 'Kubernetes', version: 'v1.32.0' },
      paths,
      components: { schemas },
    };
  }

  #schemaOf(t: TypeRef, cls?: string, field?: string): Record<string, unknown> {
    switch (t.k) {
      case 'scalar':
        switch (t.t) {
          case 'string':
            return { type: 'string', ...(t.format && t.format !== 'byte' ? { format: t.format } : t.format === 'byte' ? { format: 'byte' } : {}) };
          case 'number':
            return t.format === 'double' ? { type: 'number', format: 'double' } : { type: 'integer', format: t.format || 'int32' };
          case 'boolean':
            return { type: 'boolean' };
          case 'date':
            return { type: 'string', format: 'date-time' };
          case 'intorstring':
            return { 'x-kubernetes-int-or-string': true, anyOf: [{ type: 'integer' }, { type: 'string' }] };
          default:
            return { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };
        }
      case 'array': {
        const lm = cls && field ? listMeta(cls, field) : { listType: 'atomic' as const };
        return {
          type: 'array',
          items: this.#schemaOf(t.of),
          ...(lm.listType !== 'atomic' ? { 'x-kubernetes-list-type': lm.listType } : {}),
          ...(lm.mapKeys ? { 'x-kubernetes-list-map-keys': [...lm.mapKeys] } : {}),
          ...(lm.mergeKey ? { 'x-kubernetes-patch-merge-key': lm.mergeKey } : {}),
          ...(lm.strategy ? { 'x-kubernetes-patch-strategy': lm.retainKeys ? 'merge,retainKeys' : 'merge' } : {}),
        };
      }
      case 'map':
        return { type: 'object', additionalProperties: this.#schemaOf(t.of) };
      case 'object':
        return { allOf: [{ $ref: `#/components/schemas/${this.#defNames.get(t.name) ?? t.name}` }] };
    }
  }
}

function* names(t: TypeRef): Generator<string> {
  if (t.k === 'object') yield t.name;
  else if (t.k === 'array' || t.k === 'map') yield* names(t.of);
}

const cap = (s: string): string => s[0].toUpperCase() + s.slice(1);

function subresourcesWithSchema(r: Resource) {
  // streams (logs, exec, attach, port-forward) have no object body to describe
  // (and eviction: a create-only subresource, not a read/replace/patch of an object)
  return r.subresources.filter((s) => !['log', 'exec', 'attach', 'portforward', 'proxy', 'eviction'].includes(s.name));
}

export const openApiKey = (group: string, version: string): string =>
  group ? `apis/${group}/${version}` : `api/${groupVersionString(group, version)}`;
