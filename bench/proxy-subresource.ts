/**
 * The API server's `services/proxy` against a direct connection, in the same run: an in-process
 * API server (plain HTTP on loopback, the test mode) with a Service whose Endpoints name a local
 * HTTP server on 127.0.0.1; interleaved rounds of
 *   - a 32 MiB download through `/api/v1/namespaces/default/services/blob:80/proxy/blob` and
 *     straight from the server (MB/s),
 *   - 200 small GETs each way on new connections (latency p50/p99).
 * Reported as medians and the proxy/direct ratio, to bench/results/proxy-subresource.{json,md}.
 *
 *   node --import tsx bench/proxy-subresource.ts [--rounds 5] [--mb 32]
 *
 * Loopback only; bounded in count; everything it starts is stopped at the end.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { ApiServer } from '../src/server/index.js';
import { createEmbeddedStore } from '../src/store/embedded.js';
import { InformerFactory } from '../src/store/informer.js';
import { fmt, median, percentile } from './stats.js';

const arg = (name: string, def: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Math.max(1, Math.min(Number(process.argv[i + 1]) || def, 1024)) : def;
};
const ROUNDS = arg('rounds', 5);
const MB = arg('mb', 32);
const SMALL = 200;

const chunk = Buffer.alloc(1 << 20, 0x61);
const backend = http.createServer((req, res) => {
  if (req.url === '/blob') {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(MB << 20) });
    let left = MB;
    const pump = (): void => {
      while (left > 0) {
        left--;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  } else res.end('ok\n');
});
await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
const bport = (backend.address() as AddressInfo).port;

const log = pino({ level: 'silent' });
const dir = mkdtempSync(join(tmpdir(), 'kubeloop-bench-proxy-'));
const store = await createEmbeddedStore({ log, allowLoopbackEndpoints: true });
const informers = new InformerFactory(store);
const api = new ApiServer({ store, informers, log, address: '127.0.0.1', port: 0, stateDir: dir, insecurePlainHttp: true });
await api.start();
await store.create({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'blob', namespace: 'default' }, spec: { ports: [{ port: 80, targetPort: bport }] } } as never);
await store.create({ apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'blob', namespace: 'default' }, subsets: [{ addresses: [{ ip: '127.0.0.1' }], ports: [{ port: bport }] }] } as never);
const aport = Number(new URL(api.url).port);

function get(port: number, path: string): Promise<{ ms: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => (bytes += c.length));
        res.on('end', () => (res.statusCode === 200 ? resolve({ ms: performance.now() - t0, bytes }) : reject(new Error(`${path}: ${res.statusCode}`))));
      })
      .on('error', reject);
  });
}

const PROXY = '/api/v1/namespaces/default/services/blob:80/proxy';
const mbps = { proxy: [] as number[], direct: [] as number[] };
const lat = { proxy: [] as number[], direct: [] as number[] };
try {
  for (let r = 0; r < ROUNDS; r++) {
    for (const [k, port, prefix] of [['direct', bport, ''], ['proxy', aport, PROXY]] as const) {
      const d = await get(port, `${prefix}/blob`);
      mbps[k].push(d.bytes / (1 << 20) / (d.ms / 1000));
      for (let i = 0; i < SMALL / ROUNDS; i++) lat[k].push((await get(port, `${prefix}/small`)).ms);
    }
  }
} finally {
  await api.stop();
  informers.stop();
  await store.close();
  backend.close();
  rmSync(dir, { recursive: true, force: true });
}
const result = {
  rounds: ROUNDS,
  mb: MB,
  throughputMBps: { direct: median(mbps.direct), proxy: median(mbps.proxy), ratio: median(mbps.proxy) / median(mbps.direct) },
  smallGetMs: {
    direct: { p50: percentile(lat.direct, 50), p99: percentile(lat.direct, 99) },
    proxy: { p50: percentile(lat.proxy, 50), p99: percentile(lat.proxy, 99) },
  },
};
const md = `# services/proxy vs direct (${new Date().toISOString()})

${ROUNDS} interleaved rounds, ${MB} MiB download each, ${lat.proxy.length} small GETs each way (new connections), one machine.

| | direct | through services/proxy | ratio |
|---|---|---|---|
| download MB/s (median) | ${fmt(result.throughputMBps.direct)} | ${fmt(result.throughputMBps.proxy)} | ${fmt(result.throughputMBps.ratio)} |
| small GET p50 ms | ${fmt(result.smallGetMs.direct.p50)} | ${fmt(result.smallGetMs.proxy.p50)} | ${fmt(result.smallGetMs.proxy.p50 / result.smallGetMs.direct.p50)} |
| small GET p99 ms | ${fmt(result.smallGetMs.direct.p99)} | ${fmt(result.smallGetMs.proxy.p99)} | |
`;
writeFileSync(join(import.meta.dirname, 'results', 'proxy-subresource.json'), JSON.stringify(result, null, 2) + '\n');
writeFileSync(join(import.meta.dirname, 'results', 'proxy-subresource.md'), md);
console.log(md);
