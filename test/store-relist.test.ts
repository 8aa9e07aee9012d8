/**
 * A registry whose change feed was trimmed past it (its Redis connection was gone while
 * another daemon wrote more than the stream keeps) lists again, and informers on it relist as
 * client-go's reflector does: they end up with exactly what storage holds, and their handlers
 * are told the difference as ordinary adds, updates and deletes.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import pino from 'pino';
import { RedisStorage } from '../src/store/backends/redis.js';
import { createStore } from '../src/store/embedded.js';
import { Informer } from '../src/store/informer.js';
import type { ConfigMap } from '../src/api/types.js';
import { startRedisServer } from './helpers/redis-server.js';
import { waitFor } from './helpers/wait.js';

const log = pino({ level: 'silent' });

t.test('a trimmed feed: the registry re-lists, informers relist and converge', async (t) => {
  const redis = await startRedisServer();
  t.teardown(() => redis.close());
  const cli = (...args: string[]): string => execFileSync('redis-cli', ['-p', String(redis.port), ...args], { encoding: 'utf8' }).trim();
  // daemon A connects as its own user, so the test can cut A off (and keep it off) alone
  cli('ACL', 'SETUSER', 'daemon-a', 'on', '>a-password-for-tests', '~*', '&*', '+@all');
  const a = await createStore(
    await RedisStorage.open({ url: `redis://daemon-a:a-password-for-tests@127.0.0.1:${redis.port}`, log, streamMaxLen: 20, watchBlockMs: 200 }),
    { log },
  );
  t.teardown(() => a.close());
  const b = await createStore(await RedisStorage.open({ url: redis.url, log, streamMaxLen: 20 }), { log });
  t.teardown(() => b.close());

  const cm = (name: string, v: string): ConfigMap => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'default' }, data: { v } });
  for (const n of ['keep', 'change', 'drop']) await b.create(cm(n, '1'));

  const inf = new Informer<ConfigMap>(a, 'ConfigMap', { namespace: 'default' });
  const seen = { adds: [] as string[], updates: [] as string[], deletes: [] as string[] };
  inf.addHandler({
    onAdd: (o) => seen.adds.push(o.metadata.name),
    onUpdate: (_o, c) => seen.updates.push(c.metadata.name),
    onDelete: (o) => seen.deletes.push(o.metadata.name),
  });
  t.teardown(() => inf.stop());
  await inf.start();
  t.same(inf.list().map((o) => o.metadata.name).sort(), ['change', 'drop', 'keep'], 'synced');
  seen.adds.length = 0;

  // cut A off and keep it off while B writes far more than the stream keeps
  cli('ACL', 'SETUSER', 'daemon-a', 'off');
  cli('CLIENT', 'KILL', 'USER', 'daemon-a');
  await b.mutate<ConfigMap>('ConfigMap', 'default', 'change', (o) => void (o.data = { v: '2' }));
  await b.delete('ConfigMap', 'default', 'drop');
  for (let i = 0; i < 60; i++) await b.create(cm(`new-${i}`, '1'));
  t.ok(Number(cli('XLEN', 'kubeloop:changes')) < 60, 'the stream no longer holds what A missed');
  cli('ACL', 'SETUSER', 'daemon-a', 'on');

  await waitFor(() => inf.list().length === 62, { what: 'the informer to hold all 62 ConfigMaps', timeoutMs: 20_000 });
  const want = (await b.list<ConfigMap>('ConfigMap', { namespace: 'default' })).items.map((o) => `${o.metadata.name}@${o.metadata.resourceVersion}`).sort();
  t.same(inf.list().map((o) => `${o.metadata.name}@${o.metadata.resourceVersion}`).sort(), want, 'exactly what storage holds, at its versions');
  t.ok(inf.relists >= 1, `the informer listed again (${inf.relists})`);
  t.same(seen.deletes, ['drop'], 'the delete it missed is told as a delete');
  t.same(seen.updates, ['change'], 'the update it missed is told as an update');
  t.equal(seen.adds.length, 60, 'the creates it missed are told as adds');
  t.equal(inf.get('default', 'change')?.data?.v, '2');

  // and it keeps following: a write through A after the relist reaches the informer
  await a.create(cm('after', '1'));
  await waitFor(() => inf.get('default', 'after'), { what: 'a write after the relist' });
  t.equal(Number(a.resourceVersion) >= Number(b.resourceVersion), true, 'A caught up with B');
});
