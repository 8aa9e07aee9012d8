/**
 * The README's worked example, as a user runs it: `kubeloop up -f config/examples/two-tier/` —
 * a Python http.server of 2 replicas (code from a ConfigMap volume, bound to $POD_IP) that calls
 * the built-in redis image by its short name. Both replicas answer through their Service, and
 * each reaches redis (one shared counter).
 */
import t from 'tap';
import { startDaemon, tableAddresses } from './helpers/daemon.js';
import { get } from './helpers/http.js';
import { waitFor } from './helpers/wait.js';

t.test('two-tier example: frontend x2 → redis by name', async (t) => {
  const d = await startDaemon([
    '-f', 'config/examples/two-tier/',
    '--pod-cidr', '127.84.0.0/16', '--service-cidr', '127.85.0.0/16', '--lb-pool', '127.86.0.0/16',
    '--node-ip', '127.0.84.1', '--nodeport-addresses', '127.0.84.1',
    '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--metrics-addr=', '--log-level', 'warn',
  ]);
  t.teardown(() => d.stop());
  const out = d.stdout();
  t.match(out, /default\/frontend\s+ClusterIP\s+2\/2/, `both replicas ready in:\n${out}\n${d.stderr()}`);
  const [addr] = tableAddresses(out, 'default/frontend');
  t.ok(addr, 'the frontend has a ClusterIP');
  const seen = new Map<string, number[]>();
  // round robin over 2 replicas: a few requests reach both
  await waitFor(async () => {
    const r = await get(`http://${addr}/`);
    const m = /^pod=(\S+) hits=(\d+)$/m.exec(r.body);
    if (r.status !== 200 || !m) throw new Error(`unexpected answer ${r.status}: ${r.body}`);
    seen.set(m[1], [...(seen.get(m[1]) ?? []), Number(m[2])]);
    return seen.size === 2 && [...seen.values()].every((h) => h.length >= 2);
  }, { timeoutMs: 10_000, what: 'both replicas answering twice' });
  t.equal(seen.size, 2, `two replicas answered: ${[...seen.keys()].join(' ')}`);
  const hits = [...seen.values()].flat().sort((a, b) => a - b);
  t.equal(new Set(hits).size, hits.length, 'every answer got its own count: one redis behind both replicas');
  t.same(hits, hits.map((_, i) => hits[0] + i), 'the counts run on without a gap');
  t.notMatch(d.stderr(), /MountsNotAtPaths|not at their paths/, 'the code volume is at its mountPath');
});
