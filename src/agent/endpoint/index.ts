/**
 * The node agent endpoint (the kubelet's port): this node's pods' logs, exec, attach and
 * port-forward, served to the API server only. HTTPS on the node's address; the TLS handshake
 * needs a client certificate signed by the cluster CA, and every request must come from the
 * API server's own certificate (CN `clientUser`): an admin kubeconfig or any other local user
 * gets nothing here, and the API server authenticates users before it forwards.
 *
 *   GET  /containerLogs/{namespace}/{pod}?container=…&follow=…        (pods/log's query)
 *   GET  /exec/{namespace}/{pod}?container=…&command=…&stdin=…&tty=…   WebSocket: v5/v4.channel.k8s.io
 *   GET  /attach/{namespace}/{pod}?container=…                         WebSocket: v5/v4.channel.k8s.io
 *   GET  /portForward/{namespace}/{pod}                                WebSocket: SPDY/3.1+portforward.k8s.io (ports per stream)
 *   GET  /portForward/{namespace}/{pod}?ports=…                        WebSocket: v4.channel.k8s.io
 *   GET  /metrics/resource                                             this node's pods' CPU and memory (metrics.ts)
 *
 * Errors are Kubernetes `Status` bodies, passed through by the API server as they are.
 *
 * Any local user (and, with a non-loopback node IP, anyone on the network) can connect: connections
 * that are not the API server's (TLS handshake not done, or another certificate) are at most
 * AGENT_UNAUTHENTICATED_CONNECTIONS at once, a new one over that closes the oldest of them, and a
 * handshake must finish within AGENT_HANDSHAKE_TIMEOUT_MS, so strangers cannot take the daemon's
 * descriptors (Node's default would keep each bare connection for 120 s, without a bound).
 */
import { createRequire } from 'node:module';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type Server, createServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { StrangerCap } from '../../util/stranger-cap.js';
import type { WebSocketServer } from 'ws';
import { ApiError, badRequest } from '../../api/errors.js';
import type { Pod, Stored } from '../../api/types.js';
import type { Store } from '../../store/types.js';
import type { ExecTarget, RunningContainer } from '../runtime/index.js';
import { CHANNEL_PROTOCOLS, pickProtocol } from './channels.js';
import { parseLogQuery, pickContainer, serveLogs } from './logs.js';
import { MetricsSampler } from './metrics.js';
import { parsePorts, servePortForward } from './portforward.js';
import { SPDY_PORTFORWARD_PROTOCOL, SPDY_PROTOCOL_TOKEN, servePortForwardSpdy } from './portforward-spdy.js';
import { serveAttach, serveExec } from './streams.js';

export interface AgentEndpointOptions {
  store: Store;
  log: Logger;
  /** the node's address */
  address: string;
  /** 0: any free port (published in the Node's status) */
  port: number;
  /** serving certificate and key, and the CA client certificates must be signed by */
  tls: { cert: string; key: string; ca: string };
  /** the one client certificate CN accepted: the API server's */
  clientUser: string;
  stateDir: string;
  /** this node's running container of a pod (uid) by name */
  execTarget(uid: string, container: string): ExecTarget | undefined;
  /** this node's running app containers (resource metrics); none: the node reports no pod metrics */
  runningContainers?(): RunningContainer[];
  /** between two /proc samples of the resource metrics (metrics-server's --metric-resolution), default 15 s */
  metricsResolutionMs?: number;
}

type Verb = 'containerLogs' | 'exec' | 'attach' | 'portForward';

/** kubectl ≥ 1.31 tunnels SPDY/3.1 in WebSocket messages; the Python client speaks the channel protocol */
const PORTFORWARD_PROTOCOLS = [SPDY_PROTOCOL_TOKEN, 'v4.channel.k8s.io', 'channel.k8s.io'];

/** connections at once that are not (yet) the API server's: as the API's and the tunnel's strangers' share */
export const AGENT_UNAUTHENTICATED_CONNECTIONS = 64;
/** a client must finish its TLS handshake within this long (as the API's --api-handshake-timeout default) */
export const AGENT_HANDSHAKE_TIMEOUT_MS = 10_000;

const truthy = (q: URLSearchParams, k: string): boolean => ['true', '1', 't', 'True', 'TRUE', 'T'].includes(q.get(k) ?? '');

export class AgentEndpoint {
  readonly #o: AgentEndpointOptions;
  readonly #log: Logger;
  #wss: WebSocketServer | undefined;
  readonly #sockets = new Set<Duplex>();
  /** TCP connections not (yet) the API server's, oldest first */
  readonly #strangers = new StrangerCap(AGENT_UNAUTHENTICATED_CONNECTIONS, () => this.stats.strangersClosed++);
  /** counters for tests */
  readonly stats = { strangersClosed: 0 };
  readonly #metrics: MetricsSampler;
  #server: Server | undefined;
  #port = 0;
  #stopping: Promise<void> | undefined;

  constructor(o: AgentEndpointOptions) {
    this.#o = o;
    this.#log = o.log.child({ component: 'agent-endpoint' });
    this.#metrics = new MetricsSampler({ containers: () => o.runningContainers?.() ?? [], resolutionMs: o.metricsResolutionMs, log: this.#log });
  }

  /** made on the first upgrade: `ws` loads only when a stream is asked for, not with every daemon */
  #websockets(): WebSocketServer {
    if (this.#wss) return this.#wss;
    const { WebSocketServer: Wss } = createRequire(import.meta.url)('ws') as typeof import('ws');
    const wss = new Wss({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: 16 << 20,
      handleProtocols: (offered, req) => pickProtocol(offered, req.url?.startsWith('/portForward/') ? PORTFORWARD_PROTOCOLS : CHANNEL_PROTOCOLS),
    });
    wss.on('headers', (headers: string[]) => {
      const i = headers.indexOf(`Sec-WebSocket-Protocol: ${SPDY_PROTOCOL_TOKEN}`);
      if (i >= 0) headers[i] = `Sec-WebSocket-Protocol: ${SPDY_PORTFORWARD_PROTOCOL}`;
    });
    this.#wss = wss;
    return wss;
  }

  get port(): number {
    return this.#port;
  }

  async start(): Promise<void> {
    const { tls, address, port } = this.#o;
    const server = createServer(
      { cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2', handshakeTimeout: AGENT_HANDSHAKE_TIMEOUT_MS },
      (req, res) => {
        void this.#request(req, res);
      },
    );
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void this.#upgrade(req, socket, head));
    server.on('connection', (s: Socket) => this.#strangers.add(s));
    server.on('secureConnection', (s: TLSSocket) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
      // the API server's connection stops counting as a stranger's; another certificate's stays counted
      if (s.authorized && s.getPeerCertificate()?.subject?.CN === this.#o.clientUser) this.#strangers.trust(s);
    });
    server.on('tlsClientError', (err) => this.#log.debug({ err }, 'refused a connection without the API server\'s certificate'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new Error(`cannot serve the node agent endpoint on ${address}:${port}: ${err.code === 'EADDRINUSE' ? 'the address is in use — pass --agent-port with a free port' : err.message}`)),
      );
      server.listen({ host: address, port }, () => resolve());
    });
    server.on('error', (err) => this.#log.error({ err }, 'node agent endpoint error'));
    this.#server = server;
    const a = server.address();
    this.#port = typeof a === 'object' && a ? a.port : port;
    this.#log.info({ address, port: this.#port }, 'node agent endpoint listening');
    this.#metrics.start();
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#metrics.stop();
      const server = this.#server;
      for (const c of this.#wss?.clients ?? []) c.terminate();
      this.#wss?.close();
      if (!server) return;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of this.#sockets) s.destroy();
      });
    })();
    return this.#stopping;
  }

  /** the API server's certificate, or the Status refusing the request */
  #refusal(req: IncomingMessage): ApiError | undefined {
    const s = req.socket as TLSSocket;
    const cn = s.authorized ? s.getPeerCertificate()?.subject?.CN : undefined;
    if (cn === this.#o.clientUser) return undefined;
    return new ApiError('Forbidden', `the node agent endpoint serves the API server only (user "${String(cn ?? '')}" refused): go through the Kubernetes API (kubectl logs/exec/port-forward)`);
  }

  /** verb, namespace, pod from `/{verb}/{ns}/{pod}` */
  #route(req: IncomingMessage): { verb: Verb; namespace: string; name: string; query: URLSearchParams } {
    const url = new URL(req.url ?? '/', 'https://agent');
    const m = /^\/(containerLogs|exec|attach|portForward)\/([^/]+)\/([^/]+)$/.exec(url.pathname);
    if (!m) throw new ApiError('NotFound', `the node agent endpoint has no ${url.pathname}`);
    return { verb: m[1] as Verb, namespace: decodeURIComponent(m[2]), name: decodeURIComponent(m[3]), query: url.searchParams };
  }

  async #request(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const refused = this.#refusal(req);
      if (refused) throw refused;
      if ((req.url ?? '').split('?')[0] === '/metrics/resource') {
        if (req.method !== 'GET') throw new ApiError('MethodNotAllowed', `${req.method ?? ''} is not served on /metrics/resource: GET it`);
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(this.#metrics.report()));
        return;
      }
      const r = this.#route(req);
      if (r.verb !== 'containerLogs') throw badRequest(`Upgrade request required: ${r.verb} streams over WebSockets`);
      await serveLogs(req, res, { store: this.#o.store, stateDir: this.#o.stateDir }, r.namespace, r.name, parseLogQuery(r.query));
    } catch (err) {
      if (res.headersSent) {
        res.end();
        return;
      }
      const e = err instanceof ApiError ? err : new ApiError('InternalError', (err as Error).message);
      if (e.code >= 500) this.#log.error({ err }, 'agent request failed');
      // a refused client's connection is not kept: it counts as a stranger's until it closes
      res.writeHead(e.code, { 'Content-Type': 'application/json', ...(e.code === 403 ? { Connection: 'close' } : {}) }).end(JSON.stringify(statusOf(e)));
    }
  }

  async #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => {});
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    let job: (ws: import('ws').WebSocket) => Promise<void> | void;
    try {
      const refused = this.#refusal(req);
      if (refused) throw refused;
      if (!req.headers['sec-websocket-key']) {
        throw badRequest(`unsupported upgrade "${String(req.headers.upgrade)}": kubeloop streams over WebSockets only (kubectl ≥ 1.31 for port-forward, ≥ 1.30 for exec/attach/cp; plain SPDY clients are not served)`);
      }
      const r = this.#route(req);
      if (r.verb === 'containerLogs') throw badRequest('containerLogs is a plain GET, not an upgrade');
      const pod = await this.#o.store.get<Pod>('Pod', r.namespace, r.name);
      if (r.verb === 'portForward') {
        const ip = pod.status?.podIP;
        if (!ip) throw badRequest(`pod ${r.name} has no IP yet (phase ${pod.status?.phase ?? 'Pending'}): wait until it runs`);
        const offered = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
        if (offered.includes(SPDY_PORTFORWARD_PROTOCOL)) {
          // each connection names its port in its stream headers. `ws` accepts only RFC 7230
          // tokens as subprotocols and "/" is not one: it is offered under a token here, and the
          // 'headers' listener puts the real name back in the 101 reply
          req.headers['sec-websocket-protocol'] = SPDY_PROTOCOL_TOKEN;
          job = (ws) => servePortForwardSpdy(ws, ip, this.#log);
        } else {
          const ports = parsePortsOrBad(r.query);
          job = (ws) => servePortForward(ws, ip, ports);
        }
      } else {
        const container = pickContainer(pod, r.query.get('container') ?? undefined);
        const target = this.#o.execTarget(pod.metadata.uid, container);
        if (!target) throw badRequest(`container ${container} is not running in pod ${r.name} (phase ${pod.status?.phase ?? 'Pending'}): wait until it runs`);
        const o = { stdin: truthy(r.query, 'stdin'), stdout: truthy(r.query, 'stdout'), stderr: truthy(r.query, 'stderr'), tty: truthy(r.query, 'tty') };
        if (r.verb === 'exec') {
          const command = r.query.getAll('command');
          if (!command.length) throw badRequest('command: Required value: give the command to run (kubectl exec POD -- COMMAND)');
          job = (ws) => serveExec(ws, target, command, o, this.#log);
        } else {
          job = (ws) => serveAttach(ws, target, o, () => this.#o.execTarget(pod.metadata.uid, container)?.pid === target.pid);
        }
      }
      this.#log.debug({ verb: r.verb, pod: `${r.namespace}/${r.name}` }, 'stream');
    } catch (err) {
      const e = err instanceof ApiError ? err : new ApiError('InternalError', (err as Error).message);
      refuseUpgrade(socket, e);
      return;
    }
    this.#websockets().handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', () => {});
      void Promise.resolve(job(ws)).catch((err: unknown) => {
        this.#log.warn({ err }, 'stream failed');
        ws.terminate();
      });
    });
  }
}

function parsePortsOrBad(q: URLSearchParams): number[] {
  try {
    return parsePorts(q);
  } catch (e) {
    throw badRequest((e as Error).message);
  }
}

function statusOf(e: ApiError): Record<string, unknown> {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: e.message,
    reason: e.reason,
    ...(e.details.name || e.details.kind ? { details: { name: e.details.name, kind: e.details.kind } } : {}),
    code: e.code,
  };
}

/** a refused upgrade: an HTTP reply with a Status body on the raw socket, then closed */
function refuseUpgrade(socket: Duplex, e: ApiError): void {
  const body = JSON.stringify(statusOf(e));
  socket.end(`HTTP/1.1 ${e.code} ${e.reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}
