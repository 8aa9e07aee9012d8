/**
 * Conformance-style tests of the API server over HTTP: discovery and OpenAPI documents,
 * Status bodies, conflicts, dry-run, paging, watch resume / 410 / Tables, logs, auth, and
 * @kubernetes/client-node 1.4 as a second real client.
 */
import { mkdirSync, writeFileSync, appendFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import pino from 'pino';
import protobuf from 'protobufjs';
import t from 'tap';
import type { Pod } from '../src/api/types.js';
import { ApiServer, kubeconfigYaml } from '../src/server/index.js';
import { type ClosableStore, createEmbeddedStore } from '../src/store/embedded.js';
import { InformerFactory } from '../src/store/informer.js';
import type { Pki } from '../src/cli/pki.js';
import { inProcessApi, testPki } from './helpers/api.js';
import { AgentEndpoint } from '../src/agent/endpoint/index.js';
import { AGENT_CLIENT_USER } from '../src/cli/pki.js';
import { waitFor } from './helpers/wait.js';

interface Fixture {
  store: ClosableStore;
  api: ApiServer;
  url: string;
  dir: string;
  pki?: Pki;
}

/**
 * An API server over a fresh store: plain HTTP (the loopback test mode, so `fetch` works) unless
 * `tls`, then HTTPS with the cluster CA and client certificates of `kubeloop up` (`pki`).
 */
async function setup(t: { teardown(fn: () => unknown): void }, o: { token?: string; historySize?: number; tls?: boolean } = {}): Promise<Fixture> {
  let pki: Pki | undefined;
  const f = await inProcessApi(t, {
    dirPrefix: 'kubeloop-api-',
    store: { historySize: o.historySize },
    server: async (dir) => {
      pki = o.tls ? await testPki(dir) : undefined;
      return { token: o.token, ...(pki ? { tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca } } : {}) };
    },
  });
  return { store: f.store, api: f.server, url: f.url, dir: f.dir, pki };
}

async function req(f: Fixture, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${f.url}${path}`, {
    method,
    headers: { 'Content-Type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // not JSON (logs)
  }
  return { status: res.status, type: res.headers.get('content-type') ?? '', text, json, headers: res.headers };
}

/** Opens a watch and collects its event lines until `close()`. */
function watchLines(url: string, headers: Record<string, string> = {}) {
  const lines: Record<string, unknown>[] = [];
  let ended = false;
  const r = http.get(url, { headers }, (res) => {
    let buf = '';
    res.setEncoding('utf8');
    res.on('data', (c: string) => {
      buf += c;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        lines.push(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
        buf = buf.slice(nl + 1);
      }
    });
    res.on('end', () => (ended = true));
  });
  r.on('error', () => (ended = true));
  return { lines, ended: () => ended, close: () => r.destroy() };
}

const svc = (name: string, port = 80, labels: Record<string, string> = {}) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, labels },
  spec: { selector: { app: name }, ports: [{ port }] },
});

t.test('discovery and OpenAPI', async (t) => {
  const f = await setup(t);
  const agg = 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json';
  let r = await req(f, 'GET', '/api', undefined, { Accept: agg });
  t.equal(r.type, 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList');
  const core = (r.json.items as { versions: { resources: { resource: string; shortNames?: string[] }[] }[] }[])[0].versions[0].resources;
  t.same(core.find((x) => x.resource === 'services')?.shortNames, ['svc']);
  r = await req(f, 'GET', '/api', undefined, { Accept: 'application/json' });
  t.equal(r.json.kind, 'APIVersions');
  r = await req(f, 'GET', '/apis', undefined, { Accept: agg });
  const groups = (r.json.items as { metadata: { name: string } }[]).map((g) => g.metadata.name);
  t.same(groups, ['apps', 'batch', 'discovery.k8s.io', 'coordination.k8s.io', 'networking.k8s.io', 'policy', 'autoscaling', 'authorization.k8s.io', 'authentication.k8s.io', 'metrics.k8s.io']);
  r = await req(f, 'GET', '/apis/apps/v1');
  const scale = (r.json.resources as { name: string; group?: string; kind: string }[]).find((x) => x.name === 'deployments/scale');
  t.same(scale, { name: 'deployments/scale', singularName: '', namespaced: true, group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: ['get', 'patch', 'update'] });
  r = await req(f, 'GET', '/version');
  t.equal(r.json.minor, '32');

  r = await req(f, 'GET', '/openapi/v3');
  const url = (r.json.paths as Record<string, { serverRelativeURL: string }>)['api/v1'].serverRelativeURL;
  t.match(url, /^\/openapi\/v3\/api\/v1\?hash=[0-9A-F]+$/);
  r = await req(f, 'GET', url);
  const patch = (r.json.paths as Record<string, { patch?: { parameters: { name: string; in: string }[]; 'x-kubernetes-group-version-kind': unknown } }>)['/api/v1/namespaces/{namespace}/services/{name}'].patch!;
  t.same(patch['x-kubernetes-group-version-kind'], { group: '', version: 'v1', kind: 'Service' });
  t.ok(patch.parameters.some((p) => p.name === 'fieldValidation' && p.in === 'query'), 'kubectl validates server-side');
  t.equal((await req(f, 'GET', '/openapi/v2')).status, 404, 'no v2: kubectl falls back to its compiled-in types for apply patches');
});

t.test('Status bodies', async (t) => {
  const f = await setup(t);
  let r = await req(f, 'GET', '/api/v1/namespaces/default/services/nope');
  t.same(r.json, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'services "nope" not found', reason: 'NotFound', details: { name: 'nope', kind: 'services' }, code: 404 });
  r = await req(f, 'GET', '/apis/apps/v1/namespaces/default/deployments/nope');
  t.equal(r.json.message, 'deployments.apps "nope" not found');
  t.same(r.json.details, { name: 'nope', group: 'apps', kind: 'deployments' });
  r = await req(f, 'GET', '/apis/nope/v1/things');
  t.equal(r.status, 404);
  t.equal(r.json.message, 'the server could not find the requested resource');

  t.equal((await req(f, 'POST', '/api/v1/namespaces/default/services', svc('a'))).status, 201);
  r = await req(f, 'POST', '/api/v1/namespaces/default/services', svc('a'));
  t.equal(r.status, 409);
  t.equal(r.json.reason, 'AlreadyExists');
  t.equal(r.json.message, 'services "a" already exists');

  r = await req(f, 'POST', '/api/v1/namespaces/default/services', { ...svc('bad'), spec: { ports: [{ port: 0, targetPort: 1 }] } });
  t.equal(r.status, 422);
  t.same(r.json.details, {
    name: 'bad',
    kind: 'Service',
    group: '',
    causes: [{ reason: 'FieldValueInvalid', message: 'Invalid value: 0: must be between 1 and 65535, inclusive', field: 'spec.ports[0].port' }],
  });
  t.equal(r.json.message, 'Service "bad" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive');

  r = await req(f, 'POST', '/api/v1/namespaces/default/services?fieldValidation=Strict', { ...svc('typo'), spec: { prots: [], ports: [{ port: 1 }] } });
  t.equal(r.status, 400);
  t.equal(r.json.message, 'Service in version "v1" cannot be handled as a Service: strict decoding error: unknown field "spec.prots"');
  r = await req(f, 'POST', '/api/v1/namespaces/default/services', { ...svc('typo'), spec: { prots: [], ports: [{ port: 1 }] } });
  t.equal(r.status, 201, 'the default (Warn) accepts');
  t.equal(r.headers.get('warning'), '299 - "unknown field \\"spec.prots\\""');
  t.notOk((r.json.spec as Record<string, unknown>).prots, 'and drops the field');

  r = await req(f, 'POST', '/api/v1/namespaces/default/services', 'x', { 'Content-Type': 'text/plain' });
  t.equal(r.status, 415);
  t.equal(r.json.reason, 'UnsupportedMediaType');

  // a protobuf body of a kind kubeloop cannot decode: 415 naming the way out
  const root = protobuf.Root.fromJSON({
    nested: { Unknown: { fields: { typeMeta: { type: 'TypeMeta', id: 1 }, raw: { type: 'bytes', id: 2 } } }, TypeMeta: { fields: { apiVersion: { type: 'string', id: 1 }, kind: { type: 'string', id: 2 } } } },
  });
  const U = root.lookupType('Unknown');
  const body = Buffer.concat([Buffer.from('k8s\0', 'binary'), Buffer.from(U.encode(U.create({ typeMeta: { apiVersion: 'v1', kind: 'Endpoints' }, raw: Buffer.alloc(0) })).finish())]);
  r = await req(f, 'POST', '/api/v1/namespaces/default/endpoints', body, { 'Content-Type': 'application/vnd.kubernetes.protobuf' });
  t.equal(r.status, 415);
  t.match(r.json.message, /cannot decode protobuf bodies of Endpoints \(v1\): send it as JSON or YAML/);

  r = await req(f, 'POST', '/api/v1/namespaces/nowhere/services', svc('x'));
  t.equal(r.status, 404);
  t.equal(r.json.message, 'namespaces "nowhere" not found');
  r = await req(f, 'POST', '/api/v1/namespaces/default/services', { ...svc('x'), metadata: { name: 'x', namespace: 'other' } });
  t.equal(r.status, 400);
  t.equal(r.json.message, 'the namespace of the provided object does not match the namespace sent on the request');
});

t.test('conflicts, dry-run, paging, deletecollection, propagation', async (t) => {
  const f = await setup(t);
  const created = (await req(f, 'POST', '/api/v1/namespaces/default/services', svc('c', 80, { group: 'g' }))).json as { metadata: { resourceVersion: string } };
  const stale = structuredClone(created);
  t.equal((await req(f, 'PATCH', '/api/v1/namespaces/default/services/c', { metadata: { labels: { x: '1' } } }, { 'Content-Type': 'application/merge-patch+json' })).status, 200);
  let r = await req(f, 'PUT', '/api/v1/namespaces/default/services/c', stale);
  t.equal(r.status, 409);
  t.equal(r.json.reason, 'Conflict');
  t.equal(r.json.message, 'Operation cannot be fulfilled on services "c": the object has been modified; please apply your changes to the latest version and try again');
  r = await req(f, 'PATCH', '/api/v1/namespaces/default/services/c', { metadata: { resourceVersion: stale.metadata.resourceVersion, labels: { y: '1' } } }, { 'Content-Type': 'application/merge-patch+json' });
  t.equal(r.status, 409, 'a merge patch naming a stale resourceVersion conflicts');

  const rv = f.store.resourceVersion;
  r = await req(f, 'POST', '/api/v1/namespaces/default/services?dryRun=All', svc('dry'));
  t.equal(r.status, 201);
  t.match((r.json.spec as { clusterIP: string }).clusterIP, /^127\./, 'the dry-run reply is defaulted and allocated');
  t.equal((await req(f, 'GET', '/api/v1/namespaces/default/services/dry')).status, 404);
  t.equal((await req(f, 'DELETE', '/api/v1/namespaces/default/services/c?dryRun=All')).status, 200);
  t.equal(f.store.resourceVersion, rv, 'dry runs write nothing');

  for (const n of ['p1', 'p2', 'p3', 'p4', 'p5']) await req(f, 'POST', '/api/v1/namespaces/default/services', svc(n, 80, { group: 'g' }));
  const names: string[] = [];
  let cont = '';
  let pages = 0;
  do {
    r = await req(f, 'GET', `/api/v1/namespaces/default/services?labelSelector=group%3Dg&limit=2${cont ? `&continue=${cont}` : ''}`);
    names.push(...(r.json.items as { metadata: { name: string } }[]).map((i) => i.metadata.name));
    cont = ((r.json.metadata as { continue?: string }).continue ?? '');
    pages++;
  } while (cont);
  t.same(names, ['c', 'p1', 'p2', 'p3', 'p4', 'p5']);
  t.equal(pages, 3);

  r = await req(f, 'DELETE', '/api/v1/namespaces/default/services?labelSelector=group%3Dg', { propagationPolicy: 'Background' });
  t.equal(r.status, 200);
  t.equal((r.json.items as unknown[]).length, 6);
  t.equal((await f.store.list('Service', { namespace: 'default', labelSelector: 'group=g' })).items.length, 0, 'all gone');

  // foreground: the owner waits, marked, for its dependents (the garbage collector drains them)
  const owner = (await req(f, 'POST', '/api/v1/namespaces/default/configmaps', { metadata: { name: 'owner' } })).json as { metadata: { uid: string } };
  await req(f, 'POST', '/api/v1/namespaces/default/configmaps', { metadata: { name: 'dep', ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata.uid, blockOwnerDeletion: true }] } });
  r = await req(f, 'DELETE', '/api/v1/namespaces/default/configmaps/owner', { propagationPolicy: 'Foreground' });
  t.equal(r.status, 202);
  const marked = (await req(f, 'GET', '/api/v1/namespaces/default/configmaps/owner')).json as { metadata: { finalizers?: string[]; deletionTimestamp?: string } };
  t.same(marked.metadata.finalizers, ['foregroundDeletion']);
  t.ok(marked.metadata.deletionTimestamp);
  r = await req(f, 'DELETE', '/api/v1/namespaces/default/configmaps/dep?propagationPolicy=Sideways');
  t.equal(r.status, 400);
});

t.test('watch: resume, 410, Tables, bookmarks', async (t) => {
  const f = await setup(t, { historySize: 5 });
  const a = (await req(f, 'POST', '/api/v1/namespaces/default/services', svc('w1'))).json as { metadata: { resourceVersion: string } };
  await req(f, 'POST', '/api/v1/namespaces/default/services', svc('w2'));
  await req(f, 'DELETE', '/api/v1/namespaces/default/services/w2');
  // resume after w1's creation: w2 ADDED and DELETED replay
  const w = watchLines(`${f.url}/api/v1/namespaces/default/services?watch=true&resourceVersion=${a.metadata.resourceVersion}`);
  t.teardown(w.close);
  await waitFor(() => w.lines.length >= 2, { what: 'replayed events' });
  t.same(w.lines.map((l) => `${l.type} ${(l.object as { metadata: { name: string } }).metadata.name}`), ['ADDED w2', 'DELETED w2']);
  await req(f, 'POST', '/api/v1/namespaces/default/services', svc('w3'));
  await waitFor(() => w.lines.length >= 3, { what: 'a live event' });
  t.equal((w.lines[2].object as { metadata: { name: string } }).metadata.name, 'w3');

  for (let i = 0; i < 8; i++) await req(f, 'PATCH', '/api/v1/namespaces/default/services/w1', { metadata: { labels: { n: String(i) } } }, { 'Content-Type': 'application/merge-patch+json' });
  const old = watchLines(`${f.url}/api/v1/namespaces/default/services?watch=true&resourceVersion=${a.metadata.resourceVersion}`);
  t.teardown(old.close);
  await waitFor(() => old.ended(), { what: 'the expired watch to end' });
  t.equal(old.lines.length, 1);
  t.equal(old.lines[0].type, 'ERROR');
  t.match(old.lines[0].object, { kind: 'Status', status: 'Failure', reason: 'Expired', code: 410 });

  // Tables: headers on the first event only (kubectl get -w)
  const list = await req(f, 'GET', '/api/v1/namespaces/default/services', undefined, { Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' });
  t.equal(list.json.kind, 'Table');
  const tw = watchLines(`${f.url}/api/v1/namespaces/default/services?watch=true&resourceVersion=${(list.json.metadata as { resourceVersion: string }).resourceVersion}`, {
    Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json',
  });
  t.teardown(tw.close);
  await new Promise((r) => setTimeout(r, 50));
  await req(f, 'POST', '/api/v1/namespaces/default/services', svc('t1'));
  await req(f, 'DELETE', '/api/v1/namespaces/default/services/t1');
  await waitFor(() => tw.lines.length >= 2, { what: 'two table events' });
  const [e1, e2] = tw.lines.map((l) => l.object as { kind: string; columnDefinitions?: unknown[]; rows: { cells: unknown[] }[] });
  t.equal(e1.kind, 'Table');
  t.ok(e1.columnDefinitions?.length, 'the first event carries the columns');
  t.notOk(e2.columnDefinitions, 'later ones do not');
  t.equal(e1.rows[0].cells[0], 't1');
  t.equal(tw.lines[1].type, 'DELETED');

  // without a resourceVersion: current objects first; initial-events-end bookmark on request
  const fresh = watchLines(`${f.url}/api/v1/namespaces/default/services?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan`);
  t.teardown(fresh.close);
  await waitFor(() => fresh.lines.some((l) => l.type === 'BOOKMARK'), { what: 'the initial-events-end bookmark' });
  const names = fresh.lines.filter((l) => l.type === 'ADDED').map((l) => (l.object as { metadata: { name: string } }).metadata.name);
  t.same(names.sort(), ['w1', 'w3']);
  t.match(fresh.lines[fresh.lines.length - 1].object, { metadata: { annotations: { 'k8s.io/initial-events-end': 'true' } } });

  const timed = watchLines(`${f.url}/api/v1/namespaces/default/services?watch=true&timeoutSeconds=1`);
  await waitFor(() => timed.ended(), { what: 'timeoutSeconds to end the stream', timeoutMs: 3000 });
  t.pass('timeoutSeconds ends the stream');
});

t.test('pods/log (served by the node agent endpoint, through the API server)', async (t) => {
  let pki: Pki | undefined;
  const inproc = await inProcessApi(t, {
    dirPrefix: 'kubeloop-api-',
    server: async (dir) => {
      pki = await testPki(dir);
      return { agentTls: { ca: pki.ca, cert: pki.agentClientCert, key: pki.agentClientKey } };
    },
  });
  const f = { store: inproc.store, api: inproc.server, url: inproc.url, dir: inproc.dir, pki };
  // the node agent of node n1: its endpoint on 127.0.0.1, published in the Node's status as the kubelet's
  const endpoint = new AgentEndpoint({
    store: f.store,
    log: pino({ level: 'silent' }),
    address: '127.0.0.1',
    port: 0,
    tls: { cert: pki!.agentCert, key: pki!.agentKey, ca: pki!.ca },
    clientUser: AGENT_CLIENT_USER,
    stateDir: f.dir,
    execTarget: () => undefined,
  });
  await endpoint.start();
  t.teardown(() => endpoint.stop());
  await f.store.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' } });
  await f.store.mutate('Node', undefined, 'n1', (n) => {
    (n as { status?: unknown }).status = { addresses: [{ type: 'InternalIP', address: '127.0.0.1' }], daemonEndpoints: { kubeletEndpoint: { Port: endpoint.port } } };
  }, { subresource: 'status' });
  const pod = await f.store.create<Pod>({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'default' }, spec: { nodeName: 'n1', containers: [{ name: 'c', image: 'echo' }] } });
  const dir = join(f.dir, 'pods', `default_p_${pod.metadata.uid}`, 'c');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, '0.log'), 'first run\n');
  writeFileSync(join(dir, '1.log'), 'one\ntwo\nthree\n');
  let r = await req(f, 'GET', '/api/v1/namespaces/default/pods/p/log');
  t.equal(r.text, 'one\ntwo\nthree\n');
  t.match(r.type, /^text\/plain/);
  t.equal((await req(f, 'GET', '/api/v1/namespaces/default/pods/p/log?tailLines=1')).text, 'three\n');
  t.equal((await req(f, 'GET', '/api/v1/namespaces/default/pods/p/log?previous=true')).text, 'first run\n');
  t.equal((await req(f, 'GET', '/api/v1/namespaces/default/pods/p/log?limitBytes=5')).text, 'one\nt');
  t.match((await req(f, 'GET', '/api/v1/namespaces/default/pods/p/log?tailLines=1&timestamps=true')).text, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z three\n$/);
  r = await req(f, 'GET', '/api/v1/namespaces/default/pods/p/log?container=nope');
  t.equal(r.status, 400);
  t.equal(r.json.message, 'container nope is not valid for pod p');
  t.equal((await req(f, 'GET', '/api/v1/namespaces/default/pods/nope/log')).json.message, 'pods "nope" not found');

  // follow: what is appended arrives; the stream ends when the pod goes
  let got = '';
  let ended = false;
  const fr = http.get(`${f.url}/api/v1/namespaces/default/pods/p/log?follow=true&tailLines=0`, (res) => {
    res.setEncoding('utf8');
    res.on('data', (c: string) => (got += c));
    res.on('end', () => (ended = true));
  });
  t.teardown(() => fr.destroy());
  await new Promise((r) => setTimeout(r, 150));
  appendFileSync(join(dir, '1.log'), 'four\n');
  await waitFor(() => got === 'four\n', { what: 'the appended line', timeoutMs: 20_000 });
  await f.store.delete('Pod', 'default', 'p', { gracePeriodSeconds: 0 });
  await waitFor(() => ended, { what: 'the follow stream to end with the pod' });
  t.equal(got, 'four\n');
});

t.test('plain HTTP (the test mode): a bearer token guards it, and it is refused off loopback', async (t) => {
  const f = await setup(t, { token: 's3cret-token-0123456789' });
  let r = await req(f, 'GET', '/api/v1/namespaces');
  t.equal(r.status, 401);
  t.equal(r.json.reason, 'Unauthorized');
  r = await req(f, 'GET', '/api/v1/namespaces', undefined, { Authorization: 'Bearer s3cret-token-0123456788' });
  t.equal(r.status, 401, 'a token of the same length that differs');
  r = await req(f, 'GET', '/api/v1/namespaces', undefined, { Authorization: 'Bearer s3cret-token-0123456789' });
  t.equal(r.status, 200);
  t.match(kubeconfigYaml({ server: f.url, token: 's3cret-token-0123456789' }), /token: s3cret-token-0123456789/);

  const store = await createEmbeddedStore({});
  t.teardown(() => store.close());
  const open = new ApiServer({ store, informers: new InformerFactory(store), log: pino({ level: 'silent' }), address: '0.0.0.0', port: 0, stateDir: f.dir, insecurePlainHttp: true });
  await t.rejects(open.start(), /refusing to serve the Kubernetes API over plain HTTP on 0\.0\.0\.0:0/);
  const bare = new ApiServer({ store, informers: new InformerFactory(store), log: pino({ level: 'silent' }), address: '127.0.0.1', port: 0, stateDir: f.dir });
  await t.rejects(bare.start(), /needs TLS material/, 'neither TLS nor the explicit test mode');
});

t.test('@kubernetes/client-node 1.4 as a second client, over HTTPS with the client certificate', async (t) => {
  const f = await setup(t, { tls: true });
  const file = join(f.dir, 'kubeconfig');
  writeFileSync(file, kubeconfigYaml({ server: f.url, ca: f.pki!.ca, clientCert: f.pki!.clientCert, clientKey: f.pki!.clientKey }), { mode: 0o600 });
  t.match(f.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(file);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const apps = kc.makeApiClient(k8s.AppsV1Api);

  const created = await core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'from-node' }, spec: { selector: { app: 'x' }, ports: [{ port: 81, targetPort: 8080 }] } } });
  t.equal(created.kind, 'Service', 'kind and apiVersion come from the URL');
  t.match(created.spec?.clusterIP, /^127\./);
  const list = await core.listNamespacedService({ namespace: 'default' });
  t.ok(list.items.some((s) => s.metadata?.name === 'from-node'));
  try {
    await core.readNamespacedService({ name: 'nope', namespace: 'default' });
    t.fail('should throw');
  } catch (e) {
    const err = e as { code?: number; body?: string };
    t.equal(err.code, 404);
    t.equal((JSON.parse(err.body ?? '{}') as { reason?: string }).reason, 'NotFound');
  }

  await apps.createNamespacedDeployment({
    namespace: 'default',
    body: { metadata: { name: 'd' }, spec: { selector: { matchLabels: { app: 'd' } }, template: { metadata: { labels: { app: 'd' } }, spec: { containers: [{ name: 'c', image: 'echo' }] } } } },
  });
  const scale = await apps.patchNamespacedDeploymentScale({ name: 'd', namespace: 'default', body: { spec: { replicas: 3 } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
  t.equal(scale.spec?.replicas, 3);
  t.equal(scale.status?.selector, 'app=d');

  const events: string[] = [];
  const w = await new k8s.Watch(kc).watch('/api/v1/namespaces/default/configmaps', {}, (type, o: { metadata: { name: string } }) => events.push(`${type} ${o.metadata.name}`), () => undefined);
  t.teardown(() => w.abort());
  await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'cm1' }, data: { a: 'b' } } });
  await core.deleteNamespacedConfigMap({ name: 'cm1', namespace: 'default' });
  await waitFor(() => events.length >= 2, { what: 'watch events through client-node' });
  t.same(events, ['ADDED cm1', 'DELETED cm1']);
});
