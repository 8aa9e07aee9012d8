// Shared by test/proxy*.test.ts: a real embedded store + informers + Proxy, and loopback peers.
import net from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { Endpoints, EndpointSubset, Service, ServiceSpec } from '../src/api/types.js';
import { createEmbeddedStore, type ClosableStore } from '../src/store/embedded.js';
import { InformerFactory } from '../src/store/informer.js';
import { Proxy, type ProxyOptions } from '../src/agent/proxy/index.js';

export interface Tap {
  teardown(fn: () => unknown): void;
}

/** Polls until `fn` is truthy (bounded); returns its value. */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  what = 'condition',
  timeoutMs = 4000,
): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Log lines as parsed objects (pino's `sink()` habit). */
export function logSink(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

export interface Harness {
  store: ClosableStore;
  proxy: Proxy;
  lines: Array<Record<string, unknown>>;
  errors: Array<{ svc: string; address: string; port: number; err: Error }>;
}

/**
 * A store whose Service CIDR and node address are private to one test file (tap runs files in
 * parallel), informers, and a started Proxy; all torn down with the test.
 */
export async function harness(
  t: Tap,
  o: { serviceCidr: string; nodeAddress: string } & Partial<Omit<ProxyOptions, 'informers' | 'log'>>,
): Promise<Harness> {
  const { serviceCidr, nodeAddress, ...rest } = o;
  const store = await createEmbeddedStore({ serviceCidr, allowLoopbackEndpoints: true });
  const informers = new InformerFactory(store);
  const { log, lines } = logSink();
  const errors: Harness['errors'] = [];
  const proxy = new Proxy({
    informers,
    log,
    nodeAddresses: [nodeAddress],
    onListenerError: (svc, address, port, err) => errors.push({ svc, address, port, err }),
    ...rest,
  });
  t.teardown(async () => {
    await proxy.stop();
    informers.stop();
    await store.close();
  });
  await proxy.start();
  return { store, proxy, lines, errors };
}

export async function createService(
  store: ClosableStore,
  name: string,
  spec: ServiceSpec,
  namespace = 'default',
): Promise<Service> {
  return store.create<Service>({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace }, spec });
}

/** Writes (creates or replaces) the Endpoints of a selector-less Service. */
export async function setEndpoints(
  store: ClosableStore,
  name: string,
  subsets: EndpointSubset[],
  namespace = 'default',
): Promise<void> {
  const cur = await store.tryGet<Endpoints>('Endpoints', namespace, name);
  const obj: Endpoints = { apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace }, subsets };
  if (cur) await store.update<Endpoints>(obj);
  else await store.create<Endpoints>(obj);
}

/** One subset per backend, so that each may have its own (kernel-chosen) port. */
export function subsetsOf(backends: Array<{ host: string; port: number }>, portName: string): EndpointSubset[] {
  return backends.map((b) => ({ addresses: [{ ip: b.host }], ports: [{ name: portName, port: b.port, protocol: 'TCP' }] }));
}

export interface Backend {
  name: string;
  host: string;
  port: number;
  server: net.Server;
  /** connections accepted so far */
  accepted: number;
  /** currently open connections */
  sockets: Set<net.Socket>;
}

/**
 * A TCP backend on `host`:0. Each connection is greeted with `name\n` and then echoed;
 * when the client half-closes, the backend writes `bye name\n` and ends.
 */
export async function tcpBackend(t: Tap, host: string, name: string): Promise<Backend> {
  const sockets = new Set<net.Socket>();
  const b: Backend = { name, host, port: 0, server: undefined as unknown as net.Server, accepted: 0, sockets };
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    b.accepted++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.write(`${name}\n`);
    s.on('data', (d) => s.write(d));
    s.on('end', () => s.end(`bye ${name}\n`));
  });
  b.server = server;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: 0 }, () => resolve());
  });
  b.port = (server.address() as net.AddressInfo).port;
  t.teardown(() => stopBackend(b));
  return b;
}

export async function stopBackend(b: Backend): Promise<void> {
  for (const s of b.sockets) s.destroy();
  if (b.server.listening) await new Promise<void>((r) => b.server.close(() => r()));
}

export interface Client {
  socket: net.Socket;
  /** everything received so far */
  readonly data: string;
  /** resolves with all data once the connection has closed; `error` set when it was refused/reset */
  done: Promise<{ data: string; error?: string }>;
  /** resolves when the peer has ended (FIN), reset, or the socket closed */
  ended: Promise<void>;
  /** resolves once `n` lines have arrived */
  lines(n: number): Promise<string[]>;
}

export function connect(host: string, port: number, localAddress?: string): Client {
  const socket = net.connect({ host, port, localAddress, allowHalfOpen: true });
  let data = '';
  let error: string | undefined;
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => (data += d));
  socket.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
  const done = new Promise<{ data: string; error?: string }>((resolve) => socket.on('close', () => resolve({ data, error })));
  const ended = new Promise<void>((resolve) => {
    socket.on('end', resolve);
    socket.on('close', resolve);
  });
  return {
    socket,
    ended,
    get data() {
      return data;
    },
    done,
    lines: (n) =>
      waitFor(() => {
        const ls = data.split('\n');
        return ls.length > n ? ls.slice(0, n) : error || socket.destroyed ? ls : undefined;
      }, `${n} lines from ${host}:${port}`),
  };
}

/** Connects, reads the greeting line (the backend's name), closes. */
export async function whoAnswers(host: string, port: number, localAddress?: string): Promise<string> {
  const c = connect(host, port, localAddress);
  const [first] = await c.lines(1);
  c.socket.destroy();
  return first ?? '';
}
