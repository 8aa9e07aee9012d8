/**
 * `services/proxy` and `pods/proxy`, as the apiserver serves them (`kubectl proxy`, the URLs
 * `kubectl cluster-info` prints):
 *
 *     /api/v1/namespaces/{ns}/services/[https:]{name}[:{port name or number}]/proxy[/{path}]
 *     /api/v1/namespaces/{ns}/pods/[https:]{name}[:{port}]/proxy[/{path}]
 *
 * The request (method, headers but the credential, body, query) is streamed to one ready
 * endpoint of the Service (its Endpoints, on the target port the port name resolves to) or to
 * the pod's IP, and the reply streamed back. Never an open proxy: the address comes from the
 * cluster's own objects and must be a loopback address (every pod and endpoint address of this
 * cluster is one); nothing in the URL names a host. WebSocket upgrades through the proxy are not
 * forwarded (404 as for any other upgrade path).
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { ApiError, badRequest } from '../api/errors.js';
import type { EndpointPort, Endpoints, Pod, Service } from '../api/types.js';
import type { Store } from '../store/types.js';
import { isLoopback } from '../util/cidr.js';
import { decodeSegment } from './route.js';

const PROXY_PATH = /^\/api\/v1\/namespaces\/([^/]+)\/(services|pods)\/([^/]+)\/proxy(\/.*)?$/;

/** how long the backend may take to send its response headers before the reply is a 503 */
export const PROXY_RESPONSE_TIMEOUT_MS = 30_000;

export interface ProxyTarget {
  scheme: 'http' | 'https';
  host: string;
  port: number;
  /** the path on the backend, `/` at least, without the query */
  path: string;
}

/** The parts of a proxy path, or undefined when `path` (raw, undecoded) is not one. */
export function parseProxyPath(path: string): { namespace: string; resource: 'services' | 'pods'; scheme: string; name: string; port: string; rest: string } | undefined {
  const m = PROXY_PATH.exec(path);
  if (!m) return undefined;
  const id = decodeSegment(m[3]).split(':');
  // name, name:port, scheme:name:port (scheme: http or https, as upstream's SplitSchemeNamePort)
  let scheme = '';
  let name: string;
  let port = '';
  if (id.length === 1) [name] = id;
  else if (id.length === 2) [name, port] = id;
  else if (id.length === 3) [scheme, name, port] = id;
  else throw badRequest(`invalid ${m[2]} proxy name ${JSON.stringify(m[3])}: use name, name:port or scheme:name:port`);
  if (scheme !== '' && scheme !== 'http' && scheme !== 'https') throw badRequest(`unsupported proxy scheme ${JSON.stringify(scheme)}: use http or https`);
  if (!name) throw badRequest(`the ${m[2]} proxy path names no ${m[2] === 'pods' ? 'pod' : 'service'}`);
  return { namespace: decodeSegment(m[1]), resource: m[2] as 'services' | 'pods', scheme, name, port, rest: m[4] ?? '/' };
}

const unavailable = (message: string): ApiError => new ApiError('ServiceUnavailable', message);

/** Upstream's ResourceLocation for a Service: a ready endpoint address and the port the service port resolves to. */
async function serviceTarget(store: Store, ns: string, name: string, port: string): Promise<{ host: string; port: number }> {
  const svc = await store.get<Service>('Service', ns, name);
  const ports = svc.spec?.ports ?? [];
  const sp = port === '' ? (ports.length === 1 ? ports[0] : ports.find((p) => !p.name)) : ports.find((p) => p.name === port || String(p.port) === port);
  if (!sp) {
    const names = ports.map((p) => p.name || String(p.port)).join(', ');
    throw unavailable(`no service port ${JSON.stringify(port)} found for service "${name}": name one of its ports (${names}) in the path, e.g. services/${name}:${ports[0]?.name || ports[0]?.port}/proxy`);
  }
  if ((sp.protocol ?? 'TCP') !== 'TCP') {
    throw unavailable(`port ${sp.name || sp.port} of service "${name}" is ${sp.protocol}: the proxy speaks HTTP over TCP; name a TCP port of the service`);
  }
  const ep = await store.tryGet<Endpoints>('Endpoints', ns, name);
  const candidates: { host: string; port: number }[] = [];
  for (const subset of ep?.subsets ?? []) {
    const epPort = (subset.ports ?? []).find((p: EndpointPort) => (p.name ?? '') === (sp.name ?? '') && (p.protocol ?? 'TCP') === 'TCP');
    if (!epPort) continue;
    for (const a of subset.addresses ?? []) candidates.push({ host: a.ip, port: epPort.port });
  }
  if (!candidates.length) throw unavailable(`no endpoints available for service "${name}"`);
  return candidates[Math.floor(Math.random() * candidates.length)];
}

/** Upstream's ResourceLocation for a pod: its IP, on the port given (a number, or a container port's name), 80 by default. */
async function podTarget(store: Store, ns: string, name: string, port: string): Promise<{ host: string; port: number }> {
  const pod = await store.get<Pod>('Pod', ns, name);
  const ip = pod.status?.podIP;
  if (!ip) throw unavailable(`pod "${name}" has no IP yet: wait until it is Running (kubectl wait --for=condition=Ready pod/${name})`);
  let n = 80;
  if (port !== '') {
    if (/^\d+$/.test(port)) n = Number(port);
    else {
      const named = (pod.spec?.containers ?? []).flatMap((c) => c.ports ?? []).find((p) => p.name === port);
      if (!named) throw badRequest(`pod "${name}" has no container port named ${JSON.stringify(port)}`);
      n = named.containerPort;
    }
  }
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw badRequest(`invalid port ${JSON.stringify(port)} in the pod proxy path: a number 1-65535 or a container port's name`);
  return { host: ip, port: n };
}

/** the request headers sent on: the API's credential and hop-by-hop headers stay here */
const DROP = new Set(['authorization', 'connection', 'keep-alive', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);

/**
 * Serves a proxy request; false when `path` is not a proxy path. Errors before the backend
 * answers are thrown as ApiErrors (the caller sends the Status); after, the reply is cut.
 */
export async function serveProxy(req: IncomingMessage, res: ServerResponse, store: Store, path: string, query: string): Promise<boolean> {
  const p = parseProxyPath(path);
  if (!p) return false;
  const at = p.resource === 'services' ? await serviceTarget(store, p.namespace, p.name, p.port) : await podTarget(store, p.namespace, p.name, p.port);
  if (!isLoopback(at.host)) {
    throw new ApiError('Forbidden', `${p.resource}/${p.name} resolves to ${at.host}, not a loopback address of this cluster: kubeloop proxies only to its own pods`);
  }
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !DROP.has(k)) headers[k] = v;
  headers.host = `${at.host.includes(':') ? `[${at.host}]` : at.host}:${at.port}`;
  const secure = p.scheme === 'https';
  const opts = { host: at.host, port: at.port, method: req.method, path: p.rest + query, headers, agent: false as const };
  await new Promise<void>((resolve, reject) => {
    // the backend is one of the cluster's own pods: its certificate is not checked (as upstream's proxy transport)
    const out = secure ? https.request({ ...opts, rejectUnauthorized: false }) : http.request(opts);
    const timer = setTimeout(() => out.destroy(new Error(`no response within ${PROXY_RESPONSE_TIMEOUT_MS / 1000} s`)), PROXY_RESPONSE_TIMEOUT_MS);
    out.on('response', (up) => {
      clearTimeout(timer);
      const h = { ...up.headers };
      for (const k of ['connection', 'keep-alive', 'transfer-encoding']) delete h[k];
      res.writeHead(up.statusCode ?? 502, h);
      up.pipe(res);
      up.on('end', resolve);
      up.on('error', () => {
        res.destroy();
        resolve();
      });
    });
    out.on('error', (err) => {
      clearTimeout(timer);
      if (res.headersSent) {
        res.destroy();
        resolve();
      } else {
        reject(unavailable(`error trying to reach ${p.resource === 'services' ? 'service' : 'pod'}: ${err.message}`));
      }
    });
    // the client left (or the reply is done): the backend connection goes too
    res.on('close', () => {
      clearTimeout(timer);
      out.destroy();
      resolve();
    });
    req.pipe(out);
  });
  return true;
}
