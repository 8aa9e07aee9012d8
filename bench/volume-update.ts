// ConfigMap write → new content in a pod's configMap volume file (the atomic writer's file the
// pod's bind mount shows), p50/p99 over 50 updates, beside the API write's own round trip.
// Run: node --import tsx bench/volume-update.ts  (writes bench/results/volume-update-<time>.md)
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { startDaemon } from '../test/helpers/daemon.js';
import { daemonApi } from '../test/helpers/api.js';

const N = 50;
const d = await startDaemon(['--pod-cidr', '127.238.0.0/16', '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0']);
try {
  const api = await daemonApi(d);
  await api.request('POST', '/api/v1/namespaces/default/configmaps', { body: { metadata: { name: 'b' }, data: { k: 'v0' } } });
  await api.request('POST', '/api/v1/namespaces/default/pods', {
    body: {
      metadata: { name: 'b' },
      spec: { containers: [{ name: 'c', image: 'busybox', command: ['sleep', '600'], volumeMounts: [{ name: 'v', mountPath: '/etc/kl-bench' }] }], volumes: [{ name: 'v', configMap: { name: 'b' } }] },
    },
  });
  let file = '';
  for (let i = 0; i < 500 && !file; i++) {
    const dir = (await readdir(`${d.stateDir}/pods`).catch(() => [] as string[])).find((e) => e.startsWith('default_b_'));
    if (dir) file = (await readFile(`${d.stateDir}/pods/${dir}/_volumes/v/k`).then(() => `${d.stateDir}/pods/${dir}/_volumes/v/k`).catch(() => '')) as string;
    if (!file) await new Promise((r) => setTimeout(r, 20));
  }
  const change: number[] = [];
  const write: number[] = [];
  for (let i = 1; i <= N; i++) {
    const t0 = performance.now();
    await api.request('PATCH', '/api/v1/namespaces/default/configmaps/b', { body: { data: { k: `v${i}` } }, headers: { 'content-type': 'application/merge-patch+json' } });
    write.push(performance.now() - t0);
    while ((await readFile(file, 'utf8').catch(() => '')) !== `v${i}`) await new Promise((r) => setImmediate(r));
    change.push(performance.now() - t0);
  }
  const q = (a: number[], p: number) => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(p * a.length))]!.toFixed(1);
  const md = `# ConfigMap change → file in the pod's volume (${N} updates, ${new Date().toISOString()})\n\n| | p50 ms | p99 ms |\n|---|---|---|\n| API PATCH round trip (reference) | ${q(write, 0.5)} | ${q(write, 0.99)} |\n| PATCH sent → new content in the volume file | ${q(change, 0.5)} | ${q(change, 0.99)} |\n| ratio (file / API write), p50 | ${(Number(q(change, 0.5)) / Number(q(write, 0.5))).toFixed(2)} | |\n`;
  console.log(md);
  await writeFile(`bench/results/volume-update-${new Date().toISOString().replace(/[:.]/g, '-')}.md`, md);
} finally {
  await d.stop();
}
