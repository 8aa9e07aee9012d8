/**
 * The API server's side of the pod subresources the node agents serve (DESIGN.md "Node agent
 * endpoint"): `pods/log` is forwarded as a GET, `pods/exec`, `pods/attach` and
 * `pods/portforward` as upgraded connections, byte for byte, to the endpoint of the pod's node
 * — its address and port as the Node publishes them (`status.addresses` InternalIP,
 * `status.daemonEndpoints.kubeletEndpoint.Port`), as upstream's apiserver finds the kubelet.
 * The user was authenticated by the API's filters; towards the agent the API server uses its own
 * client certificate and checks the agent's serving certificate against the cluster CA.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { ApiError, badRequest } from '../api/errors.js';
import type { Node, Pod } from '../api/types.js';
import type { Store } from '../store/types.js';
import { relayAgentGet } from './agent-relay.js';

export interface AgentClientTls {
  /** the CA the agents' serving certificates are signed by */
  ca: string;
  cert: string;
  key: string;
}

const AGENT_PATHS: Readonly<Record<string, string>> = { log: 'containerLogs', exec: 'exec', attach: 'attach', portforward: 'portForward' };

/** headers of the user's request that stay between the user and the API server */
const HOP = new Set(['host', 'authorization', 'connection', 'upgrade', 'proxy-authorization', 'cookie', 'origin']);

export class AgentForwarder {
  readonly #store: Store;
  readonly #tls: AgentClientTls | undefined;

  constructor(o: { store: Store; tls: AgentClientTls | undefined }) {
    this.#store = o.store;
    this.#tls = o.tls;
  }

  /** the agent endpoint of the pod's node, and the path there */
  async #target(sub: string, namespace: string, name: string, query: URLSearchParams): Promise<{ host: string; port: number; path: string }> {
    const pod = await this.#store.get<Pod>('Pod', namespace, name);
    if (!this.#tls) throw new ApiError('ServiceUnavailable', 'no node agent credentials: the daemon was started without its PKI');
    const nodeName = pod.spec?.nodeName;
    if (!nodeName) throw badRequest(`pod ${name} is not scheduled to a node yet: wait until it runs`);
    const node = await this.#store.tryGet<Node>('Node', undefined, nodeName);
    const host = node?.status?.addresses?.find((a) => a.type === 'InternalIP')?.address;
    const port = node?.status?.daemonEndpoints?.kubeletEndpoint?.Port;
    if (!host || !port) throw new ApiError('ServiceUnavailable', `node ${nodeName} publishes no agent endpoint (its node agent is not running): try again once it is Ready`);
    const qs = query.toString();
    return { host, port, path: `/${AGENT_PATHS[sub]}/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}${qs ? `?${qs}` : ''}` };
  }

  /** `pods/log`: the agent's reply (status, type, body) streamed to the user (agent-relay.ts) */
  async logs(_req: IncomingMessage, res: ServerResponse, namespace: string, name: string, query: URLSearchParams): Promise<void> {
    const t = await this.#target('log', namespace, name, query);
    await relayAgentGet({ ...t, tls: this.#tls! }, res).catch((e: Error) => {
      throw agentDown(t.host, t.port, e);
    });
  }

  /**
   * An upgraded stream (exec, attach, portforward): the request goes to the agent with the
   * user's WebSocket headers, and from the agent's reply on the two sockets are joined.
   */
  async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, sub: string, namespace: string, name: string, query: URLSearchParams): Promise<void> {
    const t = await this.#target(sub, namespace, name, query);
    const up = tls.connect({ host: t.host, port: t.port, ...this.#tls, servername: undefined, ALPNProtocols: ['http/1.1'] });
    await new Promise<void>((resolve, reject) => {
      up.once('secureConnect', resolve);
      up.once('error', (e) => reject(agentDown(t.host, t.port, e)));
    });
    const lines = [`GET ${t.path} HTTP/1.1`, `Host: ${t.host}:${t.port}`, 'Connection: Upgrade', `Upgrade: ${req.headers.upgrade ?? 'websocket'}`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const k = req.rawHeaders[i];
      if (!HOP.has(k.toLowerCase())) lines.push(`${k}: ${req.rawHeaders[i + 1]}`);
    }
    up.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (head.length) up.write(head);
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
    up.pipe(socket);
    socket.pipe(up);
    socket.once('close', () => up.destroy());
    up.once('close', () => socket.destroy());
  }
}

const agentDown = (host: string, port: number, e: Error): ApiError =>
  new ApiError('ServiceUnavailable', `cannot reach the node agent endpoint ${host}:${port}: ${e.message}`);
