/**
 * The REST verbs on resources: get, list, watch, create, update (PUT), patch (four types),
 * delete, deletecollection, and the status / scale / log subresources. Everything a request
 * asks of the store goes through here; errors leave as Status bodies (status.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import { ApiError, badRequest, conflict, isApiError } from '../api/errors.js';
import { escapeFieldValue, parse as parseLabelSelector, parseFields } from '../api/labels.js';
import { type KObject, type Stored, clone } from '../api/types.js';
import type { DeleteOptions, PropagationPolicy, Store, WatchEvent } from '../store/types.js';
import type { User } from './auth.js';
import { checkDepth } from './body-limits.js';
import { decodeObject, discardBody, inputMediaType, parseText, readBody, sendJson, unsupportedMediaType, warningHeaders } from './http.js';
import type { AgentForwarder } from './agent-forward.js';
import type { FieldManager } from './managed-fields.js';
import { applyJsonPatch } from './patch/json-patch.js';
import { applyMergePatch } from './patch/merge-patch.js';
import type { StrategicMerge } from './patch/strategic.js';
import { type Resource, type Verb, groupVersionString } from './resources.js';
import { type ResourceRoute, checkPathName } from './route.js';
import { boolParam, intParam } from './query-params.js';
import { serveReview } from './reviews.js';
import { evictPod } from '../store/eviction.js';
import { serveHpaV1 } from './hpa-v1.js';
import { type MetricsClient, serveMetrics } from './metrics.js';
import { toScale } from './scale.js';
import { KIND_CLASSES, type Schemas, checkFields } from './schema.js';
import { errorWithCauses } from './status.js';
import type { SliceView } from './slices.js';
import { type IncludeObject, tableVersion, toTable } from './table.js';
import { type WatchSource, encodeObject, serveWatch } from './watch.js';

export interface HandlerDeps {
  store: Store;
  schemas: Schemas;
  fields: FieldManager;
  smp: StrategicMerge;
  slices: SliceView;
  /** pods/log goes to the pod's node agent endpoint */
  agents: AgentForwarder;
  /** the Metrics API asks the node agents */
  metrics: MetricsClient;
  log: Logger;
}

export interface Call {
  req: IncomingMessage;
  res: ServerResponse;
  query: URLSearchParams;
  route: ResourceRoute;
  resource: Resource;
  /** who the request authenticated as (undefined in the plain-HTTP test mode without credentials); asked only by the reviews */
  user?: () => User | undefined;
}

type Rec = Record<string, unknown>;
type FieldValidation = 'Strict' | 'Warn' | 'Ignore';

/** upstream 1.32's patch types (apply-patch+cbor only behind the CBORServingAndStorage gate, off by default) */
const PATCH_TYPES: readonly string[] = Object.freeze([
  'application/json-patch+json',
  'application/merge-patch+json',
  'application/strategic-merge-patch+json',
  'application/apply-patch+yaml',
]);

/**
 * The patch type of a PATCH request as upstream's PatchResource reads it: the Content-Type up
 * to its first `;`, matched exactly. No Content-Type, one that does not parse or any other
 * type is a 415 before the body is read.
 */
export function patchType(header: string | undefined): string {
  const h = header ?? '';
  const semi = h.indexOf(';');
  const type = semi > 0 ? h.slice(0, semi) : h;
  if (!PATCH_TYPES.includes(type)) throw unsupportedMediaType(PATCH_TYPES);
  return type;
}

/**
 * The verb of a resource request as upstream's router and RequestInfo read it, or undefined
 * where upstream registers no route for the method (its 405): a collection takes GET (list,
 * or watch with `watch=true`), POST (create) and DELETE (deletecollection), except across all
 * namespaces of a namespaced kind, and under `/watch/`, where only GET is routed; an object
 * takes GET, PUT (update), PATCH and DELETE; a subresource GET, PUT and PATCH.
 */
export function requestVerb(method: string, route: ResourceRoute, namespaced: boolean, query: URLSearchParams): Verb | undefined {
  const watch = route.watchPath || boolParam(query, 'watch') === true;
  if (route.watchPath && method !== 'GET') return undefined;
  if (route.subresource) return SUBRESOURCE_METHODS.get(method);
  if (route.name === undefined) {
    if (method === 'GET') return watch ? 'watch' : 'list';
    // across all namespaces of a namespaced kind upstream routes only list and watch
    return namespaced && !route.namespace ? undefined : COLLECTION_METHODS.get(method);
  }
  if (method === 'GET') return watch ? 'watch' : 'get';
  return OBJECT_METHODS.get(method);
}

const SUBRESOURCE_METHODS = new Map<string, Verb>([['GET', 'get'], ['POST', 'create'], ['PUT', 'update'], ['PATCH', 'patch']]);
const COLLECTION_METHODS = new Map<string, Verb>([['POST', 'create'], ['DELETE', 'deletecollection']]);
const OBJECT_METHODS = new Map<string, Verb>([['PUT', 'update'], ['PATCH', 'patch'], ['DELETE', 'delete']]);

/** `check()`'s value; when it throws, the unread request body is drained first so the client reads the refusal (http.ts discardBody). */
function refuseUnread<T>(c: Call, check: () => T): T {
  try {
    return check();
  } catch (e) {
    discardBody(c.req, c.res);
    throw e;
  }
}

/**
 * Upstream's 405 Status (go-restful's, through the apiserver's serviceErrorHandler), with a
 * cause naming what the path does serve so that the fix is in the reply.
 */
function methodNotAllowed(method: string, c: Call, allowed: readonly Verb[]): ApiError {
  const { route, resource: r } = c;
  const what = route.subresource ? `${r.info.plural}/${route.subresource}` : r.info.plural;
  let hint = `${method} is not served here; ${what} (${groupVersionString(r.info.group, r.info.version)}) serves the verbs ${allowed.join(', ')}`;
  if (r.info.namespaced && !route.namespace && !route.subresource && (method === 'POST' || method === 'DELETE')) {
    hint += `; to ${method === 'POST' ? 'create' : 'delete a collection'}, name the namespace: .../namespaces/<namespace>/${r.info.plural}`;
  } else if (route.watchPath) {
    hint += '; a /watch/ path takes GET only';
  }
  return errorWithCauses('MethodNotAllowed', 'the server does not allow this method on the requested resource', [{ reason: 'MethodNotAllowed', message: hint }]);
}

/** what a DeleteOptions body may be read as here */
const DELETE_OPTIONS_TYPES: readonly string[] = Object.freeze(['application/json', 'application/yaml']);

const isObj = (v: unknown): v is Rec => v !== null && typeof v === 'object' && !Array.isArray(v);

function dryRun(q: URLSearchParams): boolean {
  const v = q.getAll('dryRun');
  if (v.length === 0) return false;
  for (const x of v) if (x !== 'All') throw badRequest(`Invalid dry run value: ${x}: supported values: "All"`);
  return true;
}

function fieldValidation(q: URLSearchParams): FieldValidation {
  const v = q.get('fieldValidation');
  if (v === null || v === '') return 'Warn';
  if (v === 'Strict' || v === 'Warn' || v === 'Ignore') return v;
  throw badRequest(`fieldValidation parameter unsupported: ${v}`);
}

/** kube-apiserver's default manager: the User-Agent's program name. */
function managerOf(c: Call): string {
  const explicit = c.query.get('fieldManager');
  if (explicit) {
    if (explicit.length > 128) throw badRequest('fieldManager: Too long: may not be more than 128 bytes');
    return explicit;
  }
  const ua = c.req.headers['user-agent'] ?? 'unknown';
  return ua.split('/')[0] || 'unknown';
}

export class Handlers {
  readonly #d: HandlerDeps;

  constructor(deps: HandlerDeps) {
    this.#d = deps;
  }

  /** Serves one resource request; throws ApiErrors for the caller to turn into Status. */
  async handle(c: Call): Promise<void> {
    const verb = refuseUnread(c, () => this.#verb(c));
    // the review kinds are answered, not stored (reviews.ts); their only verb is create
    if (c.resource.virtual && c.resource.info.group === 'metrics.k8s.io') return serveMetrics(c.req, c.res, c.route, c.query, this.#d.metrics);
    if (c.resource.virtual) return serveReview(c.req, c.res, c.route, c.resource.info, c.user?.());
    if (c.resource.convertedFrom) return serveHpaV1({ req: c.req, res: c.res, query: c.query, route: c.route, verb, store: this.#d.store, log: this.#d.log });
    const route = c.route;
    if (route.subresource) return this.#subresource(c, verb);
    switch (verb) {
      case 'list':
        return this.#list(c);
      case 'watch':
        return this.#watch(c, route.name);
      case 'create':
        return this.#create(c);
      case 'deletecollection':
        return this.#deleteCollection(c);
      case 'get':
        return this.#get(c);
      case 'update':
        return this.#update(c);
      case 'patch':
        return this.#patch(c);
      case 'delete':
        return this.#delete(c);
    }
  }

  /**
   * The verb a request asks for, when the path is served and the resource (or subresource)
   * declares the verb — as discovery advertises it; otherwise upstream's 404 or 405.
   */
  #verb(c: Call): Verb {
    const { route, resource: r } = c;
    const info = r.info;
    if (!info.namespaced && route.namespace) throw new ApiError('NotFound', 'the server could not find the requested resource');
    const method = c.req.method ?? 'GET';
    // a subresource the kind lacks, or one under /watch/, matches no route (404) before its name is looked at
    const sub = route.subresource ? r.subresources.find((s) => s.name === route.subresource) : undefined;
    if (route.subresource && (!sub || route.watchPath)) {
      throw new ApiError('NotFound', 'the server could not find the requested resource');
    }
    const allowed = sub ? sub.verbs : r.verbs;
    const verb = requestVerb(method, route, info.namespaced, c.query);
    if (!verb || !allowed.includes(verb)) throw methodNotAllowed(method, c, allowed);
    if (route.name !== undefined) checkPathName(route.name);
    return verb;
  }

  // ---------------------------------------------------------------- reads

  async #getObject(c: Call): Promise<Stored<KObject>> {
    const info = c.resource.info;
    if (info.kind === 'EndpointSlice') {
      const s = await this.#d.slices.get(c.route.namespace, c.route.name!);
      if (!s) throw new ApiError('NotFound', `endpointslices.discovery.k8s.io "${c.route.name}" not found`, { kind: 'endpointslices', name: c.route.name, group: 'discovery.k8s.io' });
      return s as Stored<KObject>;
    }
    return this.#d.store.get(info.kind, c.route.namespace, c.route.name!);
  }

  #includeObject(c: Call): IncludeObject {
    const v = c.query.get('includeObject');
    return v === 'None' || v === 'Object' ? v : 'Metadata';
  }

  async #get(c: Call): Promise<void> {
    const obj = await this.#getObject(c);
    const tv = tableVersion(c.req.headers.accept);
    if (tv) {
      sendJson(c.res, 200, toTable(c.resource.info.kind, [obj], { includeObject: this.#includeObject(c), version: tv }, { resourceVersion: obj.metadata.resourceVersion }), `application/json;as=Table;v=${tv};g=meta.k8s.io`);
      return;
    }
    sendJson(c.res, 200, obj);
  }

  async #listAll(c: Call): Promise<{ items: Stored<KObject>[]; resourceVersion: string }> {
    const info = c.resource.info;
    const q = {
      namespace: c.route.namespace,
      labelSelector: c.query.get('labelSelector') ?? undefined,
      fieldSelector: c.query.get('fieldSelector') ?? undefined,
    };
    const res = info.kind === 'EndpointSlice' ? await this.#d.slices.list(q) : await this.#d.store.list(info.kind, q);
    const items = [...res.items].sort((a, b) =>
      (a.metadata.namespace ?? '') === (b.metadata.namespace ?? '') ? cmp(a.metadata.name, b.metadata.name) : cmp(a.metadata.namespace ?? '', b.metadata.namespace ?? ''),
    );
    return { items: items as Stored<KObject>[], resourceVersion: res.resourceVersion };
  }

  async #list(c: Call): Promise<void> {
    const info = c.resource.info;
    // paging: `continue` carries the list's resourceVersion and the position to resume after;
    // the store serves a page from its sorted cache, so every page costs the page, not the kind
    let after: string | undefined;
    let tokenRv: string | undefined;
    const cont = c.query.get('continue');
    if (cont) {
      let token: { rv?: unknown; after?: unknown };
      try {
        token = JSON.parse(Buffer.from(cont, 'base64url').toString('utf8')) as { rv?: unknown; after?: unknown };
      } catch {
        throw badRequest('continue key is not valid: illegal base64 data');
      }
      if (typeof token !== 'object' || token === null || typeof token.after !== 'string') {
        throw badRequest('continue key is not valid: pass the metadata.continue of the previous page unchanged');
      }
      after = token.after;
      tokenRv = typeof token.rv === 'string' ? token.rv : undefined;
    }
    const limit = intParam(c.query, 'limit') ?? 0;
    const paged = Number.isInteger(limit) && limit > 0;
    let items: Stored<KObject>[];
    let resourceVersion: string;
    const meta: Rec = {};
    if (info.kind === 'EndpointSlice') {
      const all = await this.#listAll(c);
      resourceVersion = all.resourceVersion;
      let start = 0;
      if (after !== undefined) {
        start = all.items.findIndex((o) => sliceKey(o) > after!);
        if (start < 0) start = all.items.length;
      }
      items = all.items.slice(start);
      if (paged && items.length > limit) {
        items = items.slice(0, limit);
        meta.continue = continueToken(tokenRv ?? resourceVersion, sliceKey(items[items.length - 1]));
        meta.remainingItemCount = all.items.length - start - limit;
      }
    } else {
      const res = await this.#d.store.list(info.kind, {
        namespace: c.route.namespace,
        labelSelector: c.query.get('labelSelector') ?? undefined,
        fieldSelector: c.query.get('fieldSelector') ?? undefined,
        ...(paged ? { limit } : {}),
        ...(after !== undefined ? { after } : {}),
      });
      items = res.items as Stored<KObject>[];
      resourceVersion = res.resourceVersion;
      if (res.next !== undefined) {
        meta.continue = continueToken(tokenRv ?? resourceVersion, res.next);
        if (res.remaining !== undefined) meta.remainingItemCount = res.remaining;
      }
    }
    meta.resourceVersion = tokenRv ?? resourceVersion;
    const tv = tableVersion(c.req.headers.accept);
    if (tv) {
      sendJson(c.res, 200, toTable(info.kind, items, { includeObject: this.#includeObject(c), version: tv }, meta), `application/json;as=Table;v=${tv};g=meta.k8s.io`);
      return;
    }
    // each stored object is encoded once and reused by every list, get and watch (watch.ts)
    const head = `{"kind":${JSON.stringify(`${info.kind}List`)},"apiVersion":${JSON.stringify(info.apiVersion)},"metadata":${JSON.stringify(meta)},"items":[`;
    sendJson(c.res, 200, head + items.map(encodeObject).join(',') + ']}');
  }

  async #watch(c: Call, name?: string): Promise<void> {
    const info = c.resource.info;
    const store = this.#d.store;
    let fieldSelector = c.query.get('fieldSelector') ?? undefined;
    if (name) fieldSelector = fieldSelector ? `${fieldSelector},metadata.name=${escapeFieldValue(name)}` : `metadata.name=${escapeFieldValue(name)}`;
    const q = { namespace: c.route.namespace, labelSelector: c.query.get('labelSelector') ?? undefined, fieldSelector };
    // a bad selector is a 400 before the stream starts, as upstream, not an ERROR event after a 200
    parseLabelSelector(q.labelSelector);
    parseFields(q.fieldSelector, info.kind);
    const slices = this.#d.slices;
    const src: WatchSource = {
      kind: info.kind,
      apiVersion: info.apiVersion,
      list: async () => (info.kind === 'EndpointSlice' ? slices.list(q) : store.list(info.kind, q)),
      watch: (rv, on) => (info.kind === 'EndpointSlice' ? slices.watch({ ...q, resourceVersion: rv }, on) : store.watch(info.kind, { ...q, resourceVersion: rv }, on as (ev: WatchEvent) => void)),
      currentResourceVersion: () => store.resourceVersion,
    };
    const tv = tableVersion(c.req.headers.accept);
    const timeout = intParam(c.query, 'timeoutSeconds');
    await serveWatch(c.req, c.res, src, {
      resourceVersion: c.query.get('resourceVersion') ?? undefined,
      timeoutSeconds: timeout,
      allowBookmarks: boolParam(c.query, 'allowWatchBookmarks') ?? false,
      sendInitialEvents: boolParam(c.query, 'sendInitialEvents') ?? false,
      table: tv ? { version: tv, includeObject: this.#includeObject(c) } : undefined,
      log: this.#d.log,
    });
  }

  // ---------------------------------------------------------------- writes

  /** Unknown fields per `fieldValidation`: Strict rejects, Warn warns, Ignore drops. */
  #validateFields(obj: Rec, kind: string, fv: FieldValidation): string[] {
    const cls = KIND_CLASSES[kind];
    if (!cls || !this.#d.schemas.loaded) return [];
    const problems = checkFields(this.#d.schemas, obj, cls);
    const types = problems.filter((p) => p.kind === 'type');
    if (types.length) {
      throw badRequest(`${kind} in version "${versionOf(obj)}" cannot be handled as a ${kind}: ${types[0].message}`);
    }
    if (!problems.length || fv === 'Ignore') return [];
    if (fv === 'Strict') {
      throw badRequest(`${kind} in version "${versionOf(obj)}" cannot be handled as a ${kind}: strict decoding error: ${problems.map((p) => p.message).join(', ')}`);
    }
    return problems.map((p) => p.message);
  }

  #checkKind(c: Call, obj: Rec): void {
    const info = c.resource.info;
    const av = obj.apiVersion;
    const kind = obj.kind;
    if (av !== undefined && av !== '' && av !== info.apiVersion) {
      throw badRequest(`the API version in the data (${String(av)}) does not match the expected API version (${info.apiVersion})`);
    }
    if (kind !== undefined && kind !== '' && kind !== info.kind) {
      throw badRequest(`the kind in the data (${String(kind)}) does not match the expected kind (${info.kind})`);
    }
    obj.apiVersion = info.apiVersion;
    obj.kind = info.kind;
  }

  #checkNamespace(c: Call, obj: Rec): void {
    const meta = (isObj(obj.metadata) ? obj.metadata : (obj.metadata = {})) as Rec;
    if (!c.resource.info.namespaced) {
      delete meta.namespace;
      return;
    }
    const ns = c.route.namespace;
    if (meta.namespace && ns && meta.namespace !== ns) {
      throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
    }
    if (ns) meta.namespace = ns;
  }

  #respond(c: Call, code: number, obj: unknown, warnings: string[]): void {
    sendJson(c.res, code, obj, 'application/json', warningHeaders(warnings));
  }

  async #create(c: Call): Promise<void> {
    const info = c.resource.info;
    const obj = decodeObject(await readBody(c.req, c.res), c.req.headers['content-type']);
    this.#checkKind(c, obj);
    const warnings = this.#validateFields(obj, info.kind, fieldValidation(c.query));
    this.#checkNamespace(c, obj);
    const meta = obj.metadata as Rec;
    if (meta.resourceVersion) throw new ApiError('InternalError', 'Internal error occurred: resourceVersion should not be set on objects to be created');
    for (const k of ['creationTimestamp', 'uid', 'selfLink', 'generation', 'deletionTimestamp', 'deletionGracePeriodSeconds']) delete meta[k];
    const dry = dryRun(c.query);
    const mf = this.#d.fields.update({ next: obj as KObject, manager: managerOf(c), cls: KIND_CLASSES[info.kind], apiVersion: info.apiVersion });
    if (mf) meta.managedFields = mf;
    else delete meta.managedFields;
    const stored = await this.#d.store.create(obj as KObject, { dryRun: dry });
    this.#respond(c, 201, stored, warnings);
  }

  async #update(c: Call, subresource?: WriteSubresource): Promise<void> {
    const info = c.resource.info;
    const obj = decodeObject(await readBody(c.req, c.res), c.req.headers['content-type']);
    this.#checkKind(c, obj);
    const warnings = this.#validateFields(obj, info.kind, fieldValidation(c.query));
    this.#checkNamespace(c, obj);
    const meta = obj.metadata as Rec;
    if (meta.name !== undefined && meta.name !== c.route.name) {
      throw badRequest(`the name of the object (${String(meta.name)}) does not match the name on the URL (${c.route.name})`);
    }
    meta.name = c.route.name;
    const old = await this.#d.store.get(info.kind, c.route.namespace, c.route.name!);
    const stored = await this.#write(c, old, obj as KObject, subresource);
    this.#respond(c, 200, stored, warnings);
  }

  /** Update with managedFields; a no-op update returns the old object unchanged. */
  async #write(c: Call, old: Stored<KObject>, next: KObject, subresource?: WriteSubresource | 'scale'): Promise<Stored<KObject>> {
    const info = c.resource.info;
    const meta = (next.metadata ??= {});
    const mf = this.#d.fields.update({ old, next, manager: managerOf(c), cls: KIND_CLASSES[info.kind], apiVersion: info.apiVersion, subresource });
    if (mf) meta.managedFields = mf as never;
    else delete meta.managedFields;
    if (sameExceptManaged(old, next)) return old;
    return this.#d.store.update(next, { dryRun: dryRun(c.query), ...(subresource === 'status' || subresource === 'ephemeralcontainers' ? { subresource } : {}) });
  }

  /** The patched object (PATCH with the three classic patch types). */
  #applyPatch(type: string, current: KObject, body: Buffer, cls: string | undefined): Rec {
    let patched: unknown;
    switch (type) {
      case 'application/json-patch+json':
        patched = applyJsonPatch(current, parseText(body, 'application/json'));
        break;
      case 'application/merge-patch+json':
        patched = applyMergePatch(current, parseText(body, 'application/json'));
        break;
      case 'application/strategic-merge-patch+json':
        patched = this.#d.smp.apply(current, parseText(body, 'application/json'), cls);
        break;
      default:
        throw unsupportedMediaType(PATCH_TYPES);
    }
    if (!isObj(patched)) throw badRequest('the patch produced something that is not an object');
    return patched;
  }

  async #patch(c: Call, subresource?: WriteSubresource): Promise<void> {
    const info = c.resource.info;
    const type = refuseUnread(c, () => patchType(c.req.headers['content-type']));
    const body = await readBody(c.req, c.res);
    if (type === 'application/apply-patch+yaml') return this.#serverSideApply(c, body, subresource);
    const fv = fieldValidation(c.query);
    const cls = KIND_CLASSES[info.kind];
    for (let attempt = 0; ; attempt++) {
      const old = await this.#d.store.get(info.kind, c.route.namespace, c.route.name!);
      const patched = this.#applyPatch(type, clone(old), body, cls);
      // a JSON patch can put a value of the body's depth at the bottom of the object's
      checkDepth(patched);
      const explicitRv = (patched.metadata as Rec | undefined)?.resourceVersion !== old.metadata.resourceVersion;
      patched.apiVersion = old.apiVersion;
      patched.kind = old.kind;
      const meta = (isObj(patched.metadata) ? patched.metadata : (patched.metadata = {})) as Rec;
      if (meta.name !== old.metadata.name) throw badRequest(`metadata.name: Invalid value: ${JSON.stringify(meta.name)}: field is immutable`);
      meta.namespace = old.metadata.namespace;
      if (!info.namespaced) delete meta.namespace;
      if (meta.uid !== old.metadata.uid) meta.uid = old.metadata.uid;
      const warnings = this.#validateFields(patched, info.kind, fv);
      try {
        const stored = await this.#write(c, old, patched as KObject, subresource);
        this.#respond(c, 200, stored, warnings);
        return;
      } catch (e) {
        // a patch that did not name a resourceVersion is retried against the newer object
        if (isApiError(e, 'Conflict') && !explicitRv && attempt < 5 && !(e as ApiError & { statusCauses?: unknown }).statusCauses) continue;
        throw e;
      }
    }
  }

  async #serverSideApply(c: Call, body: Buffer, subresource?: WriteSubresource): Promise<void> {
    const info = c.resource.info;
    const config = parseText(body, 'application/apply-patch+yaml');
    if (!isObj(config)) throw badRequest('the applied configuration must be an object');
    const explicitManager = c.query.get('fieldManager');
    if (!explicitManager) throw badRequest('PATCH, application/apply-patch+yaml requires fieldManager to be set');
    if (!config.apiVersion || !config.kind) {
      throw badRequest(`invalid object type: ${String(config.apiVersion ?? '')}, Kind=${String(config.kind ?? '')}`);
    }
    this.#checkKind(c, config);
    const warnings = this.#validateFields(config, info.kind, (c.query.get('fieldValidation') as FieldValidation | null) ?? 'Strict');
    this.#checkNamespace(c, config);
    const meta = config.metadata as Rec;
    if (meta.name !== undefined && meta.name !== c.route.name) {
      throw badRequest(`the name of the object (${String(meta.name)}) does not match the name on the URL (${c.route.name})`);
    }
    meta.name = c.route.name;
    const force = boolParam(c.query, 'force') ?? false;
    const dry = dryRun(c.query);
    const cls = KIND_CLASSES[info.kind];
    for (let attempt = 0; ; attempt++) {
      const live = await this.#d.store.tryGet(info.kind, c.route.namespace, c.route.name!);
      const next = this.#d.fields.apply({ live, config: config as KObject, manager: explicitManager, cls, apiVersion: info.apiVersion, force, subresource });
      const m = (next.metadata ??= {});
      try {
        if (!live) {
          if (subresource) throw new ApiError('NotFound', `${info.plural} "${c.route.name}" not found`, { kind: info.plural, name: c.route.name });
          if (c.route.namespace) m.namespace = c.route.namespace;
          const stored = await this.#d.store.create(next, { dryRun: dry });
          this.#respond(c, 201, stored, warnings);
          return;
        }
        (m as { resourceVersion?: string }).resourceVersion = live.metadata.resourceVersion;
        if (sameExceptManaged(live, next) && isDeepStrictEqual(live.metadata.managedFields, next.metadata?.managedFields)) {
          this.#respond(c, 200, live, warnings);
          return;
        }
        const stored = await this.#d.store.update(next, { dryRun: dry, ...(subresource ? { subresource } : {}) });
        this.#respond(c, 200, stored, warnings);
        return;
      } catch (e) {
        if ((isApiError(e, 'Conflict') || isApiError(e, 'AlreadyExists')) && attempt < 5) continue;
        throw e;
      }
    }
  }

  // ---------------------------------------------------------------- deletes

  async #deleteOptions(c: Call): Promise<DeleteOptions> {
    const body = await readBody(c.req, c.res);
    let o: Rec = {};
    if (body.length && body.toString('utf8').trim()) {
      // upstream negotiates a DeleteOptions body as any other (JSON when there is no Content-Type)
      const v = parseText(body, inputMediaType(c.req.headers['content-type'], DELETE_OPTIONS_TYPES));
      if (isObj(v)) o = v;
    }
    const typeErr = this.#d.schemas.loaded ? checkFields(this.#d.schemas, o, 'V1DeleteOptions').find((p) => p.kind === 'type') : undefined;
    if (typeErr) throw badRequest(`DeleteOptions in version "v1" cannot be handled as a DeleteOptions: ${typeErr.message}`);
    const q = c.query;
    const policy = (q.get('propagationPolicy') ?? (o.propagationPolicy as string | undefined) ?? undefined) as PropagationPolicy | undefined;
    if (policy !== undefined && !['Foreground', 'Background', 'Orphan'].includes(policy)) {
      throw badRequest(`propagationPolicy: Unsupported value: "${policy}": supported values: "Foreground", "Background", "Orphan"`);
    }
    const orphan = boolParam(q, 'orphanDependents') ?? (o.orphanDependents as boolean | undefined);
    const grace = intParam(q, 'gracePeriodSeconds') ?? (o.gracePeriodSeconds as number | undefined);
    const bodyDry = Array.isArray(o.dryRun) && (o.dryRun as unknown[]).includes('All');
    const pre = isObj(o.preconditions) ? (o.preconditions as DeleteOptions['preconditions']) : undefined;
    return {
      dryRun: dryRun(q) || bodyDry,
      ...(grace !== undefined && grace !== null ? { gracePeriodSeconds: Number(grace) } : {}),
      ...(pre ? { preconditions: pre } : {}),
      propagationPolicy: policy ?? (orphan === true ? 'Orphan' : undefined),
    };
  }

  /** Foreground: the store marks the owner (`foregroundDeletion` finalizer) and the garbage collector drains it. */
  async #deleteOne(kind: string, ns: string | undefined, name: string, opts: DeleteOptions): Promise<Stored<KObject>> {
    return this.#d.store.delete(kind, ns, name, opts);
  }

  async #delete(c: Call): Promise<void> {
    const info = c.resource.info;
    const opts = await this.#deleteOptions(c);
    const out = await this.#deleteOne(info.kind, c.route.namespace, c.route.name!, opts);
    const pending = !opts.dryRun && out.metadata.deletionTimestamp !== undefined && (out.metadata.finalizers?.includes('foregroundDeletion') ?? false);
    sendJson(c.res, pending ? 202 : 200, out);
  }

  async #deleteCollection(c: Call): Promise<void> {
    const info = c.resource.info;
    const opts = await this.#deleteOptions(c);
    const { items, resourceVersion } = await this.#listAll(c);
    const deleted: Stored<KObject>[] = [];
    for (const o of items) {
      try {
        deleted.push(await this.#deleteOne(info.kind, o.metadata.namespace, o.metadata.name, opts));
      } catch (e) {
        if (!isApiError(e, 'NotFound')) throw e;
      }
    }
    sendJson(c.res, 200, { kind: `${info.kind}List`, apiVersion: info.apiVersion, metadata: { resourceVersion }, items: deleted });
  }

  // ---------------------------------------------------------------- subresources

  /** A subresource request whose verb the subresource serves (checked by `handle`). */
  async #subresource(c: Call, verb: Verb): Promise<void> {
    const sub = c.route.subresource;
    const name = c.route.name!;
    if (sub === 'log') {
      await this.#d.agents.logs(c.req, c.res, c.route.namespace ?? 'default', name, c.query);
      return;
    }
    if (sub === 'exec' || sub === 'attach' || sub === 'portforward') {
      // the upgraded requests never get here: index.ts hands them to the node agent (agent-forward.ts);
      // as upstream, a missing pod is a 404 before the missing upgrade is a 400
      await this.#d.store.get('Pod', c.route.namespace ?? 'default', name);
      throw badRequest(`Upgrade request required: pods/${sub} streams over WebSockets (v5.channel.k8s.io, v4.channel.k8s.io${sub === 'portforward' ? ', v2.portforward.k8s.io' : ''}); use kubectl ${sub === 'portforward' ? 'port-forward' : sub}`);
    }
    if (sub === 'ephemeralcontainers') {
      // the Pod itself, of which a write keeps only spec.ephemeralContainers (the store's rules)
      if (verb === 'get') return this.#get(c);
      return verb === 'update' ? this.#update(c, 'ephemeralcontainers') : this.#patch(c, 'ephemeralcontainers');
    }
    if (sub === 'eviction') return this.#evict(c);
    if (sub === 'status') {
      if (verb === 'get') return this.#get(c);
      return verb === 'update' ? this.#update(c, 'status') : this.#patch(c, 'status');
    }
    return this.#scale(c, verb);
  }

  /**
   * POST pods/{name}/eviction: an Eviction (policy/v1 or v1beta1) whose name is the pod's; the
   * pod is deleted with its deleteOptions unless a PodDisruptionBudget forbids it (429). Upstream
   * answers 201 with a Success Status.
   */
  async #evict(c: Call): Promise<void> {
    const ns = c.route.namespace ?? 'default';
    const name = c.route.name!;
    const body = decodeObject(await readBody(c.req, c.res), c.req.headers['content-type']);
    if (body.kind !== undefined && body.kind !== 'Eviction') throw badRequest(`the body of pods/eviction must be an Eviction (policy/v1), not ${String(body.kind)}`);
    const bodyName = (body.metadata as Rec | undefined)?.name;
    if (bodyName !== undefined && bodyName !== name) throw badRequest(`name in URL does not match name in Eviction object`);
    const d = isObj(body.deleteOptions) ? body.deleteOptions : {};
    const grace = d.gracePeriodSeconds;
    if (grace !== undefined && grace !== null && (typeof grace !== 'number' || !Number.isInteger(grace) || grace < 0)) {
      throw badRequest('deleteOptions.gracePeriodSeconds: must be a whole number of seconds ≥ 0');
    }
    const pre = isObj(d.preconditions) ? (d.preconditions as DeleteOptions['preconditions']) : undefined;
    const dry = dryRun(c.query) || (Array.isArray(d.dryRun) && (d.dryRun as unknown[]).includes('All'));
    await evictPod(this.#d.store, ns, name, {
      dryRun: dry,
      deleteOptions: { ...(typeof grace === 'number' ? { gracePeriodSeconds: grace } : {}), ...(pre ? { preconditions: pre } : {}) },
    });
    sendJson(c.res, 201, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 201 });
  }

  async #scale(c: Call, verb: Verb): Promise<void> {
    const info = c.resource.info;
    const store = this.#d.store;
    const ns = c.route.namespace;
    const name = c.route.name!;
    if (verb === 'get') {
      sendJson(c.res, 200, toScale(await store.get(info.kind, ns, name)));
      return;
    }
    const method = verb === 'update' ? 'PUT' : 'PATCH';
    // the media type is refused before the body is read, as for the object itself
    const type = refuseUnread(c, () => (method === 'PUT' ? inputMediaType(c.req.headers['content-type']) : patchType(c.req.headers['content-type'])));
    const body = await readBody(c.req, c.res);
    for (let attempt = 0; ; attempt++) {
      const obj = await store.get(info.kind, ns, name);
      const cur = toScale(obj);
      let wanted: Rec;
      if (method === 'PUT') {
        wanted = decodeObject(body, c.req.headers['content-type']);
      } else if (type === 'application/apply-patch+yaml') {
        wanted = applyMergePatch(cur, parseText(body, type)) as Rec;
      } else {
        wanted = this.#applyPatch(type, clone(cur) as unknown as KObject, body, 'V1Scale');
      }
      const rv = (wanted.metadata as Rec | undefined)?.resourceVersion;
      if (rv && rv !== obj.metadata.resourceVersion) {
        throw conflict(info.plural, name, 'the object has been modified; please apply your changes to the latest version and try again');
      }
      const replicas = (wanted.spec as Rec | undefined)?.replicas;
      if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0) {
        throw new ApiError('Invalid', `Scale.autoscaling "${name}" is invalid: spec.replicas: Invalid value: ${JSON.stringify(replicas ?? null)}: must be greater than or equal to 0`, {
          kind: 'Scale',
          name,
          group: 'autoscaling',
          causes: [{ type: 'FieldValueInvalid', field: 'spec.replicas', value: replicas ?? null, detail: 'must be greater than or equal to 0' }],
        });
      }
      const next = clone(obj) as KObject & { spec?: Rec };
      (next.spec ??= {}).replicas = replicas;
      try {
        const stored = await this.#write(c, obj, next, 'scale');
        sendJson(c.res, 200, toScale(stored));
        return;
      } catch (e) {
        if (isApiError(e, 'Conflict') && !rv && attempt < 5) continue;
        throw e;
      }
    }
  }
}

/** subresources whose writes are a Pod's (or any object's) own fields, kept by the store's rules */
type WriteSubresource = 'status' | 'ephemeralcontainers';

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
/** the store's page order and position: namespace, then name */
const sliceKey = (o: Stored<KObject>): string => `${o.metadata.namespace ?? ''}\u0000${o.metadata.name}`;
const continueToken = (rv: string, after: string): string => Buffer.from(JSON.stringify({ rv, after })).toString('base64url');
const versionOf = (o: Rec): string => {
  const av = String(o.apiVersion ?? '');
  return av.includes('/') ? av.split('/')[1] : av;
};

function sameExceptManaged(a: KObject, b: KObject): boolean {
  const strip = (o: KObject) => ({ ...o, metadata: { ...(o.metadata ?? {}), managedFields: undefined, resourceVersion: undefined } });
  return isDeepStrictEqual(JSON.parse(JSON.stringify(strip(a))), JSON.parse(JSON.stringify(strip(b))));
}
