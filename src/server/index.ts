/**
 * kubeloop's kube-apiserver-compatible HTTP API, for the real kubectl and client libraries:
 * discovery (legacy and aggregated), OpenAPI v3, the REST verbs over the store, watches,
 * Tables, patches, server-side apply, and the log / status / scale subresources.
 *
 * HTTPS by default: the serving certificate and the cluster CA come from the caller (cli/pki.ts),
 * and every request needs a client certificate signed by that CA or the bearer token (auth.ts).
 * Plain HTTP exists only for tests, on loopback, and says so loudly.
 */
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { isIP, createServer as createNetServer } from 'node:net';
import type { Server as NetServer, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { Service } from '../api/types.js';
import type { InformerFactory } from '../store/informer.js';
import type { Store } from '../store/types.js';
import { API_HANDSHAKE_TIMEOUT_MS, type ConnectionStats, DEFAULT_FD_BUDGET, apiUnauthenticatedCap } from '../util/fd-budget.js';
import { AgentForwarder, type AgentClientTls } from './agent-forward.js';
import { authenticate, checkAuthenticated, checkHost, checkOrigin, hostOf } from './auth.js';
import {
  AGGREGATED_V2,
  AGGREGATED_V2BETA1,
  VERSION_INFO,
  aggregatedList,
  aggregatedVersion,
  apiGroupDoc,
  apiGroupList,
  apiVersions,
  resourceList,
} from './discovery.js';
import { Handlers } from './handlers.js';
import { type Filter, type Handler, type RequestContext, bodyLimit, chain, recoverPanics, refuseWith, requestContext } from './filters.js';
import { MAX_BODY, sendError, sendJson, sendStatus } from './http.js';
import { FieldManager } from './managed-fields.js';
import { OpenApi } from './openapi.js';
import { StrategicMerge } from './patch/strategic.js';
import { MetricsClient } from './metrics.js';
import { findResource } from './resources.js';
import { serveProxy } from './proxy-subresource.js';
import { parseResourcePath, requestPath } from './route.js';
import { afterStartup } from '../util/after-startup.js';
import { Schemas } from './schema.js';
import { SliceView } from './slices.js';
import { type StatusBody, failure, pathNotFound, toStatus } from './status.js';

export { kubeconfigYaml } from './kubeconfig.js';

export interface ApiServerOptions {
  store: Store;
  informers: InformerFactory;
  log: Logger;
  /** default '127.0.0.1' */
  address: string;
  /** default 6443; 0 = ephemeral (tests) */
  port: number;
  /**
   * more addresses served on the same port, with the same TLS and credentials (a node IP other
   * machines reach, beside 127.0.0.1); not with `insecurePlainHttp`
   */
  extraAddresses?: readonly string[];
  /** PEMs: the serving certificate and key, and the CA client certificates must be signed by */
  tls?: { cert: string; key: string; ca: string };
  /**
   * No TLS (tests only): refused unless `address` is loopback; without a token nothing is
   * authenticated. Exactly one of `tls` and `insecurePlainHttp` must be given.
   */
  insecurePlainHttp?: boolean;
  /** bearer token accepted besides client certificates (compared in constant time) */
  token?: string;
  /**
   * names and addresses clients may put in `Host` (the certificate's SANs); default: loopback
   * names and `address`
   */
  hosts?: readonly string[];
  /** open connections at most, watches and log streams included (default: util/fd-budget.ts); more are closed at accept */
  maxConnections?: number;
  /**
   * a client must finish its TLS handshake, and send each request's headers, within this long
   * (default util/fd-budget.ts); the whole request within six times it. Replies (watches,
   * `logs -f`) are not limited.
   */
  handshakeTimeoutMs?: number;
  /** no longer read: pod logs, exec, attach and port-forward are the node agents' (agent-forward.ts) */
  stateDir?: string;
  /** the API server's credential towards the node agent endpoints, and the CA their certificates are signed by */
  agentTls?: AgentClientTls;
}

export function isLoopback(address: string): boolean {
  if (address === 'localhost' || address === '::1') return true;
  return isIP(address) === 4 && address.startsWith('127.');
}

/** a connection's address pair: the same for a TCP socket and the TLS socket over it */
const peerKey = (s: Socket): string => `${s.remoteAddress}|${s.remotePort}|${s.localAddress}|${s.localPort}`;

const isUnspecified = (address: string): boolean => address === '0.0.0.0' || address === '::';

export class ApiServer {
  readonly #o: ApiServerOptions;
  readonly #log: Logger;
  readonly #schemas = new Schemas();
  readonly #openapi: OpenApi;
  readonly #handlers: Handlers;
  readonly #agents: AgentForwarder;
  /** the Metrics API's client of the node agents (also what the HorizontalPodAutoscaler controller reads) */
  readonly metrics: MetricsClient;
  readonly #sockets = new Set<Socket>();
  readonly #connections = { open: 0, rejected: 0, cap: DEFAULT_FD_BUDGET.apiConnections };
  /** accepted TCP connections not yet authenticated, oldest first (see util/fd-budget.ts) */
  readonly #unauthenticated = new Set<Socket>();
  /** the TCP socket of a connection by its address pair (a TLS socket wraps it) */
  readonly #byPeer = new Map<string, Socket>();
  readonly #hosts: ReadonlySet<string>;
  #server: Server | undefined;
  /** listeners of `extraAddresses`: they hand each connection to #server */
  readonly #extra: NetServer[] = [];
  #url = '';
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #chain: Handler | undefined;

  constructor(o: ApiServerOptions) {
    this.#o = { ...o, address: o.address || '127.0.0.1', port: o.port ?? 6443 };
    this.#log = o.log.child({ component: 'api' });
    this.#hosts = new Set(['localhost', '127.0.0.1', '::1', this.#o.address, ...(o.extraAddresses ?? []), ...(o.hosts ?? [])].map((h) => h.toLowerCase()));
    this.#openapi = new OpenApi(this.#schemas);
    this.#agents = new AgentForwarder({ store: o.store, tls: o.agentTls });
    this.metrics = new MetricsClient({ store: o.store, tls: o.agentTls });
    this.#handlers = new Handlers({
      store: o.store,
      schemas: this.#schemas,
      fields: new FieldManager(this.#schemas),
      smp: new StrategicMerge(this.#schemas),
      slices: new SliceView(o.store, o.informers.for<Service>('Service')),
      agents: this.#agents,
      metrics: this.metrics,
      log: this.#log,
    });
  }

  /** `https://127.0.0.1:6443`, once started (an unspecified address is reached on loopback) */
  get url(): string {
    return this.#url;
  }

  start(): Promise<void> {
    this.#starting ??= this.#start();
    return this.#starting;
  }

  async #start(): Promise<void> {
    const { address, port, tls, insecurePlainHttp } = this.#o;
    const extraAddresses = this.#o.extraAddresses ?? [];
    if (!tls && !insecurePlainHttp) throw new Error('the API needs TLS material (tls) or the explicit plain-HTTP test mode');
    if (tls && insecurePlainHttp) throw new Error('the API serves either TLS or plain HTTP, not both');
    const offLoopback = [address, ...extraAddresses].find((a) => !isLoopback(a));
    if (insecurePlainHttp && offLoopback !== undefined) {
      throw new Error(`refusing to serve the Kubernetes API over plain HTTP on ${offLoopback}:${port}: plain HTTP is for tests on loopback only; drop --insecure-plain-http-loopback (HTTPS with the generated kubeconfig works on any address)`);
    }
    // the kinds' field schemas (~290 modules of @kubernetes/client-node) load after start-up, or
    // on the first request, which waits for them (#route); then the field descriptions
    // (descriptions.ts): documents served before they are in carry none, and the next
    // /openapi/v3 root hands out the new hashes
    afterStartup(() => void this.#schemas.load().then(() => this.#openapi.withDescriptions()));
    await this.#o.informers.for<Service>('Service').start();
    const handler = (req: IncomingMessage, res: ServerResponse): void => void this.#serve(req, res);
    // client certificates are asked for but checked per request, so a missing or foreign one
    // gets a 401 Status instead of a TLS alert; `ca` alone decides which certificates verify
    // the timeouts bound receiving a request, never streaming the reply; Node checks them every
    // connectionsCheckingInterval
    const t = this.#o.handshakeTimeoutMs ?? API_HANDSHAKE_TIMEOUT_MS;
    const timeouts = { headersTimeout: t, requestTimeout: 6 * t, connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(t / 4))) };
    const server: Server = tls
      ? createHttpsServer({ cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2', handshakeTimeout: t, ...timeouts }, handler)
      : createServer(timeouts, handler);
    if (insecurePlainHttp) this.#log.warn({ address, port }, 'INSECURE: the Kubernetes API serves plain HTTP (test mode); anyone on this machine can use it unless a token is set');
    server.on(tls ? 'secureConnection' : 'connection', (s: Socket) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
    server.keepAliveTimeout = 30_000;
    // a client that half-closes after its request (HTTP/1.0 style, `nc`, scripts) still gets the
    // answer: without this Node ends the socket at the client's FIN, losing any reply that takes
    // more than one turn of the event loop (every write waits for the store's fsync)
    (server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => void this.#upgrade(req, socket, head));
    this.#capConnections(server, !!tls, t);
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        reject(
          new Error(
            err.code === 'EADDRINUSE'
              ? `cannot serve the Kubernetes API on ${address}:${port}: the address is in use (another kubeloop?) — pass --api-addr with a free port`
              : `cannot serve the Kubernetes API on ${address}:${port}: ${err.message}`,
          ),
        );
      });
      server.listen({ host: address, port }, () => resolve());
    });
    server.on('error', (err) => this.#log.error({ err }, 'API server error'));
    this.#server = server;
    const a = server.address();
    const actualPort = typeof a === 'object' && a ? a.port : port;
    const reach = isUnspecified(address) ? (address === '::' ? '::1' : '127.0.0.1') : address;
    const host = reach.includes(':') ? `[${reach}]` : reach;
    this.#url = `${tls ? 'https' : 'http'}://${host}:${actualPort}`;
    for (const extra of extraAddresses) await this.#listenAlso(server, extra, actualPort);
    this.#log.info({ url: this.#url, ...(extraAddresses.length ? { also: extraAddresses } : {}) }, 'Kubernetes API listening');
  }

  /**
   * Accepts on `address:port` too and hands each connection to `server` (its TLS, timeouts,
   * credentials and connection cap apply: #capConnections counts the 'connection' event).
   */
  async #listenAlso(server: Server, address: string, port: number): Promise<void> {
    const c = this.#connections;
    const extra = createNetServer((sock) => {
      if (c.open >= c.cap) {
        c.rejected++;
        sock.destroy();
        return;
      }
      server.emit('connection', sock);
    });
    await new Promise<void>((resolve, reject) => {
      extra.once('error', (err: NodeJS.ErrnoException) => reject(new Error(`cannot serve the Kubernetes API on ${address}:${port} too: ${err.code === 'EADDRINUSE' ? 'the address is in use' : err.message}`)));
      extra.listen({ host: address, port }, () => resolve());
    });
    extra.on('error', (err) => this.#log.error({ err, address }, 'API listener error'));
    this.#extra.push(extra);
  }

  /** connections open now (TCP, before any TLS handshake), refused at the cap so far, and the cap */
  connectionStats(): ConnectionStats {
    return { ...this.#connections };
  }

  /**
   * `maxConnections`: Node closes a connection over it right after accept and emits 'drop'.
   * Within it, connections not yet authenticated get apiUnauthenticatedCap(cap) slots: a new
   * one over that closes the oldest of them (a client that can authenticate does so within
   * milliseconds of connecting), so they never hold the slots authenticated clients need. One
   * still unauthenticated `deadlineMs` after accept is closed (Node's headersTimeout does not
   * cover a connection that never starts a request).
   */
  #capConnections(server: Server, tls: boolean, deadlineMs: number): void {
    const c = this.#connections;
    c.cap = this.#o.maxConnections ?? DEFAULT_FD_BUDGET.apiConnections;
    server.maxConnections = c.cap;
    const unauthenticatedCap = apiUnauthenticatedCap(c.cap);
    server.on('connection', (s: Socket) => {
      c.open++;
      const peer = peerKey(s);
      this.#byPeer.set(peer, s);
      const deadline = setTimeout(() => this.#unauthenticated.has(s) && s.destroy(), deadlineMs);
      deadline.unref();
      s.once('close', () => {
        clearTimeout(deadline);
        c.open--;
        this.#unauthenticated.delete(s);
        if (this.#byPeer.get(peer) === s) this.#byPeer.delete(peer);
      });
      if (this.#unauthenticated.size >= unauthenticatedCap) {
        const [oldest] = this.#unauthenticated;
        this.#unauthenticated.delete(oldest);
        oldest.destroy();
        rejected();
      }
      this.#unauthenticated.add(s);
    });
    if (tls) server.on('secureConnection', (s: TLSSocket) => s.authorized && this.#authenticated(s));
    let warned = 0;
    const rejected = (): void => {
      c.rejected++;
      // at most a line a minute: a flood of connections must not become a flood of log lines
      if (Date.now() - warned > 60_000) {
        warned = Date.now();
        this.#log.warn({ cap: c.cap, unauthenticatedCap, rejected: c.rejected }, `the API is at its cap of ${c.cap} connections, or of ${unauthenticatedCap} not yet authenticated: connections are closed (raise --api-max-connections if the clients are legitimate)`);
      }
    };
    server.on('drop', rejected);
  }

  /** the connection of `s` holds a verified client certificate or sent an accepted credential */
  #authenticated(s: Socket): void {
    const raw = this.#byPeer.get(peerKey(s));
    if (raw) this.#unauthenticated.delete(raw);
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      const server = this.#server;
      if (!server) return;
      for (const e of this.#extra.splice(0)) e.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of this.#sockets) s.destroy();
      });
    })();
    return this.#stopping;
  }

  /**
   * The request filters, outermost first (filters.ts). The authentication slot holds auth.ts's
   * checks: Host (DNS rebinding), Origin (no CORS), then the credential. No authorization filter
   * yet: every authenticated user may do everything, as system:masters.
   */
  #filters(): Filter[] {
    const credentials = { token: this.#o.token, required: !!this.#o.tls || !!this.#o.token };
    return [
      recoverPanics(this.#log),
      bodyLimit(MAX_BODY),
      refuseWith((c) => checkHost(c.req, this.#hosts) ?? checkOrigin(c.req) ?? checkAuthenticated(c.req, credentials, c.target), this.#log),
      async (c, next) => {
        if (!credentials.required || authenticate(c.req, credentials)) this.#authenticated(c.req.socket);
        return next(c);
      },
    ];
  }

  #serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.#chain ??= chain(this.#filters(), (c) => this.#route(c));
    return this.#chain(requestContext(req, res));
  }

  /** The handler at the end of the chain: routes on the path as sent (route.ts), never a normalised one. */
  async #route(c: RequestContext): Promise<void> {
    const { req, res } = c;
    this.#log.trace({ method: req.method, path: c.target }, 'request');
    const path = requestPath(c.target);
    await this.#schemas.load();
    if (this.#serveFixed(req, res, path, c.query)) return;
    if (path.includes('/proxy')) {
      try {
        const raw = req.url ?? '';
        const q = raw.indexOf('?');
        if (await serveProxy(req, res, this.#o.store, path, q >= 0 ? raw.slice(q) : '')) return;
      } catch (err) {
        if (res.headersSent) res.destroy();
        else sendError(res, err);
        return;
      }
    }
    const route = parseResourcePath(path);
    const resource = route && findResource(route.group, route.version, route.resource);
    if (!route || !resource) {
      sendStatus(res, pathNotFound());
      return;
    }
    try {
      await this.#handlers.handle({ req, res, query: c.query, route, resource, user: () => authenticate(req, { token: this.#o.token }) });
    } catch (err) {
      if (res.headersSent) {
        this.#log.debug({ err }, 'request failed after the reply started');
        res.end();
        return;
      }
      const st = sendError(res, err, { resource: resource.info.plural, group: resource.info.group });
      if (st.code >= 500) this.#log.error({ err, method: req.method, path: c.target }, 'request failed');
      else this.#log.trace({ code: st.code, reason: st.reason, method: req.method, path: c.target }, st.message ?? '');
    }
  }

  /**
   * An upgrade (WebSocket) request: authenticated as any request (Host, credential; an Origin
   * only when it is the API's own, as WebSocket clients such as the Python client send it), then
   * `pods/exec`, `attach` and `portforward` go to the pod's node agent; anything else is refused.
   */
  async #upgrade(req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    socket.on('error', () => {});
    const refuse = (st: StatusBody): void => {
      const body = JSON.stringify(st);
      socket.end(`HTTP/1.1 ${st.code} ${st.reason ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    };
    try {
      const raw = req.url ?? '/';
      const q = raw.indexOf('?');
      const target = q >= 0 ? raw.slice(0, q) : raw;
      const query = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : '');
      const credentials = { token: this.#o.token, required: !!this.#o.tls || !!this.#o.token };
      const origin = req.headers.origin;
      const sameOrigin = origin !== undefined && this.#hosts.has(hostOf(origin.replace(/^[a-z]+:\/\//i, '').split('/')[0] ?? ''));
      const refused = checkHost(req, this.#hosts) ?? (sameOrigin ? undefined : checkOrigin(req)) ?? checkAuthenticated(req, credentials, target);
      if (refused) return refuse(refused);
      this.#authenticated(req.socket);
      const route = parseResourcePath(requestPath(target));
      const sub = route?.subresource;
      if (!route || route.group !== '' || route.resource !== 'pods' || !route.name || (sub !== 'exec' && sub !== 'attach' && sub !== 'portforward')) {
        return refuse(pathNotFound());
      }
      await this.#agents.upgrade(req, socket, head, sub, route.namespace ?? 'default', route.name, query);
    } catch (err) {
      const st = toStatus(err);
      if (st.code >= 500) this.#log.warn({ err, path: req.url }, 'stream not forwarded');
      refuse(st);
    }
  }

  /** Discovery, version, health and OpenAPI; false when the path is not one of those. */
  #serveFixed(req: IncomingMessage, res: ServerResponse, pathname: string, query: URLSearchParams): boolean {
    // `//` anywhere matches no route (route.ts), here too: `//version`, `/apis//apps`, `/api//`
    if (pathname.includes('//')) return false;
    const p = pathname.replace(/\/+$/, '') || '/';
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const accept = req.headers.accept;
    switch (p) {
      case '/version':
        sendJson(res, 200, VERSION_INFO);
        return true;
      case '/healthz':
      case '/livez':
      case '/readyz':
        sendJson(res, 200, 'ok', 'text/plain; charset=utf-8');
        return true;
      case '/api':
      case '/apis': {
        const agg = aggregatedVersion(accept);
        if (agg) {
          sendJson(res, 200, aggregatedList(p === '/api', agg), agg === 'v2' ? AGGREGATED_V2 : AGGREGATED_V2BETA1, { Vary: 'Accept' });
        } else {
          sendJson(res, 200, p === '/api' ? apiVersions(this.#url.replace(/^https?:\/\//, '')) : apiGroupList(), 'application/json', { Vary: 'Accept' });
        }
        return true;
      }
      case '/openapi/v2':
        sendStatus(res, pathNotFound());
        return true;
      case '/openapi/v3':
        sendJson(res, 200, this.#openapi.root());
        return true;
    }
    if (p.startsWith('/openapi/v3/')) {
      const doc = this.#openapi.document(p.slice('/openapi/v3/'.length));
      if (doc === undefined) sendStatus(res, pathNotFound());
      else sendJson(res, 200, doc, 'application/json', query.has('hash') ? { 'Cache-Control': 'public, immutable' } : {});
      return true;
    }
    let m = /^\/api\/([^/]+)$/.exec(p);
    if (m) {
      const doc = resourceList('', m[1]);
      if (doc) sendJson(res, 200, doc);
      else sendStatus(res, pathNotFound());
      return true;
    }
    m = /^\/apis\/([^/]+)$/.exec(p);
    if (m) {
      const doc = apiGroupDoc(m[1]);
      if (doc) sendJson(res, 200, doc);
      else sendStatus(res, pathNotFound());
      return true;
    }
    m = /^\/apis\/([^/]+)\/([^/]+)$/.exec(p);
    if (m) {
      const doc = resourceList(m[1], m[2]);
      if (doc) sendJson(res, 200, doc);
      else sendStatus(res, pathNotFound());
      return true;
    }
    return false;
  }
}
