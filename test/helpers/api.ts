/**
 * The one way tests talk to a running kubeloop's API: read its kubeconfig (the daemon writes
 * it into the state dir) and use exactly what it says — the server URL, the cluster CA, the
 * client certificate/key or token — as kubectl does. Works for `https://` (the default) and for
 * the plain-HTTP test mode alike.
 *
 *   const api = await daemonApi(daemon);               // a RunningDaemon, or { stateDir }
 *   const r = await api.request('GET', '/api/v1/namespaces/default/pods');
 *   r.status; r.json<PodList>();
 *   await api.request('POST', '/api/v1/namespaces/default/configmaps', { body: cm });
 *   const k = await api.kubectl('get', 'pods', '-o', 'name');   // { code, stdout, stderr }
 *   https.request({ ...api.tls, host, port, path })     // for streams (watch, logs -f)
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pino from 'pino';
import { parse as parseYaml } from 'yaml';
import type { Service } from '../../src/api/types.js';
import { type Pki, ensurePki } from '../../src/cli/pki.js';
import { ApiServer, type ApiServerOptions } from '../../src/server/index.js';
import { type ClosableStore, type EmbeddedStoreOptions, createEmbeddedStore } from '../../src/store/embedded.js';
import { InformerFactory } from '../../src/store/informer.js';

export interface ApiReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  json<T = unknown>(): T;
}

export interface RequestOptions {
  /** an object is sent as JSON; a string or Buffer as is */
  body?: unknown;
  headers?: Record<string, string>;
  /** default 15 s */
  timeoutMs?: number;
  /** send no credential (no client certificate, no token): what a stranger gets */
  anonymous?: boolean;
}

export interface ApiClient {
  /** the kubeconfig's server, e.g. `https://127.0.0.1:43211` */
  server: string;
  /** path of the kubeconfig file */
  kubeconfig: string;
  /** what `https.request` needs to trust the server and present the credential (empty for http) */
  tls: { ca?: string; cert?: string; key?: string };
  /** the kubeconfig's bearer token, if it has one */
  token?: string;
  request(method: string, path: string, opts?: RequestOptions): Promise<ApiReply>;
  /** `kubectl --kubeconfig <it> --cache-dir <next to it>/kubectl-cache <args>`; never rejects */
  kubectl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
}

interface Kubeconfig {
  clusters?: Array<{ name: string; cluster: { server: string; 'certificate-authority-data'?: string } }>;
  users?: Array<{ name: string; user: { 'client-certificate-data'?: string; 'client-key-data'?: string; token?: string } }>;
  contexts?: Array<{ name: string; context: { cluster: string; user: string } }>;
  'current-context'?: string;
}

const b64 = (s: string | undefined): string | undefined => (s ? Buffer.from(s, 'base64').toString('utf8') : undefined);

/** A client for the API the kubeconfig at `file` describes (its current context). */
export async function apiClient(file: string, opts: { kubectlCacheDir?: string } = {}): Promise<ApiClient> {
  const cfg = parseYaml(await readFile(file, 'utf8')) as Kubeconfig;
  const ctx = cfg.contexts?.find((c) => c.name === cfg['current-context'])?.context;
  const cluster = cfg.clusters?.find((c) => c.name === ctx?.cluster)?.cluster;
  const user = cfg.users?.find((u) => u.name === ctx?.user)?.user ?? {};
  if (!cluster?.server) throw new Error(`${file}: no server in the current context`);
  const server = cluster.server;
  const tls = { ca: b64(cluster['certificate-authority-data']), cert: b64(user['client-certificate-data']), key: b64(user['client-key-data']) };
  const token = user.token;
  const cacheDir = opts.kubectlCacheDir ?? join(dirname(file), 'kubectl-cache');
  const secure = server.startsWith('https:');

  const request = (method: string, path: string, o: RequestOptions = {}): Promise<ApiReply> =>
    new Promise((resolve, reject) => {
      const url = new URL(path, server);
      const body = o.body === undefined ? undefined : typeof o.body === 'string' || Buffer.isBuffer(o.body) ? o.body : JSON.stringify(o.body);
      const headers: Record<string, string> = {
        ...(body !== undefined && !Buffer.isBuffer(o.body) && typeof o.body !== 'string' ? { 'content-type': 'application/json' } : {}),
        // Node's client frames a DELETE body with neither Content-Length nor chunking, so the
        // server would read it as the next request: say its length, as kubectl does
        ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}),
        ...(token && !o.anonymous ? { authorization: `Bearer ${token}` } : {}),
        ...o.headers,
      };
      const common = { method, host: url.hostname.replace(/^\[|\]$/g, ''), port: url.port, path: url.pathname + url.search, headers, agent: false as const, timeout: o.timeoutMs ?? 15_000 };
      const onRes = (res: http.IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, json: <T>() => JSON.parse(text) as T });
        });
        res.on('error', reject);
      };
      const req = secure
        ? https.request({ ...common, ca: tls.ca, ...(o.anonymous ? {} : { cert: tls.cert, key: tls.key }) }, onRes)
        : http.request(common, onRes);
      req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
      req.on('error', reject);
      req.end(body);
    });

  const kubectl = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      execFile('kubectl', ['--kubeconfig', file, '--cache-dir', cacheDir, ...args], { timeout: 30_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0, stdout, stderr }),
      );
    });

  return { server, kubeconfig: file, tls, token, request, kubectl };
}

/** The client for a daemon started by `startDaemon` (or any `{ stateDir }` holding a kubeconfig). */
export function daemonApi(d: { stateDir: string }, opts: { kubectlCacheDir?: string } = {}): Promise<ApiClient> {
  return apiClient(join(d.stateDir, 'kubeconfig'), opts);
}

/**
 * The certificates a `kubeloop up` would make, in `<dir>/pki`, for an API server a test builds
 * in process: `new ApiServer({ ..., tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca } })`
 * and `kubeconfigYaml({ server: api.url, ca: pki.ca, clientCert: pki.clientCert, clientKey: pki.clientKey })`.
 */
export function testPki(dir: string, hosts: readonly string[] = ['127.0.0.1', 'localhost', '::1']): Promise<Pki> {
  return ensurePki({ dir: join(dir, 'pki'), hosts, log: pino({ level: 'silent' }) });
}

export interface InProcessApi {
  store: ClosableStore;
  server: ApiServer;
  /** e.g. `http://127.0.0.1:43211` */
  url: string;
  port: number;
  /** the server's state dir */
  dir: string;
}

/**
 * An ApiServer in this process over a fresh embedded store, listening on 127.0.0.1 (plain HTTP,
 * the loopback test mode, unless `server` passes `tls`), its state dir under `dirPrefix`. The
 * server, informers, store and dir are ended by `t`'s teardown.
 */
export async function inProcessApi(
  t: { teardown(fn: () => unknown): void },
  o: { dirPrefix: string; store?: EmbeddedStoreOptions; server?: (dir: string) => Partial<ApiServerOptions> | Promise<Partial<ApiServerOptions>> },
): Promise<InProcessApi> {
  const store = await createEmbeddedStore(o.store ?? {});
  const informers = new InformerFactory(store);
  const dir = mkdtempSync(join(tmpdir(), o.dirPrefix));
  const extra = o.server ? await o.server(dir) : {};
  const server = new ApiServer({
    store,
    informers,
    log: pino({ level: 'silent' }),
    address: '127.0.0.1',
    port: 0,
    stateDir: dir,
    ...(extra.tls ? {} : { insecurePlainHttp: true }),
    ...extra,
  });
  t.teardown(async () => {
    await server.stop();
    informers.stop();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await server.start();
  return { store, server, url: server.url, port: Number(new URL(server.url).port), dir };
}

/** `method path` (an object body as JSON) that must succeed: its JSON; any status >= 300 throws with the status and body */
export async function mustRequest<T>(api: ApiClient, method: string, path: string, body?: unknown): Promise<T> {
  const r = await api.request(method, path, { body });
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.body}`);
  return r.json<T>();
}

/** a ClusterIP Service `name` selecting pods labelled `app: <name>`, port 80 to 8080 */
export function plainService(name: string): Service {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name }, spec: { selector: { app: name }, ports: [{ port: 80, targetPort: 8080 }] } };
}
