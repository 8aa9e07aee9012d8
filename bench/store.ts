/**
 * Store figures (issue 15): acknowledged writes/s of each storage backend and through the API,
 * each beside a reference measured in the same run; list latency at 10,000 objects and paged
 * lists at 10,000 and 30,000; creates/s with 0 and 100 watchers; watch delivery latency across
 * two daemons on one Redis.
 *
 *   node --import tsx bench/store.ts [--quick] [--only storage,redis,api,watchers,cluster] [--out DIR]
 *
 * storage   EmbeddedStorage (journal in a temp dir, fsync on), 32 concurrent writers of ~1 KB
 *           records; reference: a bare group-commit journal (append + one fdatasync per batch)
 *           on the same disk, the ceiling of any fsynced log here
 * redis     RedisStorage on a redis-server of its own, 32 writers; reference:
 *           `redis-benchmark -t set -c 32 -n 100000 -d 1024` on the same server
 * api       a daemon (`kubeloop up`, embedded store): ConfigMap creates/s over HTTPS (32 clients,
 *           kept-alive connections), then list 10,000 (median of 5), paged lists (limit=500) of
 *           10,000 and 30,000
 * watchers  the same daemon: creates/s with no watch, then with 100 watches of the namespace
 *           open (each receiving every event), alternated over rounds
 * cluster   two daemons with `--store redis://…` on one redis-server: a ConfigMap created on
 *           one, seen by a watch on the other; p50/p99 of create-sent → event-received
 *
 * Results: `<out>/store.json` and `<out>/store.md` (default bench/results; --quick only prints).
 * Loopback only; every count and wait is bounded; every process and temp dir is ended.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import type { ClientRequest } from 'node:http';
import https from 'node:https';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { EmbeddedStorage } from '../src/store/backends/embedded.js';
import { cpuSeconds } from './contenders.js';
import type { Storage } from '../src/store/storage.js';
import { type ApiClient, daemonApi } from '../test/helpers/api.js';
import { type RunningDaemon, ROOT, startDaemon } from '../test/helpers/daemon.js';
import { startRedisServer } from '../test/helpers/redis-server.js';

const PARTS = ['storage', 'redis', 'api', 'watchers', 'cluster'] as const;
type Part = (typeof PARTS)[number];
const WRITERS = 32;
const log = pino({ level: 'silent' });
const DATA = 'x'.repeat(900); // with metadata ≈ 1 KB per object

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
};
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
};
const r1 = (x: number) => Math.round(x * 10) / 10;
const fmt = (x: number) => (Number.isFinite(x) ? x.toLocaleString('en-US', { maximumFractionDigits: x < 10 ? 2 : x < 100 ? 1 : 0 }) : 'n/a');

/** `count` jobs over `conc` loops; stops early at `maxMs`. Resolves to done/s. */
async function rate(count: number, conc: number, maxMs: number, job: (i: number) => Promise<void>): Promise<{ perSec: number; done: number; ms: number }> {
  let next = 0;
  let done = 0;
  const t0 = performance.now();
  const loop = async () => {
    while (next < count && performance.now() - t0 < maxMs) {
      await job(next++);
      done++;
    }
  };
  await Promise.all(Array.from({ length: conc }, loop));
  const ms = performance.now() - t0;
  return { perSec: done / (ms / 1000), done, ms };
}

// ---------------------------------------------------------------- storage

async function storageWrites(s: Storage, count: number, tag: string): Promise<number> {
  const value = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x', namespace: 'bench' }, data: { d: DATA } });
  const r = await rate(count, WRITERS, 30_000, async (i) => {
    const c = await s.commit([{ op: 'create', key: `ConfigMap/bench/${tag}-${i}`, value }]);
    if (!c.ok) throw new Error(`create ${i} failed`);
  });
  return r.perSec;
}

/** The reference: a minimal group-commit journal (whatever arrived during one fdatasync goes in the next). */
async function groupCommitCeiling(dir: string, count: number): Promise<number> {
  const fh = await open(join(dir, 'ceiling.log'), 'a');
  let queue: Array<{ line: string; done: () => void }> = [];
  let flushing = false;
  const flush = async () => {
    flushing = true;
    while (queue.length) {
      const batch = queue;
      queue = [];
      await fh.write(batch.map((b) => b.line).join(''));
      await fh.datasync();
      for (const b of batch) b.done();
    }
    flushing = false;
  };
  const line = JSON.stringify({ k: 'ConfigMap/bench/x', v: DATA }) + '\n';
  const r = await rate(count, WRITERS, 30_000, () =>
    new Promise<void>((done) => {
      queue.push({ line, done });
      if (!flushing) void flush();
    }),
  );
  await fh.close();
  return r.perSec;
}

async function benchStorage(quick: boolean): Promise<Record<string, number>> {
  const n = quick ? 5_000 : 20_000;
  const rounds = quick ? 1 : 3;
  const emb: number[] = [];
  const ref: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const dir = await mkdtemp(join(tmpdir(), 'kubeloop-bench-store-'));
    try {
      const s = await EmbeddedStorage.open({ dir, fsync: true, log });
      emb.push(await storageWrites(s, n, `r${round}`));
      await s.close();
      ref.push(await groupCommitCeiling(dir, n));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return { objects: n, rounds, embeddedWritesPerSec: Math.round(median(emb)), groupCommitCeilingPerSec: Math.round(median(ref)), ratio: r1((100 * median(emb)) / median(ref)) / 100 };
}

// ---------------------------------------------------------------- redis

function redisBenchmark(port: number, n: number): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile('redis-benchmark', ['-h', '127.0.0.1', '-p', String(port), '-t', 'set', '-c', String(WRITERS), '-n', String(n), '-d', '1024', '-q'], { timeout: 120_000 }, (err, stdout) => {
      if (err) return reject(err);
      const m = /SET: ([\d.]+) requests per second/.exec(stdout.replace(/\r/g, '\n'));
      if (!m) return reject(new Error(`redis-benchmark said: ${stdout.slice(-200)}`));
      resolve(Number(m[1]));
    });
  });
}

async function benchRedis(quick: boolean): Promise<Record<string, number>> {
  const { RedisStorage } = await import('../src/store/backends/redis.js');
  const server = await startRedisServer();
  try {
    const n = quick ? 5_000 : 20_000;
    const rounds = quick ? 1 : 3;
    const st: number[] = [];
    const ref: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const s = await RedisStorage.open({ url: server.url, log, keyPrefix: `bench${round}:` });
      st.push(await storageWrites(s, n, `r${round}`));
      await s.close();
      ref.push(await redisBenchmark(server.port, quick ? 20_000 : 100_000));
    }
    return { objects: n, rounds, redisStorageWritesPerSec: Math.round(median(st)), redisBenchmarkSetPerSec: Math.round(median(ref)), ratio: r1((100 * median(st)) / median(ref)) / 100 };
  } finally {
    await server.close();
  }
}

// ---------------------------------------------------------------- the API

interface Http {
  request(method: string, path: string, body?: unknown): Promise<{ status: number; body: string }>;
  /** a watch stream; `onLine` gets each event line */
  watch(path: string, onLine: (line: string) => void): Promise<() => void>;
  close(): void;
}

function httpClient(api: ApiClient, maxSockets = WRITERS): Http {
  const agent = new https.Agent({ keepAlive: true, maxSockets, ca: api.tls.ca, cert: api.tls.cert, key: api.tls.key });
  const streams = new Set<ClientRequest>();
  const request = (method: string, path: string, body?: unknown) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const text = body === undefined ? undefined : JSON.stringify(body);
      const req = https.request(new URL(path, api.server), {
        method,
        agent,
        timeout: 60_000,
        headers: text === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) },
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
      req.on('error', reject);
      req.end(text);
    });
  const watch = (path: string, onLine: (line: string) => void) =>
    new Promise<() => void>((resolve, reject) => {
      // its own connection: a watch holds it for as long as it runs
      const req = https.request(new URL(path, api.server), { agent: false, ca: api.tls.ca, cert: api.tls.cert, key: api.tls.key }, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`watch ${path}: ${res.statusCode}`));
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          buf += c;
          let i: number;
          while ((i = buf.indexOf('\n')) >= 0) {
            onLine(buf.slice(0, i));
            buf = buf.slice(i + 1);
          }
        });
        res.on('error', () => undefined);
        resolve(() => req.destroy());
      });
      streams.add(req);
      req.on('close', () => streams.delete(req));
      req.on('error', (e) => (streams.has(req) ? reject(e) : undefined));
      req.end();
    });
  return {
    request,
    watch,
    close: () => {
      for (const s of streams) s.destroy();
      agent.destroy();
    },
  };
}

const configMap = (name: string, extra: Record<string, string> = {}) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data: { d: DATA, ...extra } });

async function createMany(h: Http, ns: string, from: number, count: number, maxMs = 120_000): Promise<number> {
  const r = await rate(count, WRITERS, maxMs, async (i) => {
    const res = await h.request('POST', `/api/v1/namespaces/${ns}/configmaps`, configMap(`cm-${from + i}`));
    if (res.status !== 201) throw new Error(`create ${ns}/cm-${from + i}: ${res.status} ${res.body.slice(0, 200)}`);
  });
  if (r.done < count) throw new Error(`only ${r.done} of ${count} creates within ${maxMs} ms`);
  return r.perSec;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function pagedList(h: Http, ns: string, limit: number): Promise<{ ms: number; pages: number; items: number }> {
  let pages = 0;
  let items = 0;
  const ms = await timed(async () => {
    let cont = '';
    do {
      const r = await h.request('GET', `/api/v1/namespaces/${ns}/configmaps?limit=${limit}${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`);
      if (r.status !== 200) throw new Error(`paged list: ${r.status} ${r.body.slice(0, 200)}`);
      const l = JSON.parse(r.body) as { items: unknown[]; metadata: { continue?: string } };
      pages++;
      items += l.items.length;
      cont = l.metadata.continue ?? '';
    } while (cont);
  });
  return { ms, pages, items };
}

async function fullList(h: Http, ns: string, want: number): Promise<number> {
  return timed(async () => {
    const r = await h.request('GET', `/api/v1/namespaces/${ns}/configmaps`);
    const n = (JSON.parse(r.body) as { items: unknown[] }).items.length;
    if (n !== want) throw new Error(`listed ${n}, wanted ${want}`);
  });
}

const daemonArgs = (i: number, extra: string[] = []) => [
  '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--metrics-addr=',
  '--pod-cidr', `127.${61 + 2 * i}.0.0/16`, '--service-cidr', `127.${62 + 2 * i}.0.0/16`,
  '--node-ip', `127.0.${61 + 2 * i}.1`, '--nodeport-addresses', `127.0.${61 + 2 * i}.1`,
  '--lb-pool', `127.${66 + i}.0.0/16`, '--log-level', 'warn', ...extra,
];

async function withDaemon<T>(args: string[], fn: (d: RunningDaemon, h: Http) => Promise<T>): Promise<T> {
  const d = await startDaemon(args, { timeoutMs: 60_000 });
  const h = httpClient(await daemonApi(d));
  try {
    return await fn(d, h);
  } finally {
    h.close();
    await d.stop();
  }
}

async function namespace(h: Http, name: string): Promise<void> {
  const r = await h.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  if (r.status !== 201) throw new Error(`namespace ${name}: ${r.status}`);
}

async function benchApi(quick: boolean, parts: Set<Part>): Promise<Record<string, unknown>> {
  return withDaemon(daemonArgs(0), async (d, h) => {
    const out: Record<string, unknown> = {};
    if (parts.has('api')) {
      const small = quick ? 3_000 : 10_000;
      await namespace(h, 'bench');
      out.apiCreatesPerSec = Math.round(await createMany(h, 'bench', 0, small));
      out.apiCreatesCount = small;
      const lists: number[] = [];
      for (let k = 0; k < 5; k++) lists.push(await fullList(h, 'bench', small));
      out.list10kMsMedian = r1(median(lists));
      out.list10kMs = lists.map(r1);
      const pages10: number[] = [];
      let p10 = { pages: 0, items: 0 };
      for (let k = 0; k < 3; k++) {
        const p = await pagedList(h, 'bench', 500);
        if (p.items !== small) throw new Error(`paged list of ${small} gave ${p.items}`);
        pages10.push(p.ms);
        p10 = p;
      }
      out.paged10k = { objects: small, pages: p10.pages, totalMsMedian: r1(median(pages10)), msPerPage: r1(median(pages10) / p10.pages) };
      const big = quick ? 9_000 : 30_000;
      await createMany(h, 'bench', small, big - small, 300_000);
      const pages30: number[] = [];
      let p30 = { pages: 0, items: 0 };
      for (let k = 0; k < 3; k++) {
        const p = await pagedList(h, 'bench', 500);
        if (p.items !== big) throw new Error(`paged list of ${big} gave ${p.items}`);
        pages30.push(p.ms);
        p30 = p;
      }
      out.paged30k = { objects: big, pages: p30.pages, totalMsMedian: r1(median(pages30)), msPerPage: r1(median(pages30) / p30.pages) };
      out.pagedGrowth = r1((10 * median(pages30)) / median(pages10)) / 10;
    }
    if (parts.has('watchers')) out.watchers = await benchWatchers(h, d.proc.pid!, quick);
    return out;
  });
}

/** creates/s and the daemon's CPU ms per create (less sensitive to a busy machine than the rate) */
async function createsWithCpu(h: Http, pid: number, ns: string, from: number, count: number): Promise<{ perSec: number; cpuMs: number }> {
  const c0 = cpuSeconds([pid]);
  const perSec = await createMany(h, ns, from, count);
  return { perSec, cpuMs: ((cpuSeconds([pid]) - c0) * 1000) / count };
}

async function benchWatchers(h: Http, pid: number, quick: boolean): Promise<Record<string, unknown>> {
  const per = quick ? 1_000 : 3_000;
  const rounds = quick ? 1 : 2;
  const nWatch = 100;
  const with0: number[] = [];
  const with100: number[] = [];
  const cpu0: number[] = [];
  const cpu100: number[] = [];
  let next = 0;
  for (let round = 0; round < rounds; round++) {
    const ns0 = `w0-${round}`;
    const ns100 = `w100-${round}`;
    await namespace(h, ns0);
    await namespace(h, ns100);
    const a = await createsWithCpu(h, pid, ns0, next, per);
    with0.push(a.perSec);
    cpu0.push(a.cpuMs);
    next += per;
    const rv = (JSON.parse((await h.request('GET', `/api/v1/namespaces/${ns100}/configmaps?limit=1`)).body) as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
    const seen = new Array<number>(nWatch).fill(0);
    // opened 10 at a time: the API closes the oldest of too many connections still in their
    // TLS handshake (its guard against strangers), and on a busy machine handshakes are slow
    const stops: Array<() => void> = [];
    for (let i = 0; i < nWatch; i += 10) {
      stops.push(
        ...(await Promise.all(
          Array.from({ length: 10 }, (_, j) => h.watch(`/api/v1/namespaces/${ns100}/configmaps?watch=true&resourceVersion=${rv}`, (l) => l.startsWith('{"type":"ADDED"') && seen[i + j]!++)),
        )),
      );
    }
    try {
      const c0 = cpuSeconds([pid]);
      with100.push(await createMany(h, ns100, next, per));
      next += per;
      const deadline = Date.now() + 60_000;
      while (seen.some((x) => x < per) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      // until every watcher has every event: the fan-out is part of the cost
      cpu100.push(((cpuSeconds([pid]) - c0) * 1000) / per);
      const short = seen.filter((x) => x < per).length;
      if (short) throw new Error(`${short} of ${nWatch} watchers did not get all ${per} events within 60 s`);
    } finally {
      for (const s of stops) s();
    }
  }
  return {
    createsPerRound: per,
    rounds,
    watchers: nWatch,
    createsPerSecNoWatch: Math.round(median(with0)),
    createsPerSec100Watches: Math.round(median(with100)),
    slowdown: r1((10 * median(with0)) / median(with100)) / 10,
    cpuMsPerCreateNoWatch: r1(100 * median(cpu0)) / 100,
    cpuMsPerCreate100Watches: r1(100 * median(cpu100)) / 100,
    raw0: with0.map(Math.round),
    raw100: with100.map(Math.round),
  };
}

// ---------------------------------------------------------------- two daemons, one Redis

async function benchCluster(quick: boolean): Promise<Record<string, unknown>> {
  const server = await startRedisServer();
  try {
    const store = ['--store', server.url];
    return await withDaemon(daemonArgs(1, store), (_a, writer) =>
      withDaemon(daemonArgs(2, store), async (_b, reader) => {
        await namespace(writer, 'lat');
        const n = quick ? 200 : 1_000;
        const sentAt = new Map<string, number>();
        const lat: number[] = [];
        const rv = (JSON.parse((await reader.request('GET', '/api/v1/namespaces/lat/configmaps?limit=1')).body) as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
        const stop = await reader.watch(`/api/v1/namespaces/lat/configmaps?watch=true&resourceVersion=${rv}`, (l) => {
          const m = /"name":"(lat-\d+)"/.exec(l);
          const t0 = m && sentAt.get(m[1]!);
          if (t0 !== undefined && t0 !== null && l.startsWith('{"type":"ADDED"')) lat.push(performance.now() - t0);
        });
        try {
          // paced, one at a time: latency, not throughput (4 per 10 ms at most)
          for (let i = 0; i < n; i++) {
            const name = `lat-${i}`;
            sentAt.set(name, performance.now());
            const r = await writer.request('POST', '/api/v1/namespaces/lat/configmaps', configMap(name));
            if (r.status !== 201) throw new Error(`create ${name}: ${r.status}`);
            if (i % 4 === 3) await new Promise((r) => setTimeout(r, 10));
          }
          const deadline = Date.now() + 30_000;
          while (lat.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        } finally {
          stop();
        }
        if (lat.length < n) throw new Error(`the other daemon's watch saw ${lat.length} of ${n} creates within 30 s`);
        return { creates: n, p50Ms: r1(pct(lat, 50)), p99Ms: r1(pct(lat, 99)), maxMs: r1(Math.max(...lat)) };
      }),
    );
  } finally {
    await server.close();
  }
}

// ---------------------------------------------------------------- report

export interface StoreResults {
  date: string;
  quick: boolean;
  machine: { nproc: number; cpuModel: string; loadAtStart: string; loadAtEnd?: string };
  storage?: Record<string, number>;
  redis?: Record<string, number>;
  api?: Record<string, unknown>;
  cluster?: Record<string, unknown>;
  /** [what, value, reference] per figure, for bench/run.ts's table */
  rows: Array<[string, string, string]>;
  errors: string[];
}

export async function benchStore(o: { quick?: boolean; parts?: Part[] } = {}): Promise<StoreResults> {
  const quick = o.quick ?? false;
  const parts = new Set<Part>(o.parts ?? PARTS);
  const res: StoreResults = {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    quick,
    machine: { nproc: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', loadAtStart: os.loadavg().map((x) => x.toFixed(2)).join(' ') },
    rows: [],
    errors: [],
  };
  const part = async (name: string, fn: () => Promise<void>) => {
    try {
      console.error(`store bench: ${name}`);
      await fn();
    } catch (e) {
      res.errors.push(`${name}: ${(e as Error).message.split('\n')[0]}`);
      console.error(`store bench: ${name} failed: ${(e as Error).message}`);
    }
  };
  if (parts.has('storage')) await part('storage', async () => void (res.storage = await benchStorage(quick)));
  if (parts.has('redis')) await part('redis', async () => void (res.redis = await benchRedis(quick)));
  if (parts.has('api') || parts.has('watchers')) await part('api', async () => void (res.api = await benchApi(quick, parts)));
  if (parts.has('cluster')) await part('cluster', async () => void (res.cluster = await benchCluster(quick)));
  res.machine.loadAtEnd = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  res.rows = storeRows(res);
  return res;
}

/** one line per figure: [what, value, reference] */
export function storeRows(r: StoreResults): Array<[string, string, string]> {
  const rows: Array<[string, string, string]> = [];
  const s = r.storage;
  if (s) rows.push([`embedded storage, acknowledged writes/s (fsync on, ${WRITERS} writers, 1 KB, ${fmt(s.objects!)} × ${s.rounds})`, `${fmt(s.embeddedWritesPerSec!)}/s`, `bare group-commit journal on the same disk ${fmt(s.groupCommitCeilingPerSec!)}/s: ${fmt(s.ratio!)}×`]);
  const rd = r.redis;
  if (rd) rows.push([`redis storage, acknowledged writes/s (${WRITERS} writers, 1 KB)`, `${fmt(rd.redisStorageWritesPerSec!)}/s`, `redis-benchmark -t set -c ${WRITERS} -d 1024 on the same server ${fmt(rd.redisBenchmarkSetPerSec!)}/s: ${fmt(rd.ratio!)}×`]);
  const a = r.api as Record<string, number & Record<string, number>> | undefined;
  if (a?.apiCreatesPerSec) rows.push([`API ConfigMap creates/s (embedded, HTTPS, ${WRITERS} clients, 1 KB)`, `${fmt(a.apiCreatesPerSec)}/s`, r.storage ? `embedded storage alone ${fmt(r.storage.embeddedWritesPerSec!)}/s` : '']);
  if (a?.list10kMsMedian) rows.push([`list ${fmt(a.apiCreatesCount)} ConfigMaps over the API (JSON, median of 5)`, `${fmt(a.list10kMsMedian)} ms`, 'goal < 50 ms']);
  if (a?.paged10k && a.paged30k) {
    rows.push([`paged list (limit=500) of ${fmt(a.paged10k.objects!)}, all pages`, `${fmt(a.paged10k.totalMsMedian!)} ms (${fmt(a.paged10k.msPerPage!)} ms/page)`, '']);
    rows.push([`paged list (limit=500) of ${fmt(a.paged30k.objects!)}, all pages`, `${fmt(a.paged30k.totalMsMedian!)} ms (${fmt(a.paged30k.msPerPage!)} ms/page)`, `${fmt(a.pagedGrowth)}× the ${fmt(a.paged10k.objects!)} time for ${fmt(a.paged30k.objects! / a.paged10k.objects!)}× the objects (linear: ${fmt(a.paged30k.objects! / a.paged10k.objects!)}×)`]);
  }
  const w = a?.watchers as Record<string, number> | undefined;
  if (w) {
    rows.push([`API creates/s with ${w.watchers} watches of the namespace open (${fmt(w.createsPerRound!)} creates × ${w.rounds})`, `${fmt(w.createsPerSec100Watches!)}/s`, `no watch ${fmt(w.createsPerSecNoWatch!)}/s: ${fmt(w.slowdown!)}× slower`]);
    rows.push([`daemon CPU per create, ${w.watchers} watches open (each event delivered to all)`, `${fmt(w.cpuMsPerCreate100Watches!)} ms`, `no watch ${fmt(w.cpuMsPerCreateNoWatch!)} ms: ${fmt(w.cpuMsPerCreate100Watches! / w.cpuMsPerCreateNoWatch!)}×`]);
  }
  const c = r.cluster as Record<string, number> | undefined;
  if (c) rows.push([`watch delivery across two daemons on one Redis (create on one → event on the other, ${fmt(c.creates!)} creates)`, `p50 ${fmt(c.p50Ms!)} ms · p99 ${fmt(c.p99Ms!)} ms`, `max ${fmt(c.maxMs!)} ms`]);
  return rows;
}

function markdown(r: StoreResults, command: string): string {
  const rows = r.rows;
  return [
    `# bench/store.ts — ${r.date}${r.quick ? ' (quick)' : ''}`,
    '',
    `\`${command}\` on ${r.machine.nproc} × ${r.machine.cpuModel}; load average ${r.machine.loadAtStart} at the start, ${r.machine.loadAtEnd} at the end (the machine is shared). Raw figures: \`store.json\`.`,
    '',
    '| what | value | reference (same run) |',
    '|---|---|---|',
    ...rows.map(([a, b, c]) => `| ${a} | ${b} | ${c} |`),
    '',
    ...(r.errors.length ? ['Not measured:', '', ...r.errors.map((e) => `- ${e}`), ''] : []),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const argv = process.argv.slice(2);
  const quick = argv.includes('--quick');
  const onlyAt = argv.indexOf('--only');
  const parts = onlyAt >= 0 ? (argv[onlyAt + 1] ?? '').split(',').filter(Boolean) : [...PARTS];
  for (const p of parts) if (!PARTS.includes(p as Part)) throw new Error(`--only: unknown part "${p}" (${PARTS.join(', ')})`);
  const outAt = argv.indexOf('--out');
  const out = outAt >= 0 ? argv[outAt + 1]! : quick ? undefined : join(ROOT, 'bench', 'results');
  const r = await benchStore({ quick, parts: parts as Part[] });
  const md = markdown(r, `node --import tsx bench/store.ts ${argv.join(' ')}`.trim());
  console.log(md);
  if (out) {
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'store.json'), JSON.stringify(r, null, 2) + '\n');
    writeFileSync(join(out, 'store.md'), md);
    console.error(`written: ${join(out, 'store')}.{json,md}`);
  }
}
