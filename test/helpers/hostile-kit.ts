/**
 * The hostile-input suites' kit: a daemon with a small demo workload, a raw HTTP client that
 * sends bytes exactly as given (nothing normalises paths or headers) over the transport the
 * daemon's kubeconfig names, a raw DNS client, /proc samplers, a seeded PRNG, a tally of what
 * was thrown and what came back, and the "still answers" probe run after each group.
 */
import dgram from 'node:dgram';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packet } from 'dns2';
import type tap from 'tap';
import { type ApiClient, daemonApi } from './api.js';
import { type RunningDaemon, startDaemon, tableAddresses } from './daemon.js';
import { get } from './http.js';

export interface Teardown {
  teardown(fn: () => unknown): void;
}

/** mulberry32: a small seeded PRNG, so every run throws the same bytes */
export function prng(seed: number): { next(): number; int(n: number): number; bytes(n: number): Buffer } {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  const bytes = (n: number): Buffer => {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = int(256);
    return b;
  };
  return { next, int, bytes };
}

// ---------------------------------------------------------------------------------------------
// API transport: what the daemon's kubeconfig says (test/helpers/api.ts reads it): plain
// HTTP in the test mode, HTTPS with the cluster CA and a client certificate or token by default.
// Raw requests go over that transport byte for byte; well-formed ones through the shared client.

export interface ApiTarget {
  client: ApiClient;
  host: string;
  port: number;
  /** set for https:// servers */
  tls?: { ca?: string; cert?: string; key?: string };
  token?: string;
}

export function apiTarget(client: ApiClient): ApiTarget {
  const url = new URL(client.server);
  return {
    client,
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
    tls: url.protocol === 'https:' ? client.tls : undefined,
    token: client.token,
  };
}

/** A connected socket to the API (TLS handshake done for https). */
export function connectApi(target: ApiTarget, o: { anonymous?: boolean } = {}): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = target.tls
      ? tls.connect({
          host: target.host,
          port: target.port,
          ca: target.tls.ca,
          cert: o.anonymous ? undefined : target.tls.cert,
          key: o.anonymous ? undefined : target.tls.key,
          servername: net.isIP(target.host) ? undefined : target.host,
        })
      : net.connect({ host: target.host, port: target.port });
    const ready = target.tls ? 'secureConnect' : 'connect';
    s.once(ready, () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

export interface RawReply {
  /** 0 when the connection closed without a status line */
  status: number;
  headers: Record<string, string>;
  body: string;
  /** how the connection ended: 'end' (FIN), 'reset' (an error such as ECONNRESET/EPIPE), 'timeout' */
  ended: 'end' | 'reset' | 'timeout';
  error?: string;
}

function dechunk(b: Buffer): Buffer {
  const out: Buffer[] = [];
  let i = 0;
  while (i < b.length) {
    const eol = b.indexOf('\r\n', i);
    if (eol < 0) break;
    const n = parseInt(b.subarray(i, eol).toString('latin1'), 16);
    if (!Number.isFinite(n) || n === 0) break;
    out.push(b.subarray(eol + 2, eol + 2 + n));
    i = eol + 2 + n + 2;
  }
  return Buffer.concat(out);
}

function parseReply(raw: Buffer, ended: RawReply['ended'], error?: string): RawReply {
  const headEnd = raw.indexOf('\r\n\r\n');
  const head = (headEnd < 0 ? raw : raw.subarray(0, headEnd)).toString('latin1');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
  const headers: Record<string, string> = {};
  for (const line of head.split('\r\n').slice(1)) {
    const c = line.indexOf(':');
    if (c > 0) headers[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
  }
  let body = headEnd < 0 ? Buffer.alloc(0) : raw.subarray(headEnd + 4);
  if (headers['transfer-encoding'] === 'chunked') body = dechunk(body);
  return { status: m ? Number(m[1]) : 0, headers, body: body.toString('utf8'), ended, error };
}

/** Has `raw` a whole response (its Content-Length or last chunk), so a kept-alive connection can go? */
function complete(raw: Buffer): boolean {
  const headEnd = raw.indexOf('\r\n\r\n');
  if (headEnd < 0) return false;
  const head = raw.subarray(0, headEnd).toString('latin1');
  const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (cl) return raw.length - headEnd - 4 >= Number(cl[1]);
  if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) return raw.subarray(raw.length - 5).toString('latin1') === '0\r\n\r\n';
  return false;
}

/**
 * Writes `bytes` on a fresh API connection and collects the reply until it is complete or the
 * server closes the connection. Reads while writing, so a server
 * that answers early (413) and closes is still heard; write errors after that are expected.
 * `anonymous` presents no client certificate (build the request with `noAuth` too).
 */
export async function rawHttp(target: ApiTarget, bytes: Buffer | string, opts: { timeoutMs?: number; anonymous?: boolean } = {}): Promise<RawReply> {
  let s: net.Socket;
  try {
    s = await connectApi(target, { anonymous: opts.anonymous });
  } catch (e) {
    return { status: 0, headers: {}, body: '', ended: 'reset', error: (e as Error).message };
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (ended: RawReply['ended'], error?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve(parseReply(Buffer.concat(chunks), ended, error));
    };
    const timer = setTimeout(() => finish('timeout'), opts.timeoutMs ?? 15_000);
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      if (complete(Buffer.concat(chunks))) finish('end');
    });
    s.on('end', () => finish('end'));
    s.on('close', () => finish('end'));
    s.on('error', (e) => {
      // a reset after a complete reply is still that reply
      finish('reset', (e as NodeJS.ErrnoException).code ?? e.message);
    });
    s.write(bytes);
  });
}

/**
 * An HTTP/1.1 request as bytes: the path is sent verbatim; credentials from the target. Kept
 * alive as kubectl and curl send it, unless `close` (Connection: close).
 */
export function rawRequest(target: ApiTarget, method: string, path: string, o: { headers?: Record<string, string>; body?: Buffer | string; contentType?: string; noAuth?: boolean; close?: boolean } = {}): Buffer {
  const body = o.body === undefined ? undefined : Buffer.isBuffer(o.body) ? o.body : Buffer.from(o.body);
  const h: string[] = [`${method} ${path} HTTP/1.1`, `Host: ${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`, 'Accept: application/json'];
  if (o.close) h.push('Connection: close');
  if (target.token && !o.noAuth) h.push(`Authorization: Bearer ${target.token}`);
  if (body) {
    h.push(`Content-Type: ${o.contentType ?? 'application/json'}`);
    h.push(`Content-Length: ${body.length}`);
  }
  for (const [k, v] of Object.entries(o.headers ?? {})) h.push(`${k}: ${v}`);
  const head = Buffer.from(h.join('\r\n') + '\r\n\r\n', 'latin1');
  return body ? Buffer.concat([head, body]) : head;
}

/** One well-formed API call: the single function the suites' ordinary requests go through. */
export async function api(target: ApiTarget, method: string, path: string, body?: unknown, contentType?: string): Promise<{ status: number; body: string; json: () => any }> {
  const r = await target.client.request(method, path, { body, headers: contentType ? { 'content-type': contentType } : undefined });
  return { status: r.status, body: r.body, json: () => JSON.parse(r.body) };
}

/** is this reply a Kubernetes Status object? */
export function isStatus(r: RawReply): boolean {
  try {
    const j = JSON.parse(r.body) as { kind?: string; apiVersion?: string };
    return j.kind === 'Status' && j.apiVersion === 'v1';
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// tally

/** What a suite threw and what came back; figures for the closing note. */
export class Tally {
  readonly sent = new Map<string, number>();
  readonly fiveXx: string[] = [];
  readonly noReply: string[] = [];

  /** counts one hostile request of `kind`; a 5xx is recorded with what caused it */
  record(kind: string, what: string, r?: { status: number; body?: string }): void {
    this.sent.set(kind, (this.sent.get(kind) ?? 0) + 1);
    if (r && r.status >= 500) this.fiveXx.push(`${kind}: ${what} → ${r.status} ${(r.body ?? '').slice(0, 200)}`);
  }

  count(kind: string, n: number): void {
    this.sent.set(kind, (this.sent.get(kind) ?? 0) + n);
  }

  total(): number {
    let n = 0;
    for (const v of this.sent.values()) n += v;
    return n;
  }

  lines(): string[] {
    return [...this.sent].map(([k, v]) => `${k}: ${v}`);
  }
}

// ---------------------------------------------------------------------------------------------
// idle clients

export interface IdleClient {
  sock: net.Socket;
  /** the server closed its side (FIN) or reset */
  ended: boolean;
}

/**
 * `n` connections to 127.0.0.1:`port`, made one after the other, that send nothing and never end
 * their side. With `tls` (the owner's CA, client cert and key) each completes a TLS handshake with
 * that credential first: an authenticated client idling, not a stranger.
 */
export async function connectIdle(port: number, n: number, tlsCreds?: { ca?: string; cert?: string; key?: string }): Promise<IdleClient[]> {
  const out: IdleClient[] = [];
  for (let i = 0; i < n; i++) {
    const sock = tlsCreds
      ? tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...tlsCreds })
      : net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const c: IdleClient = { sock, ended: false };
    c.sock.on('end', () => (c.ended = true));
    c.sock.on('close', () => (c.ended = true));
    c.sock.on('error', () => {});
    await new Promise<void>((resolve) => {
      c.sock.once(tlsCreds ? 'secureConnect' : 'connect', resolve);
      c.sock.once('close', () => resolve());
    });
    out.push(c);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// /proc

export function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return -1;
  }
}

/** VmRSS in MiB, -1 when the process is gone */
export function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : -1;
  } catch {
    return -1;
  }
}

/** Samples a process's RSS and fd count every `intervalMs` until stopped; keeps the maxima. */
export class Sampler {
  maxRss = 0;
  maxFds = 0;
  readonly #timer: NodeJS.Timeout;
  constructor(readonly pid: number, intervalMs = 100) {
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), intervalMs);
  }
  #sample(): void {
    this.maxRss = Math.max(this.maxRss, rssMiB(this.pid));
    this.maxFds = Math.max(this.maxFds, fdCount(this.pid));
  }
  stop(): void {
    clearInterval(this.#timer);
    this.#sample();
  }
}

// ---------------------------------------------------------------------------------------------
// DNS

/** A standard query (RD set) for `name` of `type` (1 = A). */
export function dnsQuery(name: string, type = 1, id = 0x1234): Buffer {
  const labels = name.replace(/\.$/, '').split('.').filter(Boolean);
  const qname = Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])]);
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(0x0100, 2);
  h.writeUInt16BE(1, 4);
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(type, 0);
  tail.writeUInt16BE(1, 2);
  return Buffer.concat([h, qname, tail]);
}

export interface DnsAnswer {
  id: number;
  rcode: number;
  a: string[];
}

function decodeDns(b: Buffer): DnsAnswer {
  const p = Packet.parse(b) as unknown as { header: { id: number; rcode: number }; answers: Array<{ type: number; address?: string }> };
  return { id: p.header.id, rcode: p.header.rcode, a: p.answers.filter((x) => x.type === 1).map((x) => x.address!) };
}

export interface DnsAddr {
  host: string;
  port: number;
}

/** Sends `packet` over UDP; resolves to the first reply or undefined after `timeoutMs`. */
export function udpSend(addr: DnsAddr, packet: Buffer, timeoutMs = 2000): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const finish = (b?: Buffer) => {
      clearTimeout(timer);
      s.close();
      resolve(b);
    };
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    s.on('message', (m) => finish(m));
    s.on('error', () => finish(undefined));
    s.send(packet, addr.port, addr.host);
  });
}

/** One length-prefixed query over a fresh TCP connection; the decoded reply. */
export function tcpAsk(addr: DnsAddr, packet: Buffer, timeoutMs = 3000): Promise<DnsAnswer> {
  return new Promise((resolve, reject) => {
    const s = net.connect(addr.port, addr.host);
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('DNS over TCP: no reply'));
    }, timeoutMs);
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        clearTimeout(timer);
        s.destroy();
        resolve(decodeDns(buf.subarray(2, 2 + buf.readUInt16BE(0))));
      }
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    const len = Buffer.alloc(2);
    len.writeUInt16BE(packet.length);
    s.write(Buffer.concat([len, packet]));
  });
}

export async function udpAsk(addr: DnsAddr, packet: Buffer, timeoutMs = 2000): Promise<DnsAnswer> {
  const r = await udpSend(addr, packet, timeoutMs);
  if (!r) throw new Error('DNS over UDP: no reply');
  return decodeDns(r);
}

// ---------------------------------------------------------------------------------------------
// the daemon

export interface HostileEnv {
  d: RunningDaemon;
  pid: number;
  target: ApiTarget;
  dns: DnsAddr;
  /** the demo Service's ClusterIP:port */
  clusterIP: string;
  fqdn: string;
}

const DEMO = `apiVersion: v1
kind: Namespace
metadata:
  name: hostile
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
  namespace: hostile
spec:
  replicas: 2
  selector:
    matchLabels: {app: echo}
  template:
    metadata:
      labels: {app: echo}
    spec:
      containers:
        - name: echo
          image: echo
          ports: [{containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /healthz, port: 8080}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: hostile
spec:
  selector: {app: echo}
  ports: [{port: 80, targetPort: 8080}]
`;

/**
 * `kubeloop up` with the demo workload (namespace hostile: a Deployment of 2 echo pods behind
 * Service echo), its own ranges, everything stopped at teardown.
 */
export async function startHostileDaemon(t: Teardown, o: { serviceCidr: string; podCidr: string; lbPool: string; nodeIP: string }): Promise<HostileEnv> {
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-hostile-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'demo.yaml'), DEMO);
  const d = await startDaemon([
    '-f', join(dir, 'demo.yaml'),
    '--service-cidr', o.serviceCidr,
    '--pod-cidr', o.podCidr,
    '--lb-pool', o.lbPool,
    '--nodeport-addresses', o.nodeIP,
    '--node-ip', o.nodeIP,
    '--api-addr', '127.0.0.1:0',
    '--dns-addr', '127.0.0.1:0',
    '--log-level', process.env.KUBELOOP_TEST_LOG ?? 'warn',
  ]);
  t.teardown(() => d.stop('SIGKILL'));
  const out = d.stdout();
  const dnsM = /dig @(\S+) -p (\d+)/.exec(out);
  if (!dnsM) throw new Error(`no DNS line in:\n${out}`);
  const [clusterIP] = tableAddresses(out, 'hostile/echo');
  if (!clusterIP) throw new Error(`no address for hostile/echo in:\n${out}`);
  return {
    d,
    pid: d.proc.pid!,
    target: apiTarget(await daemonApi(d)),
    dns: { host: dnsM[1], port: Number(dnsM[2]) },
    clusterIP,
    fqdn: 'echo.hostile.svc.cluster.local',
  };
}

/** the tap assertions the probes use */
export type Asserts = Pick<typeof tap, 'ok' | 'equal' | 'match' | 'pass' | 'same' | 'comment'>;

/**
 * The daemon still answers: it runs, `kubectl get pods` lists the echo pods, DNS over UDP and
 * TCP gives the Service's ClusterIP, and an HTTP GET through the ClusterIP reaches an echo pod.
 */
export async function assertAlive(t: Asserts, env: HostileEnv, after: string): Promise<void> {
  t.equal(env.d.proc.exitCode, null, `daemon still running after ${after}`);
  t.equal(env.d.proc.signalCode, null, `daemon not killed by a signal after ${after}`);
  const k = await env.target.client.kubectl('get', 'pods', '-n', 'hostile', '-o', 'name');
  t.equal(k.code, 0, `kubectl get pods after ${after}: ${k.stderr}`);
  t.match(k.stdout, /pod\/echo-/, `kubectl lists the echo pods after ${after}`);
  const ip = env.clusterIP.split(':')[0];
  try {
    const u = await udpAsk(env.dns, dnsQuery(env.fqdn, 1, 4242));
    t.ok(u.rcode === 0 && u.a.includes(ip), `DNS/UDP A ${env.fqdn} → ${ip} after ${after} (got rcode ${u.rcode} ${u.a.join(',')})`);
  } catch (e) {
    t.ok(false, `DNS/UDP after ${after}: ${(e as Error).message}`);
  }
  try {
    const tc = await tcpAsk(env.dns, dnsQuery(env.fqdn, 1, 4243));
    t.ok(tc.rcode === 0 && tc.a.includes(ip), `DNS/TCP A ${env.fqdn} → ${ip} after ${after}`);
  } catch (e) {
    t.ok(false, `DNS/TCP after ${after}: ${(e as Error).message}`);
  }
  try {
    const r = await get(`http://${env.clusterIP}/`);
    t.equal(r.status, 200, `ClusterIP GET after ${after}`);
    t.match(r.body, /pod=echo-/, `an echo pod answers through the ClusterIP after ${after}`);
  } catch (e) {
    t.ok(false, `ClusterIP GET after ${after}: ${(e as Error).message}`);
  }
}

/**
 * Lines of the daemon's stderr that speak of a crash: an uncaught exception or unhandled
 * rejection, a fatal log, or Node's own crash output (a bare `Error:` line or stack frame).
 * A request that failed with a 500 is logged at error level and counted as a 5xx instead.
 */
export function crashLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => /uncaught|unhandled|"level":60/i.test(l) || /^(\w*Error|\s+at \S+ \()/.test(l));
}
