/**
 * Shared by the DNS tests: fully defaulted fixture objects (the store validates as the
 * apiserver does, after defaulting), a store + informers + DnsServer on an ephemeral port,
 * a raw DNS client over UDP and TCP (answers decoded by dns2, independently of our encoder),
 * and `dig`.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { execFile } from 'node:child_process';
import pino from 'pino';
import { Packet } from 'dns2';
import type { Endpoints, EndpointSubset, Pod, Service, ServiceSpec, ServicePort } from '../src/api/types.js';
import { createEmbeddedStore } from '../src/store/embedded.js';
import type { ClosableStore } from '../src/store/embedded.js';
import { InformerFactory } from '../src/store/informer.js';
import { DnsServer } from '../src/dns/index.js';
import type { DnsOptions } from '../src/dns/index.js';

export interface Teardown {
  teardown(fn: () => unknown): void;
}

export function service(namespace: string, name: string, spec: Partial<ServiceSpec> & { ports?: Partial<ServicePort>[] } = {}, annotations?: Record<string, string>): Service {
  const type = spec.type ?? 'ClusterIP';
  const headless = spec.clusterIP === 'None';
  const full: ServiceSpec = {
    type,
    sessionAffinity: 'None',
    ...(type === 'ExternalName' ? {} : { internalTrafficPolicy: 'Cluster' }),
    ...spec,
    ports: spec.ports?.map((p) => ({ protocol: 'TCP', targetPort: p.port, ...p }) as ServicePort),
    ...(headless ? { clusterIPs: ['None'] } : {}),
  };
  if (!full.ports) delete full.ports;
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace, annotations }, spec: full };
}

export function endpoints(namespace: string, name: string, subsets: EndpointSubset[]): Endpoints {
  const filled = subsets.map((s) => ({ ...s, ports: s.ports?.map((p) => ({ protocol: 'TCP', ...p })) }));
  return { apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace }, subsets: filled as EndpointSubset[] };
}

export function pod(namespace: string, name: string): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace },
    spec: {
      containers: [{ name: 'c', image: 'echo', imagePullPolicy: 'IfNotPresent', terminationMessagePath: '/dev/termination-log', terminationMessagePolicy: 'File' }],
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      dnsPolicy: 'ClusterFirst',
      schedulerName: 'default-scheduler',
      securityContext: {},
    },
  };
}

/** Give a stored pod an IP through the status subresource, as a node agent does. */
export async function setPodIP(store: ClosableStore, namespace: string, name: string, ip: string): Promise<void> {
  await store.mutate<Pod>('Pod', namespace, name, (p) => {
    (p as { status: Pod['status'] }).status = { ...(p.status ?? {}), phase: 'Running', podIP: ip, podIPs: [{ ip }] };
  }, { subresource: 'status' });
}

export interface DnsFixture {
  store: ClosableStore;
  informers: InformerFactory;
  dns: DnsServer;
  port: number;
}

/** A store, informers and a started, synced DnsServer on 127.0.0.1:<ephemeral>; all closed at teardown. */
export async function startDns(t: Teardown, opts: Partial<DnsOptions> = {}): Promise<DnsFixture> {
  const store = await createEmbeddedStore({ allowLoopbackEndpoints: true });
  const informers = new InformerFactory(store);
  const dns = new DnsServer({
    informers,
    log: pino({ level: 'silent' }),
    address: '127.0.0.1',
    port: 0,
    zone: 'cluster.local',
    ttl: 5,
    ...opts,
  });
  t.teardown(async () => {
    await dns.stop();
    informers.stop();
    await store.close();
  });
  await dns.start();
  await dns.synced();
  return { store, informers, dns, port: dns.port };
}

export const TYPES: Record<string, number> = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, TXT: 16, AAAA: 28, SRV: 33, ANY: 255 };
export const RCODES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];

/** A query in wire form: one question, RD set, optional OPT. */
export function encodeQuery(name: string, type: number, o: { id?: number; edns?: number; rd?: boolean; qclass?: number } = {}): Buffer {
  const labels = name.replace(/\.$/, '').split('.').filter(Boolean);
  const parts: Buffer[] = [];
  const h = Buffer.alloc(12);
  h.writeUInt16BE(o.id ?? 0x1234, 0);
  h[2] = o.rd === false ? 0 : 1;
  h.writeUInt16BE(1, 4);
  h.writeUInt16BE(o.edns ? 1 : 0, 10);
  parts.push(h);
  for (const l of labels) parts.push(Buffer.from([l.length]), Buffer.from(l, 'latin1'));
  parts.push(Buffer.from([0]));
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(type, 0);
  tail.writeUInt16BE(o.qclass ?? 1, 2);
  parts.push(tail);
  if (o.edns) {
    const opt = Buffer.from([0, 0, 41, 0, 0, 0, 0, 0, 0, 0, 0]);
    opt.writeUInt16BE(o.edns, 3);
    parts.push(opt);
  }
  return Buffer.concat(parts);
}

/** Send raw bytes over UDP; resolve with the first datagram back, or undefined after `timeoutMs`. */
export function udpExchange(port: number, msg: Buffer, timeoutMs = 2000): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      resolve(undefined);
    }, timeoutMs);
    s.on('message', (b) => {
      clearTimeout(timer);
      s.close();
      resolve(b);
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      s.close();
      reject(e);
    });
    s.send(msg, port, '127.0.0.1');
  });
}

/** Send framed messages over one TCP connection; resolve with `expect` framed replies (or what came before close/timeout). */
export function tcpExchange(port: number, msgs: Buffer[], expect = msgs.length, timeoutMs = 2000): Promise<Buffer[]> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const out: Buffer[] = [];
    let buf = Buffer.alloc(0);
    const done = (): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(out);
    };
    const timer = setTimeout(done, timeoutMs);
    s.on('connect', () => {
      for (const m of msgs) {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(m.length);
        s.write(Buffer.concat([len, m]));
      }
    });
    s.on('data', (c) => {
      buf = Buffer.concat([buf, c]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        out.push(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (out.length >= expect) done();
    });
    s.on('error', done);
    s.on('close', done);
  });
}

export interface Decoded {
  id: number;
  rcode: string;
  aa: boolean;
  tc: boolean;
  ra: boolean;
  question: string;
  answer: string[];
  authority: string[];
  additional: string[];
  opt: { size: number; do: boolean } | undefined;
}

/** A reply decoded by dns2 (not by our code), records as zone-file-like strings. */
export function decode(b: Buffer): Decoded {
  const p = Packet.parse(b);
  if (p.errors.length) throw new Error(`reply did not decode: ${p.errors.map((e) => e.message).join('; ')}`);
  const h = p.header as unknown as Record<string, number>;
  const typeName = (t: number): string => Object.entries(TYPES).find(([, v]) => v === t)?.[0] ?? `TYPE${t}`;
  const fmt = (r: Record<string, unknown>): string => {
    const t = typeName(r.type as number);
    const head = `${r.name} ${r.ttl} ${t}`;
    switch (t) {
      case 'A':
      case 'AAAA':
        return `${head} ${r.address}`;
      case 'CNAME':
      case 'PTR':
        return `${head} ${r.domain}`;
      case 'NS':
        return `${head} ${r.ns}`;
      case 'SRV':
        return `${head} ${r.priority} ${r.weight} ${r.port} ${r.target}`;
      case 'TXT':
        return `${head} ${JSON.stringify(r.data)}`;
      case 'SOA':
        return `${head} ${r.primary} ${r.admin} ${r.minimum}`;
      default:
        return head;
    }
  };
  const recs = (xs: unknown[]): string[] => (xs as Record<string, unknown>[]).filter((r) => r.type !== 41).map(fmt);
  const opt = (p.additionals as unknown as Record<string, unknown>[]).find((r) => r.type === 41);
  const q = p.questions[0] as unknown as Record<string, unknown> | undefined;
  return {
    id: h.id,
    rcode: RCODES[h.rcode] ?? String(h.rcode),
    aa: h.aa === 1,
    tc: h.tc === 1,
    ra: h.ra === 1,
    question: q ? `${q.name} ${typeName(q.type as number)}` : '',
    answer: recs(p.answers),
    authority: recs(p.authorities),
    additional: recs(p.additionals),
    opt: opt ? { size: opt.class as number, do: !!opt.doFlag } : undefined,
  };
}

/** Query over UDP (or TCP) and decode. */
export async function ask(port: number, name: string, type: string, o: { tcp?: boolean; edns?: number; id?: number; timeoutMs?: number } = {}): Promise<Decoded> {
  const msg = encodeQuery(name, TYPES[type], { id: o.id, edns: o.edns });
  const reply = o.tcp ? (await tcpExchange(port, [msg], 1, o.timeoutMs))[0] : await udpExchange(port, msg, o.timeoutMs);
  if (!reply) throw new Error(`no reply to ${name} ${type}`);
  return decode(reply);
}

/** Run dig against the server; resolves with stdout. */
export function dig(port: number, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('dig', ['@127.0.0.1', '-p', String(port), '+time=2', '+tries=1', ...args], { timeout: 10_000 }, (err, stdout) => {
      if (err && !stdout) reject(err);
      else resolve(stdout);
    });
  });
}

/** Poll until `fn` returns true (bounded). */
export async function waitFor(fn: () => boolean | Promise<boolean>, timeoutMs = 3000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
