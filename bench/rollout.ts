/**
 * Zero-downtime rollouts, measured: a steady fixed-rate HTTP load through a Service's ClusterIP
 * while its Deployment (3 replicas, maxSurge 1, maxUnavailable 0, a readiness probe) rolls to a
 * new template again and again. Reports failed / total requests, once with a new connection per
 * request and once with keep-alive clients (Node's default agent, no retries).
 *
 *   node --import tsx bench/rollout.ts [--requests 50000] [--rps N] [--keep-alive-only | --no-keep-alive-only]
 *
 * Default rates: 500/s with a new connection per request (two TCP handshakes per request through
 * the proxy: on a 2-CPU machine 1000/s of those already queues for seconds without any rollout,
 * and an open-loop load past capacity times out whatever the rollout does), 1000/s with
 * keep-alive.
 *
 * Everything runs on loopback: the cluster in this process (store, controllers, one node agent
 * with real pod processes, the proxy), the load client in a child process. Bounded: the load
 * ends after `requests`, the rollouts when the load ends. Writes bench/results/rollout.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Deployment, Service } from '../src/api/types.js';
import { waitFor } from '../test/helpers/wait.js';
import { rolledOutTo, startWorkloads } from '../test/workloads-helpers.js';
import { type LoadResult, echoAnswers, echoDeployment, echoService, fixedRateLoadInChild } from '../test/workloads-load.js';

const arg = (name: string, d: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : d;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
};
const REQUESTS = Math.min(arg('requests', 50_000), 1_000_000);
const rpsFor = (keepAlive: boolean): number => Math.min(arg('rps', keepAlive ? 1000 : 500), 5000);
const NS = 'default';

interface Variant {
  keepAlive: boolean;
  load: LoadResult;
  rollouts: number;
  rolloutSeconds: number[];
}

async function variant(keepAlive: boolean, index: number): Promise<Variant> {
  const teardowns: Array<() => unknown> = [];
  const w = await startWorkloads(
    { teardown: (fn) => teardowns.push(fn) },
    {
      podCidr: `127.${248 + index}.0.0/16`,
      serviceCidr: `127.${120 + index}.0.0/16`,
      nodes: [{ name: 'bench-node', ip: `127.0.${70 + index}.1`, podCidr: `127.${248 + index}.0.0/16` }],
      proxyNodeAddresses: [`127.0.${70 + index}.1`],
    },
  );
  try {
    const { store } = w;
    const name = keepAlive ? 'bench-ka' : 'bench';
    await store.create<Deployment>(echoDeployment(name, NS, '0', 10));
    const svc = await store.create<Service>(echoService(name, NS));
    const ip = svc.spec!.clusterIP!;
    const rolledOut = (version: string) => rolledOutTo(store, NS, name, version);
    await waitFor(() => rolledOut('0'), { what: 'initial rollout', timeoutMs: 20_000 });
    await waitFor(() => echoAnswers(ip), { what: 'service answers', timeoutMs: 10_000 });

    const loading = fixedRateLoadInChild({ host: ip, port: 80, rps: rpsFor(keepAlive), count: REQUESTS, keepAlive });
    let finished = false;
    void loading.result.finally(() => (finished = true));
    await loading.started;
    const rolloutSeconds: number[] = [];
    for (let v = 1; !finished; v++) {
      const t0 = Date.now();
      await store.mutate<Deployment>('Deployment', NS, name, (d) => {
        d.spec!.template.spec!.containers[0].env = [{ name: 'VERSION', value: String(v) }];
      });
      await waitFor(async () => finished || (await rolledOut(String(v))), { what: `rollout ${v}`, timeoutMs: 60_000, intervalMs: 50 });
      if (!finished) rolloutSeconds.push((Date.now() - t0) / 1000);
    }
    const load = await loading.result;
    return { keepAlive, load, rollouts: rolloutSeconds.length, rolloutSeconds };
  } finally {
    for (const fn of teardowns.reverse()) await fn();
  }
}

const results: Variant[] = [];
const only = process.argv.includes('--keep-alive-only') ? [true] : process.argv.includes('--no-keep-alive-only') ? [false] : [false, true];
for (const [i, keepAlive] of only.entries()) {
  process.stderr.write(`rollout bench: ${REQUESTS} requests at ${rpsFor(keepAlive)}/s, keep-alive ${keepAlive ? 'on' : 'off'}...\n`);
  const r = await variant(keepAlive, i);
  results.push(r);
  const med = [...r.rolloutSeconds].sort((a, b) => a - b)[Math.floor(r.rolloutSeconds.length / 2)] ?? NaN;
  process.stdout.write(
    `keep-alive ${keepAlive ? 'on ' : 'off'}: ${r.load.failed} failed / ${r.load.total} requests, ${r.load.retried} sent again after the keep-alive close race (${r.rollouts} complete rollouts, median ${med.toFixed(1)} s each, ${Object.keys(r.load.byPod).length} pods answered)${r.load.failed ? ` ${JSON.stringify(r.load.errors)} per second: ${JSON.stringify(r.load.failedPerSecond)}` : ''}\n`,
  );
}
const dir = join(import.meta.dirname, 'results');
mkdirSync(dir, { recursive: true });
writeFileSync(
  join(dir, 'rollout.json'),
  `${JSON.stringify({ date: new Date().toISOString(), requests: REQUESTS, node: process.version, cpus: availableParallelism(), results: results.map((r) => ({ keepAlive: r.keepAlive, rps: rpsFor(r.keepAlive), failed: r.load.failed, retried: r.load.retried, total: r.load.total, errors: r.load.errors, rollouts: r.rollouts, rolloutSeconds: r.rolloutSeconds, seconds: r.load.seconds })) }, null, 2)}\n`,
);
