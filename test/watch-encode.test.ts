/**
 * Issue 15: a watch event's object is encoded once however many watchers get it (the cache is
 * keyed on the frozen stored object). What it must not change: every watcher still gets
 * exactly `JSON.stringify({ type, object })` per line, each event the object as it was at
 * that event (an update is never answered with an older encoding), and an object that is not
 * frozen is encoded afresh each time. The speed-up itself is measured in bench/store.ts.
 */
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import { deepFreeze } from '../src/api/types.js';
import { ApiServer } from '../src/server/index.js';
import { encodeObject, watchLine } from '../src/server/watch.js';
import { createEmbeddedStore } from '../src/store/embedded.js';
import { InformerFactory } from '../src/store/informer.js';
import { waitFor } from './helpers/wait.js';

t.test('watchLine is JSON.stringify({ type, object }); a mutable object is never served stale', async (t) => {
  const frozen = deepFreeze({ kind: 'ConfigMap', metadata: { name: 'a', resourceVersion: '7' }, data: { 'k"\n': 'v\u2028' } });
  t.equal(watchLine('ADDED', frozen), `${JSON.stringify({ type: 'ADDED', object: frozen })}\n`);
  t.equal(watchLine('MODIFIED', frozen), `${JSON.stringify({ type: 'MODIFIED', object: frozen })}\n`, 'the cached text, another type');
  const mutable = { metadata: { name: 'b' }, data: { n: '1' } };
  t.equal(encodeObject(mutable), JSON.stringify(mutable));
  mutable.data.n = '2';
  t.equal(encodeObject(mutable), '{"metadata":{"name":"b"},"data":{"n":"2"}}', 'a changed mutable object is encoded again');
  t.equal(watchLine('ERROR', { kind: 'Status', code: 410 }), '{"type":"ERROR","object":{"kind":"Status","code":410}}\n');
});

t.test('20 watchers of one namespace get the same bytes, each event as it was', async (t) => {
  const log = pino({ level: 'silent' });
  const stateDir = await mkdtemp(join(tmpdir(), 'kubeloop-watch-encode-'));
  const store = await createEmbeddedStore({ fsync: false });
  const informers = new InformerFactory(store);
  const api = new ApiServer({ store, informers, log, address: '127.0.0.1', port: 0, stateDir, insecurePlainHttp: true });
  await api.start();
  const reqs: http.ClientRequest[] = [];
  t.teardown(async () => {
    for (const r of reqs) r.destroy();
    await api.stop();
    informers.stop();
    await store.close();
    await rm(stateDir, { recursive: true, force: true });
  });
  const rv = (await store.list('ConfigMap')).resourceVersion;
  const streams: string[] = [];
  await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      new Promise<void>((resolve, reject) => {
        streams[i] = '';
        const r = http.get(`${api.url}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=${rv}`, { agent: false }, (res) => {
          res.setEncoding('utf8').on('data', (c: string) => (streams[i] += c));
          resolve();
        });
        r.on('error', reject);
        reqs.push(r);
      }),
    ),
  );
  for (let i = 0; i < 10; i++) await store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `c${i}`, namespace: 'default' }, data: { v: '0' } });
  for (let i = 0; i < 5; i++) await store.mutate<{ data?: Record<string, string> } & import('../src/api/types.js').KObject>('ConfigMap', 'default', `c${i}`, (c) => void (c.data = { v: '1' }));
  for (let i = 0; i < 2; i++) await store.delete('ConfigMap', 'default', `c${i}`);
  const lines = (s: string) => s.split('\n').filter(Boolean);
  await waitFor(() => streams.every((s) => lines(s).length >= 17), { what: '17 events on every watch' });
  t.ok(streams.every((s) => s === streams[0]), 'every watcher got the same bytes');
  const events = lines(streams[0]).map((l) => JSON.parse(l) as { type: string; object: { metadata: { name: string; resourceVersion: string }; data: { v: string } } });
  t.same(events.map((e) => `${e.type} ${e.object.metadata.name} ${e.object.data.v}`), [
    ...Array.from({ length: 10 }, (_, i) => `ADDED c${i} 0`),
    ...Array.from({ length: 5 }, (_, i) => `MODIFIED c${i} 1`),
    ...Array.from({ length: 2 }, (_, i) => `DELETED c${i} 1`),
  ], 'each event carries the object as it was then');
  const rvs = events.map((e) => Number(e.object.metadata.resourceVersion));
  t.same(rvs, [...rvs].sort((a, b) => a - b), 'in resourceVersion order');
  t.equal(new Set(rvs).size, 17, 'each event its own resourceVersion');
  t.ok(lines(streams[0]).every((l) => l === JSON.stringify(JSON.parse(l))), 'each line is exactly the JSON of its event');
});
