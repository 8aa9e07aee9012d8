/**
 * What the API routes, as the kube-apiserver routes it (issue 14): a path with `//` anywhere
 * matches no route (404); a Content-Type is negotiated as upstream's NegotiateInputSerializer
 * (none is JSON, one that does not parse or is not served is a 415) and a PATCH type must be
 * one of upstream's four; and every served resource answers exactly the verbs discovery
 * advertises for it, any other being upstream's 405 that changes nothing (namespaces have no
 * deletecollection). Requests go over raw sockets so that nothing normalises them.
 */
import net from 'node:net';
import t from 'tap';
import { type InProcessApi, inProcessApi } from './helpers/api.js';
import { rawOnce } from './helpers/http.js';

type Fixture = InProcessApi;

const setup = (t: { teardown(fn: () => unknown): void }): Promise<Fixture> => inProcessApi(t, { dirPrefix: 'kubeloop-verbs-' });

/** One request written byte for byte on a fresh connection (`Connection: close`). */
const raw = rawOnce;

const NS = 'team';
const METHOD_NOT_ALLOWED = 'the server does not allow this method on the requested resource';

async function seed(f: Fixture): Promise<void> {
  const mk = async (path: string, body: unknown): Promise<void> => {
    const r = await raw(f.port, 'POST', path, JSON.stringify(body));
    if (r.status !== 201) throw new Error(`seed ${path}: ${r.status} ${r.text}`);
  };
  await mk('/api/v1/namespaces', { metadata: { name: NS } });
  await mk('/api/v1/namespaces', { metadata: { name: 'other' } });
  for (const name of ['cm0', 'cm1']) await mk(`/api/v1/namespaces/${NS}/configmaps`, { metadata: { name }, data: { k: name } });
  await mk(`/apis/apps/v1/namespaces/${NS}/deployments`, {
    metadata: { name: 'web' },
    spec: { replicas: 1, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'busybox' }] } } },
  });
}

t.test('a path with // anywhere matches no route: 404, nothing changed', async (t) => {
  const f = await setup(t);
  await seed(f);
  const rv = f.store.resourceVersion;
  const cases: Array<[string, string]> = [
    ['DELETE', `//api/v1/namespaces/${NS}`],
    ['DELETE', `///api/v1/namespaces/${NS}`],
    ['GET', `//api/v1/namespaces/${NS}/configmaps/cm0`],
    ['DELETE', `//api/v1/namespaces/${NS}/configmaps`],
    ['PUT', `//api/v1/namespaces/${NS}`],
    ['DELETE', `/api//v1/namespaces/${NS}`],
    ['DELETE', `/api/v1//namespaces/${NS}`],
    ['DELETE', `/api/v1/namespaces//${NS}`],
    ['DELETE', `/api/v1/namespaces/${NS}//configmaps/cm0`],
    ['DELETE', `//apis/apps/v1/namespaces/${NS}/deployments/web`],
    ['DELETE', `/apis//apps/v1/namespaces/${NS}/deployments/web`],
    ['GET', '//version'],
    ['GET', '//api'],
    ['GET', '//apis'],
    ['GET', '/apis//apps'],
    ['GET', '/apis/apps//v1'],
    ['GET', '/api//v1'],
    ['GET', '/api/v1//'],
    ['GET', '//healthz'],
    ['GET', '//openapi/v3'],
  ];
  for (const [method, path] of cases) {
    const r = await raw(f.port, method, path, method === 'PUT' ? JSON.stringify({ metadata: { name: NS, labels: { pwned: 'yes' } } }) : '');
    t.equal(r.status, 404, `${method} ${path}: 404`);
    t.equal(r.json.reason, 'NotFound', `${method} ${path}: a NotFound Status`);
  }
  t.equal(f.store.resourceVersion, rv, 'nothing was written');
  t.ok(await f.store.tryGet('Namespace', undefined, NS), 'the namespace is there');
  // the single-slash paths still work
  t.equal((await raw(f.port, 'GET', `/api/v1/namespaces/${NS}/configmaps/cm0`)).status, 200, 'GET with single slashes: 200');
  t.equal((await raw(f.port, 'GET', '/version')).status, 200, '/version: 200');
});

t.test('Content-Type is negotiated as upstream: none is JSON, unparseable or unknown is a 415 that changes nothing', async (t) => {
  const f = await setup(t);
  await seed(f);
  const post = `/api/v1/namespaces/${NS}/configmaps`;
  const cm = (name: string) => JSON.stringify({ metadata: { name }, data: { k: name } });
  const refused = [
    ';;;=',
    ';',
    '=',
    'application/json;;',
    'application/json; charset',
    'application/json; charset=',
    'application/json; =utf-8',
    'application/json; a=1; A=2',
    'application/json; a="unterminated',
    'application/json x',
    'application/json/x',
    'application/',
    '/json',
    'application',
    'application/jsön',
    'text/plain',
    'text/yaml',
    'application/cbor',
    'application/apply-patch+yaml',
    'application/merge-patch+json',
    '*/*',
  ];
  let n = 0;
  for (const ct of refused) {
    const name = `refused${n++}`;
    const r = await raw(f.port, 'POST', post, cm(name), { contentType: ct });
    t.equal(r.status, 415, `POST with Content-Type ${JSON.stringify(ct)}: 415`);
    t.equal(r.json.reason, 'UnsupportedMediaType', `${JSON.stringify(ct)}: an UnsupportedMediaType Status`);
    t.match(String(r.json.message), /accepted media types include: application\/json, application\/yaml, application\/vnd\.kubernetes\.protobuf$/, `${JSON.stringify(ct)}: the message names what is accepted`);
    t.notOk(await f.store.tryGet('ConfigMap', NS, name), `${JSON.stringify(ct)}: nothing created`);
  }
  const accepted: Array<[string | null, string?]> = [
    [null],
    [''],
    ['application/json'],
    ['application/json; charset=utf-8'],
    ['application/json;charset="utf-8"'],
    ['application/json ; charset = utf-8 ; x=y'],
    ['application/json;'],
    ['application/json; charset=utf-8;'],
    ['APPLICATION/JSON'],
    ['application/yaml', 'metadata:\n  name: NAME\ndata:\n  k: v\n'],
  ];
  for (const [ct, yaml] of accepted) {
    const name = `accepted${n++}`;
    const r = await raw(f.port, 'POST', post, yaml ? yaml.replace('NAME', name) : cm(name), { contentType: ct });
    t.equal(r.status, 201, `POST with ${ct === null ? 'no Content-Type' : `Content-Type ${JSON.stringify(ct)}`}: 201 ${r.status === 201 ? '' : r.text}`);
  }

  // update, patch (every type), the status and scale subresources and a DeleteOptions body
  const one = `${post}/cm0`;
  const rv = f.store.resourceVersion;
  const put = JSON.stringify({ metadata: { name: 'cm0' }, data: { k: 'pwned' } });
  const merge = '{"data":{"k":"pwned"}}';
  const refusals: Array<[string, string, string, string | null]> = [
    ['PUT', one, put, ';;;='],
    ['PUT', one, put, 'text/plain'],
    ['PUT', one, put, 'application/merge-patch+json'],
    ['PATCH', one, merge, ';;;='],
    ['PATCH', one, merge, null],
    ['PATCH', one, merge, ''],
    ['PATCH', one, merge, 'application/json'],
    ['PATCH', one, merge, 'application/yaml'],
    ['PATCH', one, merge, 'text/plain'],
    ['PATCH', one, merge, 'application/apply-patch+cbor'],
    ['PATCH', one, merge, 'Application/Merge-Patch+JSON'],
    ['PATCH', one, merge, ';application/merge-patch+json'],
    ['PATCH', one, merge, 'application/merge-patch+json,application/json'],
    ['PATCH', `/api/v1/namespaces/${NS}/status`, '{"status":{"phase":"Terminating"}}', ';;;='],
    ['PUT', `/apis/apps/v1/namespaces/${NS}/deployments/web/scale`, '{"spec":{"replicas":5}}', ';;;='],
    ['PATCH', `/apis/apps/v1/namespaces/${NS}/deployments/web/scale`, '{"spec":{"replicas":5}}', ';;;='],
    ['PATCH', `/apis/apps/v1/namespaces/${NS}/deployments/web/scale`, '{"spec":{"replicas":5}}', null],
    ['DELETE', `${post}/cm1`, '{"propagationPolicy":"Background"}', ';;;='],
    ['DELETE', `${post}/cm1`, '{"propagationPolicy":"Background"}', 'text/plain'],
  ];
  for (const [method, path, body, ct] of refusals) {
    const r = await raw(f.port, method, path, body, { contentType: ct });
    const what = `${method} ${path.replace(`/namespaces/${NS}`, '')} with ${ct === null ? 'no Content-Type' : JSON.stringify(ct)}`;
    t.equal(r.status, 415, `${what}: 415`);
    t.equal(r.json.reason, 'UnsupportedMediaType', `${what}: an UnsupportedMediaType Status`);
    if (method === 'PATCH') t.match(String(r.json.message), /json-patch\+json, application\/merge-patch\+json, application\/strategic-merge-patch\+json, application\/apply-patch\+yaml$/, `${what}: names the patch types`);
  }
  t.equal(f.store.resourceVersion, rv, 'no refused request wrote anything');

  const patches: Array<[string, string, string]> = [
    ['application/merge-patch+json', '{"data":{"k":"m"}}', 'm'],
    ['application/merge-patch+json; charset=utf-8', '{"data":{"k":"m2"}}', 'm2'],
    ['application/strategic-merge-patch+json', '{"data":{"k":"s"}}', 's'],
    ['application/json-patch+json', '[{"op":"replace","path":"/data/k","value":"j"}]', 'j'],
  ];
  for (const [ct, body, want] of patches) {
    const r = await raw(f.port, 'PATCH', one, body, { contentType: ct });
    t.equal(r.status, 200, `PATCH ${ct}: 200`);
    t.equal((r.json.data as Record<string, string> | undefined)?.k, want, `PATCH ${ct}: applied`);
  }
  const applied = await raw(f.port, 'PATCH', `${one}?fieldManager=verbs&force=true`, 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm0\ndata:\n  k: a\n', { contentType: 'application/apply-patch+yaml' });
  t.equal(applied.status, 200, 'PATCH apply-patch+yaml: 200');
  const del = await raw(f.port, 'DELETE', `${post}/cm1`, '{"propagationPolicy":"Background"}', { contentType: null });
  t.equal(del.status, 200, 'DELETE with a DeleteOptions body and no Content-Type: 200 (read as JSON)');
});

type Verb = 'create' | 'delete' | 'deletecollection' | 'get' | 'list' | 'patch' | 'update' | 'watch';
const VERBS: readonly Verb[] = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

interface Served {
  groupVersion: string;
  name: string;
  namespaced: boolean;
  verbs: string[];
}

/** every resource and subresource the legacy discovery documents list */
async function discovered(port: number): Promise<Served[]> {
  const gvs = ['v1'];
  const groups = (await raw(port, 'GET', '/apis')).json.groups as Array<{ versions: Array<{ groupVersion: string }> }>;
  for (const g of groups) for (const v of g.versions) gvs.push(v.groupVersion);
  const out: Served[] = [];
  for (const gv of gvs) {
    const list = (await raw(port, 'GET', gv === 'v1' ? '/api/v1' : `/apis/${gv}`)).json.resources as Array<{ name: string; namespaced: boolean; verbs: string[] }>;
    for (const r of list) out.push({ groupVersion: gv, name: r.name, namespaced: r.namespaced, verbs: r.verbs });
  }
  return out;
}

/** the request for `verb` on a resource (an object that does not exist where one is named) */
function requestFor(r: Served, verb: Verb, advertised: boolean): { method: string; path: string; body: string; contentType?: string; headOnly?: boolean } {
  const base = r.groupVersion === 'v1' ? '/api/v1' : `/apis/${r.groupVersion}`;
  const [plural, sub] = r.name.split('/');
  const coll = `${base}${r.namespaced ? `/namespaces/${NS}` : ''}/${plural}`;
  const named = `${coll}/missing${sub ? `/${sub}` : ''}`;
  switch (verb) {
    case 'create':
      return { method: 'POST', path: sub ? named : coll, body: '{}' };
    case 'list':
      return { method: 'GET', path: coll, body: '' };
    case 'watch':
      return { method: 'GET', path: `${coll}?watch=1&timeoutSeconds=5`, body: '', headOnly: true };
    case 'deletecollection':
      // a selector that matches nothing where the verb is served; none where it must be refused, so a regression shows
      return { method: 'DELETE', path: sub ? named : advertised ? `${coll}?labelSelector=verbs-test%3Dnone` : coll, body: '' };
    case 'get':
      return { method: 'GET', path: named, body: '' };
    case 'update':
      return { method: 'PUT', path: named, body: '{"metadata":{"name":"missing"}}' };
    case 'patch':
      return { method: 'PATCH', path: named, body: '{}', contentType: 'application/merge-patch+json' };
    case 'delete':
      return { method: 'DELETE', path: named, body: '' };
  }
}

t.test('every served resource answers exactly the verbs discovery advertises; any other is a 405 that changes nothing', async (t) => {
  const f = await setup(t);
  await seed(f);
  const served = await discovered(f.port);
  t.ok(served.length >= 18, `discovery lists ${served.length} resources and subresources`);
  const ns = served.find((r) => r.groupVersion === 'v1' && r.name === 'namespaces');
  t.same(ns?.verbs, ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'], 'namespaces: upstream verbs (no deletecollection)');
  for (const name of ['pods', 'services', 'nodes', 'configmaps', 'events']) {
    t.same(served.find((r) => r.groupVersion === 'v1' && r.name === name)?.verbs, VERBS, `${name}: all eight verbs, as upstream`);
  }
  t.same(served.find((r) => r.name === 'pods/log')?.verbs, ['get'], 'pods/log: get');

  // the aggregated discovery kubectl reads says the same
  const aggApi = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const s = net.connect(f.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', reject);
    s.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      resolve(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>);
    });
    s.end('GET /api HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList\r\nConnection: close\r\n\r\n');
  });
  const core = (aggApi.items as Array<{ versions: Array<{ resources: Array<{ resource: string; verbs: string[] }> }> }>)[0].versions[0].resources;
  t.same(core.find((r) => r.resource === 'namespaces')?.verbs, ns?.verbs, 'aggregated discovery: the same verbs for namespaces');
  const openapi = (await raw(f.port, 'GET', '/openapi/v3/api/v1')).json.paths as Record<string, Record<string, unknown>>;
  t.notOk(openapi['/api/v1/namespaces'].delete, 'OpenAPI: no deletecollection operation on namespaces');
  t.ok(openapi['/api/v1/namespaces/{namespace}/configmaps'].delete, 'OpenAPI: deletecollection on configmaps');

  let refusals = 0;
  let accepted = 0;
  for (const r of served) {
    const verbs = r.name.includes('/') ? (['create', 'delete', 'get', 'patch', 'update'] as Verb[]) : VERBS;
    for (const verb of verbs) {
      const advertised = r.verbs.includes(verb);
      const q = requestFor(r, verb, advertised);
      const rv = f.store.resourceVersion;
      const reply = await raw(f.port, q.method, q.path, q.body, { contentType: q.contentType, headOnly: q.headOnly });
      const what = `${r.groupVersion} ${r.name} ${verb} (${q.method} ${q.path})`;
      if (advertised) {
        accepted++;
        t.not(reply.status, 405, `${what}: advertised, so served (${reply.status})`);
        t.ok(reply.status > 0 && reply.status < 500, `${what}: no 5xx (${reply.status} ${reply.text.slice(0, 200)})`);
        if (verb === 'list' || verb === 'watch' || verb === 'deletecollection') t.equal(reply.status, 200, `${what}: 200`);
        if (verb === 'get' || verb === 'delete') t.equal(reply.status, 404, `${what}: reaches the handler (404 for a missing object)`);
      } else {
        refusals++;
        t.equal(reply.status, 405, `${what}: not advertised, so 405`);
        t.equal(reply.json.reason, 'MethodNotAllowed', `${what}: a MethodNotAllowed Status`);
        t.equal(reply.json.message, METHOD_NOT_ALLOWED, `${what}: upstream's message`);
        t.equal(f.store.resourceVersion, rv, `${what}: nothing written`);
      }
    }
  }
  t.comment(`${accepted} advertised verbs served, ${refusals} others refused`);
  t.ok(await f.store.tryGet('Namespace', undefined, NS), 'namespace team is still there');
  t.ok(await f.store.tryGet('Namespace', undefined, 'other'), 'namespace other is still there');
});

t.test('methods upstream routes nowhere: 405 (or 404 for no path), nothing changed', async (t) => {
  const f = await setup(t);
  await seed(f);
  const rv = f.store.resourceVersion;
  const cm = JSON.stringify({ metadata: { name: 'x', namespace: NS }, data: { k: 'x' } });
  const cases: Array<[string, string, string, number]> = [
    ['DELETE', '/api/v1/namespaces', '', 405],
    ['DELETE', '/api/v1/namespaces?labelSelector=', '', 405],
    ['DELETE', '/api/v1/configmaps', '', 405],
    ['POST', '/api/v1/configmaps', cm, 405],
    ['DELETE', '/apis/apps/v1/deployments', '', 405],
    ['DELETE', `/api/v1/watch/namespaces/${NS}/configmaps`, '', 405],
    ['POST', `/api/v1/watch/namespaces/${NS}/configmaps`, cm, 405],
    ['DELETE', `/api/v1/watch/namespaces/${NS}`, '', 405],
    ['DELETE', '/api/v1/watch/namespaces', '', 405],
    ['PUT', `/api/v1/namespaces/${NS}/configmaps`, cm, 405],
    ['PATCH', `/api/v1/namespaces/${NS}/configmaps`, '{}', 405],
    ['POST', `/api/v1/namespaces/${NS}/configmaps/cm0`, cm, 405],
    ['POST', `/api/v1/namespaces/${NS}`, '{}', 405],
    ['DELETE', `/api/v1/namespaces/${NS}/status`, '', 405],
    ['POST', `/api/v1/namespaces/${NS}/status`, '{}', 405],
    ['DELETE', `/apis/apps/v1/namespaces/${NS}/deployments/web/scale`, '', 405],
    ['PUT', `/api/v1/namespaces/${NS}/pods/p/log`, '{}', 405],
    ['HEAD', `/api/v1/namespaces/${NS}/configmaps/cm0`, '', 405],
    ['OPTIONS', `/api/v1/namespaces/${NS}/configmaps`, '', 405],
    ['GET', `/api/v1/watch/namespaces/${NS}/pods/p/log`, '', 404],
    ['GET', `/apis/apps/v1/watch/namespaces/${NS}/deployments/web/scale`, '', 404],
    ['DELETE', `/api/v1/namespaces/${NS}/finalize`, '', 404],
  ];
  for (const [method, path, body, status] of cases) {
    const r = await raw(f.port, method, path, body);
    t.equal(r.status, status, `${method} ${path}: ${status}`);
    if (method !== 'HEAD') t.equal(r.json.reason, status === 405 ? 'MethodNotAllowed' : 'NotFound', `${method} ${path}: the Status says why`);
    if (status === 405 && method !== 'HEAD') {
      const causes = ((r.json.details as { causes?: Array<{ message?: string }> } | undefined)?.causes ?? []).map((c) => c.message).join(' ');
      t.match(causes, /serves the verbs/, `${method} ${path}: a cause names the verbs served there`);
    }
  }
  t.equal(f.store.resourceVersion, rv, 'nothing was written');
  t.equal((await f.store.list('Namespace', {})).items.length >= 2, true, 'the namespaces are all there');
  t.equal((await f.store.list('ConfigMap', { namespace: NS })).items.length, 2, 'the ConfigMaps are all there');
  // what is routed still works
  t.equal((await raw(f.port, 'GET', `/api/v1/watch/namespaces/${NS}/configmaps?timeoutSeconds=5`, '', { headOnly: true })).status, 200, 'a watch path GET: 200');
  t.equal((await raw(f.port, 'GET', '/api/v1/configmaps')).status, 200, 'list across namespaces: 200');
  const dc = await raw(f.port, 'DELETE', `/api/v1/namespaces/${NS}/configmaps`);
  t.equal(dc.status, 200, 'deletecollection in a namespace: 200');
  t.equal((await f.store.list('ConfigMap', { namespace: NS })).items.length, 0, 'it deleted the ConfigMaps of that namespace');
});
