// Shared by test/services*.test.ts: the real daemon (`kubeloop up`), a small client for its
// Kubernetes API, and socket probes for the Service addresses it serves.
import dgram from 'node:dgram';
import net from 'node:net';
import type { Event, KObject, Service } from '../src/api/types.js';
import { type ApiClient, daemonApi } from './helpers/api.js';
import { type RunningDaemon, startDaemon } from './helpers/daemon.js';
import { get, podOf } from './helpers/http.js';
import { waitFor } from './helpers/wait.js';

interface Tap {
  teardown(fn: () => unknown): void;
}

const PLURAL: Record<string, string> = {
  Service: 'services',
  Endpoints: 'endpoints',
  Pod: 'pods',
  Event: 'events',
  Namespace: 'namespaces',
};

/** A Kubernetes `Status` failure from the API. */
export class ApiFailure extends Error {
  constructor(
    readonly code: number,
    readonly status: { reason?: string; message?: string; details?: { causes?: Array<{ field?: string; reason?: string; message?: string }> } },
  ) {
    super(status.message ?? `HTTP ${code}`);
  }
}

/** The few calls the tests need, as kubectl makes them (JSON over the kubeconfig's HTTPS). */
export class Api {
  constructor(readonly client: ApiClient) {}

  #path(kind: string, ns: string | undefined, name?: string): string {
    const plural = PLURAL[kind];
    if (!plural) throw new Error(`no plural for ${kind}`);
    const base = kind === 'Namespace' ? '/api/v1' : `/api/v1/namespaces/${ns ?? 'default'}`;
    return `${base}/${plural}${name ? `/${name}` : ''}`;
  }

  async #call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.client.request(method, path, { body });
    const json = res.json<T & { kind?: string; status?: unknown }>();
    if (res.status >= 300) throw new ApiFailure(res.status, json as ApiFailure['status']);
    return json;
  }

  create<T extends KObject>(obj: T): Promise<T> {
    return this.#call('POST', this.#path(obj.kind!, obj.metadata?.namespace), obj);
  }

  get<T extends KObject>(kind: string, name: string, ns = 'default'): Promise<T> {
    return this.#call('GET', this.#path(kind, ns, name));
  }

  async tryGet<T extends KObject>(kind: string, name: string, ns = 'default'): Promise<T | undefined> {
    try {
      return await this.get<T>(kind, name, ns);
    } catch (e) {
      if (e instanceof ApiFailure && e.code === 404) return undefined;
      throw e;
    }
  }

  update<T extends KObject>(obj: T): Promise<T> {
    return this.#call('PUT', this.#path(obj.kind!, obj.metadata?.namespace, obj.metadata!.name), obj);
  }

  /** read-modify-write of a Service's spec */
  async editService(name: string, fn: (s: Service) => void, ns = 'default'): Promise<Service> {
    const cur = await this.get<Service>('Service', name, ns);
    fn(cur);
    return this.update(cur);
  }

  delete(kind: string, name: string, ns = 'default'): Promise<unknown> {
    return this.#call('DELETE', this.#path(kind, ns, name));
  }

  async events(name: string, ns = 'default'): Promise<Event[]> {
    const list = await this.#call<{ items: Event[] }>('GET', this.#path('Event', ns));
    return list.items.filter((e) => e.involvedObject.name === name);
  }

  /** waits for an Event with this reason on the object */
  event(name: string, reason: string, ns = 'default'): Promise<Event> {
    return waitFor(async () => (await this.events(name, ns)).find((e) => e.reason === reason), { what: `event ${reason} on ${name}` });
  }
}

export interface Cluster {
  daemon: RunningDaemon;
  api: Api;
  dnsPort: number;
}

/** `kubeloop up` with these flags; stopped as Ctrl-C does with the test (SIGKILL only if the test process dies). */
export async function startCluster(t: Tap, args: string[]): Promise<Cluster> {
  const daemon = await startDaemon(['--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--metrics-addr=', '--log-level', 'warn', ...args]);
  // also when the test process ends without running teardowns (e.g. killed on a tap timeout)
  const kill = (): void => {
    if (daemon.proc.exitCode === null) daemon.proc.kill('SIGKILL');
  };
  process.once('exit', kill);
  t.teardown(async () => {
    process.removeListener('exit', kill);
    await daemon.stop();
  });
  const dnsPort = Number(/dig @\S+ -p (\d+)/.exec(daemon.stdout())?.[1]);
  return { daemon, api: new Api(await daemonApi(daemon)), dnsPort };
}

export function service(name: string, spec: Service['spec'], meta: Partial<Service['metadata']> = {}): Service {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default', ...meta }, spec };
}

/** A pod of the built-in echo image answering HTTP on each of `ports` (name → containerPort). */
export function echoPod(name: string, labels: Record<string, string>, ports: Record<string, number>): KObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default', labels },
    spec: {
      containers: [
        {
          name: 'echo',
          image: 'echo',
          ports: Object.entries(ports).map(([n, p]) => ({ name: n, containerPort: p })),
          readinessProbe: { tcpSocket: { port: Object.values(ports)[0] }, periodSeconds: 1 },
        },
      ],
    },
  } as KObject;
}

/** A pod running `node -e script` (its POD_IP/POD_NAME in the environment). */
export function nodePod(name: string, labels: Record<string, string>, script: string, ports: Array<{ name?: string; containerPort: number; protocol?: string }> = []): KObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default', labels },
    spec: { containers: [{ name: 'app', image: 'node', command: ['node', '-e', script], ports }] },
  } as KObject;
}

/** UDP echo on every port given: replies `<pod>:<datagram>`. */
export const UDP_ECHO = (port: number): string =>
  `const d=require('dgram').createSocket('udp4');d.on('message',(m,r)=>d.send(process.env.POD_NAME+':'+m,r.port,r.address));d.bind(${port},process.env.POD_IP);`;

/**
 * What a TCP connection to host:port meets, bounded in time: `refused` (nothing listens),
 * `reset` (a listener that closed it at once: no endpoint, all dials failed, source denied) or
 * `open` (it stayed open for `ms`: proxied to a backend). The socket is always destroyed.
 */
export function probe(host: string, port: number, o: { localAddress?: string; ms?: number } = {}): Promise<'refused' | 'reset' | 'open'> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, localAddress: o.localAddress });
    let timer: NodeJS.Timeout | undefined;
    const done = (r: 'refused' | 'reset' | 'open'): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    s.on('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED' ? 'refused' : 'reset'));
    s.on('close', () => done('reset'));
    s.on('connect', () => {
      timer = setTimeout(() => done('open'), o.ms ?? 150);
    });
  });
}

/** Which echo pod answers `http://host:port/` (from `localAddress`, when given). */
export async function whoServes(host: string, port: number, localAddress?: string): Promise<string> {
  return podOf((await get(`http://${host}:${port}/`, { localAddress, timeoutMs: 3000 })).body);
}

/** One datagram from a fresh socket (bound to `from`, when given); the reply or undefined. */
export async function udpAsk(host: string, port: number, msg: string, from?: string, timeoutMs = 500): Promise<string | undefined> {
  const c = dgram.createSocket('udp4');
  await new Promise<void>((r) => c.bind(0, from, () => r()));
  try {
    return await new Promise<string | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), timeoutMs);
      c.on('message', (m) => {
        clearTimeout(timer);
        resolve(m.toString());
      });
      c.on('error', () => undefined);
      c.send(msg, port, host);
    });
  } finally {
    c.close();
  }
}

/** Waits until the Service's Endpoints list `n` ready addresses. */
export function readyEndpoints(api: Api, name: string, n: number): Promise<unknown> {
  return waitFor(
    async () => {
      const ep = await api.tryGet<KObject & { subsets?: Array<{ addresses?: unknown[] }> }>('Endpoints', name);
      const count = (ep?.subsets ?? []).reduce((k, s) => k + (s.addresses?.length ?? 0), 0);
      return count === n;
    },
    { what: `${n} ready endpoints of ${name}`, timeoutMs: 15_000 },
  );
}

export const ingressIP = (api: Api, name: string): Promise<string> =>
  waitFor(async () => (await api.get<Service>('Service', name)).status?.loadBalancer?.ingress?.[0]?.ip, { what: `ingress IP of ${name}` });
