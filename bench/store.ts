/**
 * Store figures the foundation issue asks for: writes/s on the embedded store and the time
 * to list 10,000 objects. `node --import tsx bench/store.ts [--quick]`
 */
import { performance } from 'node:perf_hooks';
import http from 'node:http';
import { tmpdir } from 'node:os';
import pino from 'pino';
import { createEmbeddedStore } from '../src/store/embedded.js';
import { InformerFactory } from '../src/store/informer.js';
import { ApiServer } from '../src/server/index.js';
import type { ConfigMap } from '../src/api/types.js';

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

export async function benchStore(quick = false): Promise<Record<string, number>> {
  const n = quick ? 5_000 : 10_000;
  const rounds = quick ? 3 : 5;
  const writeRates: number[] = [];
  const updateRates: number[] = [];
  const listMs: number[] = [];
  const selectorListMs: number[] = [];
  const apiListMs: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const store = await createEmbeddedStore();
    const obj = (i: number): ConfigMap => ({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: `cm-${i}`, namespace: 'default', labels: { app: `a${i % 10}`, tier: 'bench' } },
      data: { key: 'x'.repeat(200), n: String(i) },
    });
    let t0 = performance.now();
    for (let i = 0; i < n; i++) await store.create(obj(i));
    await store.flush(); // count a write once it is in the ioredis backend, not just in memory
    writeRates.push(n / ((performance.now() - t0) / 1000));
    t0 = performance.now();
    for (let i = 0; i < n; i++) {
      await store.mutate<ConfigMap>('ConfigMap', 'default', `cm-${i}`, (c) => {
        c.data = { ...c.data, n: String(i + 1) };
      });
    }
    await store.flush();
    updateRates.push(n / ((performance.now() - t0) / 1000));
    for (let k = 0; k < 5; k++) {
      t0 = performance.now();
      const { items } = await store.list('ConfigMap');
      listMs.push(performance.now() - t0);
      if (items.length !== n) throw new Error(`listed ${items.length}, wanted ${n}`);
      t0 = performance.now();
      await store.list('ConfigMap', { labelSelector: 'app=a3,tier=bench' });
      selectorListMs.push(performance.now() - t0);
    }
    // the same list as kubectl gets it: over HTTP from the API server, as JSON
    const api = new ApiServer({ store, informers: new InformerFactory(store), log: pino({ level: 'silent' }), address: '127.0.0.1', port: 0, stateDir: tmpdir(), insecurePlainHttp: true });
    await api.start();
    for (let k = 0; k < 3; k++) {
      t0 = performance.now();
      const bytes = await getBytes(`${api.url}/api/v1/namespaces/default/configmaps`);
      apiListMs.push(performance.now() - t0);
      if (bytes < n * 200) throw new Error(`API list too short: ${bytes} bytes`);
    }
    await api.stop();
    await store.flush();
    await store.close();
  }
  return {
    objects: n,
    createsPerSec: Math.round(median(writeRates)),
    updatesPerSec: Math.round(median(updateRates)),
    listAllMsMedian: Number(median(listMs).toFixed(2)),
    listAllMsMax: Number(Math.max(...listMs).toFixed(2)),
    listSelectorMsMedian: Number(median(selectorListMs).toFixed(2)),
    apiListJsonMsMedian: Number(median(apiListMs).toFixed(1)),
  };
}

function getBytes(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => (n += c.length));
        res.on('end', () => resolve(n));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const quick = process.argv.includes('--quick');
  console.log(JSON.stringify(await benchStore(quick), null, 2));
}
