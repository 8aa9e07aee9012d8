/**
 * autoscaling/v1 HorizontalPodAutoscalers: the stored autoscaling/v2 objects seen and written
 * through upstream's conversion (api/hpa-v1.ts). What `kubectl autoscale` (1.32, a typed v1
 * client) and older clients use: get, list, watch, create, update, patch (JSON, merge and
 * strategic merge — v1's spec has no merge-keyed lists, so the last is a merge patch), delete,
 * and the status subresource. Server-side apply and managedFields are kept for the v2 API.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError, badRequest, isApiError } from '../api/errors.js';
import { hpaFromV1, hpaToV1 } from '../api/hpa-v1.js';
import type { KObject, Stored } from '../api/types.js';
import type { Store, WatchEvent } from '../store/types.js';
import type { Logger } from 'pino';
import { decodeObject, parseText, readBody, sendJson } from './http.js';
import { applyJsonPatch } from './patch/json-patch.js';
import { applyMergePatch } from './patch/merge-patch.js';
import { boolParam, intParam } from './query-params.js';
import type { ResourceRoute } from './route.js';
import { tableVersion, toTable } from './table.js';
import { serveWatch } from './watch.js';

type Rec = Record<string, unknown>;
const KIND = 'HorizontalPodAutoscaler';
const isRec = (v: unknown): v is Rec => v !== null && typeof v === 'object' && !Array.isArray(v);
const v1 = (o: KObject): Rec => hpaToV1(o as unknown as Rec);

export interface HpaV1Call {
  req: IncomingMessage;
  res: ServerResponse;
  query: URLSearchParams;
  route: ResourceRoute;
  verb: string;
  store: Store;
  log: Logger;
}

function table(c: HpaV1Call, items: KObject[]): boolean {
  const tv = tableVersion(c.req.headers.accept);
  if (!tv) return false;
  const inc = c.query.get('includeObject');
  sendJson(c.res, 200, toTable(KIND, items, { includeObject: inc === 'None' || inc === 'Object' ? inc : 'Metadata', version: tv }), `application/json;as=Table;v=${tv};g=meta.k8s.io`);
  return true;
}

function checkKind(obj: Rec): void {
  if (obj.apiVersion !== undefined && obj.apiVersion !== '' && obj.apiVersion !== 'autoscaling/v1') {
    throw badRequest(`the API version in the data (${String(obj.apiVersion)}) does not match the expected API version (autoscaling/v1)`);
  }
  if (obj.kind !== undefined && obj.kind !== '' && obj.kind !== KIND) throw badRequest(`the kind in the data (${String(obj.kind)}) does not match the expected kind (${KIND})`);
}

const dry = (q: URLSearchParams): boolean => q.getAll('dryRun').includes('All');

/** Serves one autoscaling/v1 request whose verb the resource declares (checked by the handlers). */
export async function serveHpaV1(c: HpaV1Call): Promise<void> {
  const { store, route } = c;
  const ns = route.namespace;
  const name = route.name;
  const status = route.subresource === 'status';
  switch (c.verb) {
    case 'get': {
      const o = await store.get(KIND, ns, name!);
      if (!table(c, [o])) sendJson(c.res, 200, v1(o));
      return;
    }
    case 'list': {
      const r = await store.list(KIND, { namespace: ns, labelSelector: c.query.get('labelSelector') ?? undefined, fieldSelector: c.query.get('fieldSelector') ?? undefined });
      if (!table(c, r.items)) sendJson(c.res, 200, { kind: `${KIND}List`, apiVersion: 'autoscaling/v1', metadata: { resourceVersion: r.resourceVersion }, items: r.items.map(v1) });
      return;
    }
    case 'watch': {
      let fieldSelector = c.query.get('fieldSelector') ?? undefined;
      if (name) fieldSelector = `${fieldSelector ? `${fieldSelector},` : ''}metadata.name=${name}`;
      const q = { namespace: ns, labelSelector: c.query.get('labelSelector') ?? undefined, fieldSelector };
      const tv = tableVersion(c.req.headers.accept);
      // Table rows are printed from the v2 object (the columns read its metrics)
      const view = (o: KObject): KObject => (tv ? o : (v1(o) as unknown as KObject));
      await serveWatch(
        c.req,
        c.res,
        {
          kind: KIND,
          apiVersion: 'autoscaling/v1',
          list: async () => {
            const r = await store.list(KIND, q);
            return { items: r.items.map(view), resourceVersion: r.resourceVersion };
          },
          watch: (rv, on) => store.watch(KIND, { ...q, resourceVersion: rv }, (ev: WatchEvent) => on({ ...ev, object: view(ev.object) as Stored<KObject> })),
          currentResourceVersion: () => store.resourceVersion,
        },
        {
          resourceVersion: c.query.get('resourceVersion') ?? undefined,
          timeoutSeconds: intParam(c.query, 'timeoutSeconds'),
          allowBookmarks: boolParam(c.query, 'allowWatchBookmarks') ?? false,
          sendInitialEvents: boolParam(c.query, 'sendInitialEvents') ?? false,
          table: tv ? { version: tv, includeObject: 'Metadata' } : undefined,
          log: c.log,
        },
      );
      return;
    }
    case 'create': {
      if (status) throw new ApiError('MethodNotAllowed', 'the status subresource is updated, not created');
      const obj = decodeObject(await readBody(c.req, c.res), c.req.headers['content-type']);
      checkKind(obj);
      const meta = isRec(obj.metadata) ? obj.metadata : (obj.metadata = {});
      if (ns) {
        if (meta.namespace && meta.namespace !== ns) throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
        meta.namespace = ns;
      }
      for (const k of ['creationTimestamp', 'uid', 'resourceVersion', 'generation', 'deletionTimestamp', 'managedFields']) delete meta[k];
      const stored = await store.create(hpaFromV1(obj) as unknown as KObject, { dryRun: dry(c.query) });
      sendJson(c.res, 201, v1(stored));
      return;
    }
    case 'update':
    case 'patch': {
      const body = await readBody(c.req, c.res);
      const type = (c.req.headers['content-type'] ?? '').split(';')[0].trim();
      if (type === 'application/apply-patch+yaml') throw new ApiError('UnsupportedMediaType', 'server-side apply of HorizontalPodAutoscalers goes through autoscaling/v2: apply an autoscaling/v2 object');
      for (let attempt = 0; ; attempt++) {
        const old = await store.get(KIND, ns, name!);
        let next: Rec;
        if (c.verb === 'update') next = decodeObject(body, c.req.headers['content-type']);
        else if (type === 'application/json-patch+json') next = applyJsonPatch(v1(old), parseText(body, 'application/json')) as Rec;
        else if (type === 'application/merge-patch+json' || type === 'application/strategic-merge-patch+json') next = applyMergePatch(v1(old), parseText(body, 'application/json')) as Rec;
        else throw new ApiError('UnsupportedMediaType', `the patch type ${JSON.stringify(type)} is not supported: use application/merge-patch+json, application/json-patch+json or application/strategic-merge-patch+json`);
        if (!isRec(next)) throw badRequest('the patch produced something that is not an object');
        checkKind(next);
        const meta = isRec(next.metadata) ? next.metadata : (next.metadata = {});
        if (meta.name !== undefined && meta.name !== name) throw badRequest(`the name of the object (${String(meta.name)}) does not match the name on the URL (${name})`);
        meta.name = name;
        meta.namespace = ns;
        const explicitRv = c.verb === 'update' || (meta.resourceVersion !== undefined && meta.resourceVersion !== old.metadata.resourceVersion);
        if (meta.resourceVersion === undefined) meta.resourceVersion = old.metadata.resourceVersion;
        const v2 = hpaFromV1(next) as unknown as Stored<KObject> & Rec;
        if (status) v2.spec = (old as unknown as Rec).spec;
        else if ((old as unknown as Rec).status !== undefined) v2.status = (old as unknown as Rec).status;
        try {
          const stored = await store.update(v2, { dryRun: dry(c.query), ...(status ? { subresource: 'status' as const } : {}) });
          sendJson(c.res, 200, v1(stored));
          return;
        } catch (e) {
          if (isApiError(e, 'Conflict') && !explicitRv && attempt < 5) continue;
          throw e;
        }
      }
    }
    case 'delete': {
      const out = await store.delete(KIND, ns, name!, { dryRun: dry(c.query) });
      sendJson(c.res, 200, v1(out));
      return;
    }
    case 'deletecollection': {
      const r = await store.list(KIND, { namespace: ns, labelSelector: c.query.get('labelSelector') ?? undefined });
      const deleted: Rec[] = [];
      for (const o of r.items) {
        try {
          deleted.push(v1(await store.delete(KIND, o.metadata.namespace, o.metadata.name, { dryRun: dry(c.query) })));
        } catch (e) {
          if (!isApiError(e, 'NotFound')) throw e;
        }
      }
      sendJson(c.res, 200, { kind: `${KIND}List`, apiVersion: 'autoscaling/v1', metadata: { resourceVersion: r.resourceVersion }, items: deleted });
      return;
    }
  }
  throw new ApiError('MethodNotAllowed', `${c.verb} is not served on autoscaling/v1 horizontalpodautoscalers`);
}
