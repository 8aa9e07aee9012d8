/**
 * A count a typo away from sane (issue 14, resource exhaustion): `replicas`, `completions`,
 * `parallelism` of 1000000000 and a `status.completedIndexes` of a billion indexes keep a real
 * daemon answering its API with bounded RSS, pods appear at the controllers' bounded rate, and
 * scaling back down recovers. Before the fix a StatefulSet allocated one slot per replica (the
 * event loop froze, RSS climbed) and a Job expanded its completed indexes into a Set (the loop
 * froze until "Set maximum size exceeded").
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import type { Pod } from '../src/api/types.js';
import { type ApiClient, daemonApi } from './helpers/api.js';
import { type RunningDaemon, startDaemon } from './helpers/daemon.js';
import { waitFor } from './helpers/wait.js';

const BILLION = 1_000_000_000;
/** the daemon's RSS may grow to this while ~1,000 pods exist (it was 130 MiB at rest when written) */
const RSS_LIMIT_MIB = 600;
/** one API read must answer within this on a loaded 2-core machine (a frozen loop never does) */
const ANSWER_LIMIT_MS = 3000;

const args = [
  '--service-cidr', '127.117.0.0/16',
  '--pod-cidr', '127.217.0.0/16',
  '--lb-pool', '127.118.0.0/16',
  '--nodeport-addresses', '127.0.217.1',
  '--node-ip', '127.0.217.1',
  '--api-addr', '127.0.0.1:0',
  '--dns-addr', '127.0.0.1:0',
  // pods stay Pending past 2: the test is about the controllers, not about forking
  '--max-pods', '2',
];

const sleeper = { name: 'c', image: 'busybox', command: ['sleep', '300'] };

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

/**
 * For `ms`, reads a namespace through the API every 250 ms and samples the daemon's RSS;
 * resolves to the slowest answer and the largest RSS seen.
 */
async function watchDaemon(d: RunningDaemon, api: ApiClient, ms: number): Promise<{ slowestMs: number; maxRssMiB: number; failures: string[] }> {
  let slowestMs = 0;
  let maxRssMiB = 0;
  const failures: string[] = [];
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const t0 = Date.now();
    try {
      const r = await api.request('GET', '/api/v1/namespaces/kube-system', { timeoutMs: ANSWER_LIMIT_MS * 3 });
      if (r.status !== 200) failures.push(`status ${r.status}`);
    } catch (err) {
      failures.push((err as Error).message);
    }
    slowestMs = Math.max(slowestMs, Date.now() - t0);
    if (d.proc.exitCode !== null) {
      failures.push(`daemon exited ${d.proc.exitCode}`);
      break;
    }
    maxRssMiB = Math.max(maxRssMiB, rssMiB(d.proc.pid!));
    await new Promise((r) => setTimeout(r, 250));
  }
  return { slowestMs, maxRssMiB, failures };
}

async function podsIn(api: ApiClient, ns: string): Promise<Pod[]> {
  const r = await api.request('GET', `/api/v1/namespaces/${ns}/pods`);
  if (r.status !== 200) throw new Error(`list pods: ${r.status} ${r.body}`);
  return r.json<{ items: Pod[] }>().items;
}

async function create(api: ApiClient, path: string, body: unknown): Promise<void> {
  const r = await api.request('POST', path, { body });
  if (r.status !== 201) throw new Error(`POST ${path}: ${r.status} ${r.body}`);
}

async function patch(api: ApiClient, path: string, body: unknown): Promise<void> {
  const r = await api.request('PATCH', path, { body: JSON.stringify(body), headers: { 'content-type': 'application/merge-patch+json' } });
  if (r.status !== 200) throw new Error(`PATCH ${path}: ${r.status} ${r.body}`);
}

t.test('objects with counts of 1e9 keep the daemon answering with bounded RSS, and scaling down recovers', async (t) => {
  const d = await startDaemon(args);
  t.teardown(() => d.stop('SIGKILL'));
  const api = await daemonApi(d);
  const namespace = async (name: string) => create(api, '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });

  const check = async (t: { ok(v: unknown, m: string): void; same(a: unknown, b: unknown, m: string): void }, what: string, ms = 4000) => {
    const w = await watchDaemon(d, api, ms);
    t.same(w.failures, [], `${what}: every API read answered`);
    t.ok(w.slowestMs < ANSWER_LIMIT_MS, `${what}: slowest API read ${w.slowestMs} ms (< ${ANSWER_LIMIT_MS})`);
    t.ok(w.maxRssMiB < RSS_LIMIT_MIB, `${what}: daemon RSS at most ${Math.round(w.maxRssMiB)} MiB (< ${RSS_LIMIT_MIB})`);
  };

  for (const policy of ['Parallel', 'OrderedReady'] as const) {
    await t.test(`StatefulSet ${policy} with replicas ${BILLION}`, async (t) => {
      const ns = `sts-${policy.toLowerCase()}`;
      await namespace(ns);
      const path = `/apis/apps/v1/namespaces/${ns}/statefulsets`;
      await create(api, path, {
        apiVersion: 'apps/v1',
        kind: 'StatefulSet',
        metadata: { name: 'typo' },
        spec: {
          replicas: BILLION,
          podManagementPolicy: policy,
          serviceName: 'typo',
          selector: { matchLabels: { app: 'typo' } },
          template: { metadata: { labels: { app: 'typo' } }, spec: { terminationGracePeriodSeconds: 0, containers: [sleeper] } },
        },
      });
      if (policy === 'Parallel') await waitFor(async () => (await podsIn(api, ns)).length >= 50, { timeoutMs: 15_000, what: '50 pods' });
      else await waitFor(async () => (await podsIn(api, ns)).some((p) => p.metadata?.name === 'typo-0'), { timeoutMs: 15_000, what: 'typo-0' });
      await check(t, `StatefulSet ${policy}`);
      const n = (await podsIn(api, ns)).length;
      // OrderedReady makes typo-1 only once typo-0 is Running and Ready, and so on: one at a time
      if (policy === 'OrderedReady') t.ok(n <= 10, `one pod at a time (${n})`);
      else t.ok(n < 5000, `pods come at the bounded rate (${n})`);

      await patch(api, `${path}/typo/scale`, { spec: { replicas: 1 } });
      await waitFor(
        async () => {
          const pods = await podsIn(api, ns);
          return pods.length === 1 && pods[0].metadata?.name === 'typo-0';
        },
        { timeoutMs: 60_000, intervalMs: 250, what: 'only typo-0 left' },
      );
      t.pass('scaled back to 1: only typo-0 left');
    });
  }

  await t.test(`Indexed Job with completions and parallelism ${BILLION} and a billion completed indexes`, async (t) => {
    const ns = 'job-indexed';
    await namespace(ns);
    const path = `/apis/batch/v1/namespaces/${ns}/jobs`;
    await create(api, path, {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'typo' },
      spec: {
        completions: BILLION,
        parallelism: BILLION,
        completionMode: 'Indexed',
        suspend: true,
        template: { spec: { restartPolicy: 'Never', terminationGracePeriodSeconds: 0, containers: [sleeper] } },
      },
    });
    // every index but the first and the last is already done (as a status writer may claim)
    await patch(api, `${path}/typo/status`, { status: { completedIndexes: `1-${BILLION - 2}` } });
    await patch(api, `${path}/typo`, { spec: { suspend: false } });
    const indexes = await waitFor(
      async () => {
        const pods = await podsIn(api, ns);
        return pods.length === 2 ? pods.map((p) => p.metadata?.annotations?.['batch.kubernetes.io/job-completion-index']).sort() : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 250, what: 'the two missing indexes' },
    );
    t.same(indexes, ['0', String(BILLION - 1)], 'pods only for the indexes not completed');
    await check(t, 'Indexed Job');
    t.equal((await podsIn(api, ns)).length, 2, 'no other index started');
    const r = await api.request('DELETE', `${path}/typo`, { body: { propagationPolicy: 'Background' } });
    t.ok(r.status === 200 || r.status === 202, `DELETE answered ${r.status} ${r.status >= 300 ? JSON.stringify(r.body ?? r).slice(0, 600) : ""}`);
    await waitFor(async () => (await podsIn(api, ns)).length === 0, { timeoutMs: 30_000, intervalMs: 250, what: 'the Job\'s pods gone' });
  });

  await t.test(`Job (NonIndexed) with parallelism ${BILLION}`, async (t) => {
    const ns = 'job-plain';
    await namespace(ns);
    const path = `/apis/batch/v1/namespaces/${ns}/jobs`;
    await create(api, path, {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'typo' },
      spec: { parallelism: BILLION, template: { spec: { restartPolicy: 'Never', terminationGracePeriodSeconds: 0, containers: [sleeper] } } },
    });
    await waitFor(async () => (await podsIn(api, ns)).length >= 50, { timeoutMs: 15_000, what: '50 pods' });
    await check(t, 'Job parallelism');
    await patch(api, `${path}/typo`, { spec: { parallelism: 1 } });
    // the pods deleted by the scale-down count as failed (6 > backoffLimit), so the Job may fail and end its last pod too
    let lastSeen = '';
    t.teardown(() => t.comment(lastSeen));
    const left = await waitFor(
      async () => {
        const pods = await podsIn(api, ns);
        lastSeen = `${pods.length} pods, ${pods.filter((p) => p.metadata?.deletionTimestamp).length} terminating, phases ${[...new Set(pods.map((p) => p.status?.phase))].join('/')}, finalizers ${pods.filter((p) => p.metadata?.finalizers?.length).length}`;
        return pods.length <= 1 ? `${pods.length}` : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250, what: 'at most one pod left' },
    );
    t.pass(`parallelism back to 1: ${left} pod(s) left`);
  });

  await t.test(`Deployment with replicas ${BILLION}, maxSurge 100% and maxUnavailable 50%`, async (t) => {
    const ns = 'deploy';
    await namespace(ns);
    const path = `/apis/apps/v1/namespaces/${ns}/deployments`;
    await create(api, path, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'typo' },
      spec: {
        replicas: BILLION,
        strategy: { rollingUpdate: { maxSurge: '100%', maxUnavailable: '50%' } },
        selector: { matchLabels: { app: 'typo' } },
        template: { metadata: { labels: { app: 'typo' } }, spec: { terminationGracePeriodSeconds: 0, containers: [sleeper] } },
      },
    });
    await waitFor(async () => (await podsIn(api, ns)).length >= 50, { timeoutMs: 15_000, what: '50 pods' });
    await check(t, 'Deployment');
    await patch(api, `${path}/typo/scale`, { spec: { replicas: 1 } });
    await waitFor(async () => (await podsIn(api, ns)).length === 1, { timeoutMs: 60_000, intervalMs: 250, what: 'one pod left' });
    t.pass('scaled back to 1: one pod left');
  });
});
