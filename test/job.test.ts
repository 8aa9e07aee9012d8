import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Job, Pod, Stored } from '../src/api/types.js';
import { waitFor } from './helpers/wait.js';
import { type NodeSpec, alivePids, eventsFor, startWorkloads } from './workloads-helpers.js';

const NS = 'default';
const NODE: NodeSpec = { name: 'job-node', ip: '127.0.50.1', podCidr: '127.246.0.0/18' };

function job(name: string, script: string, spec: Partial<NonNullable<Job['spec']>> = {}, restartPolicy: 'Never' | 'OnFailure' = 'Never', env: Record<string, string> = {}): Job {
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name, namespace: NS },
    spec: {
      ...spec,
      template: {
        spec: {
          restartPolicy,
          terminationGracePeriodSeconds: 1,
          containers: [{ name: 'work', image: 'busybox', command: ['sh', '-c', script], env: Object.entries(env).map(([n, value]) => ({ name: n, value })) }],
        },
      },
    },
  };
}

async function podsOf(store: Awaited<ReturnType<typeof startWorkloads>>['store'], j: Stored<Job>): Promise<Stored<Pod>[]> {
  const { items } = await store.list<Pod>('Pod', { namespace: NS });
  return items.filter((p) => p.metadata.ownerReferences?.some((r) => r.uid === j.metadata.uid));
}

const condition = (j: Job, type: string) => j.status?.conditions?.find((c) => c.type === type && c.status === 'True');

async function finished(store: Awaited<ReturnType<typeof startWorkloads>>['store'], name: string, type: 'Complete' | 'Failed', timeoutMs = 8000) {
  return waitFor(async () => {
    const j = await store.get<Job>('Job', NS, name);
    return condition(j, type) && !j.status?.uncountedTerminatedPods?.succeeded?.length && !j.status?.uncountedTerminatedPods?.failed?.length ? j : undefined;
  }, { what: `job ${name} ${type}`, timeoutMs });
}

t.test('completions and parallelism: 4 successes, never more than 2 at once, each counted once', async (t) => {
  const { store } = await startWorkloads(t, { podCidr: '127.246.0.0/16', nodes: [NODE] });
  let running = 0;
  let most = 0;
  const active = new Set<string>();
  const watch = store.watch<Pod>('Pod', { namespace: NS }, (ev) => {
    const p = ev.object;
    const on = ev.type !== 'DELETED' && !p.metadata.deletionTimestamp && p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed';
    if (on) active.add(p.metadata.name);
    else active.delete(p.metadata.name);
    running = active.size;
    most = Math.max(most, running);
  });
  t.teardown(() => watch.stop());
  const j = await store.create(job('count', 'sleep 0.2; exit 0', { completions: 4, parallelism: 2 }));
  const done = await finished(store, 'count', 'Complete');
  t.match(done.status, { succeeded: 4, active: 0 });
  t.notOk(done.status?.failed, 'no failures');
  t.ok(done.status?.completionTime && done.status.startTime, 'startTime and completionTime');
  t.equal(condition(done, 'Complete')?.reason, 'CompletionsReached');
  t.ok(most <= 2, `at most parallelism pods ran at once (saw ${most})`);
  t.equal(most, 2, 'two ran side by side');
  const pods = await podsOf(store, j);
  t.equal(pods.length, 4, 'four pods, all kept');
  t.ok(pods.every((p) => p.status?.phase === 'Succeeded' && !p.metadata.finalizers?.length), 'succeeded, tracking finalizer removed');
  t.ok(pods.every((p) => p.metadata.labels?.['batch.kubernetes.io/job-name'] === 'count' && p.metadata.labels['batch.kubernetes.io/controller-uid'] === j.metadata.uid));
  const evs = await eventsFor(store, j);
  t.ok(evs.some((e) => e.reason === 'Completed' && e.message === 'Job completed'), 'Completed event');
});

t.test('backoffLimit: Never counts failed pods; OnFailure counts restarts; the running pod is terminated', async (t) => {
  const { store } = await startWorkloads(t, { podCidr: '127.246.0.0/16', nodes: [NODE] });
  const never = await store.create(job('fails', 'exit 3', { backoffLimit: 2 }));
  const failed = await finished(store, 'fails', 'Failed');
  t.equal(condition(failed, 'Failed')?.reason, 'BackoffLimitExceeded');
  t.equal(failed.status?.failed, 3, 'backoffLimit 2: the third failure fails the job');
  t.notOk(failed.status?.succeeded);
  t.equal((await podsOf(store, never)).length, 3, 'three failed pods kept');
  t.ok((await eventsFor(store, never)).some((e) => e.reason === 'BackoffLimitExceeded' && e.type === 'Warning'), 'warning event');

  const onFailure = await store.create(job('restarts', 'exit 1', { backoffLimit: 2 }, 'OnFailure'));
  const f2 = await finished(store, 'restarts', 'Failed');
  t.equal(condition(f2, 'Failed')?.reason, 'BackoffLimitExceeded', 'restarts count against the limit');
  await waitFor(async () => (await podsOf(store, onFailure)).length === 0 || (await podsOf(store, onFailure)).every((p) => p.status?.phase === 'Failed'), {
    what: 'the restarting pod is gone',
    timeoutMs: 5000,
  });
  t.pass('the restarting pod was removed when the job failed');
});

t.test('Indexed: each index once, JOB_COMPLETION_INDEX and the annotation, hostname <job>-<index>', async (t) => {
  const { store } = await startWorkloads(t, { podCidr: '127.246.0.0/16', nodes: [NODE] });
  const out = await mkdtemp(join(tmpdir(), 'kubeloop-job-'));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  const j = await store.create(
    job('idx', 'echo "$JOB_COMPLETION_INDEX $HOSTNAME" > "$OUT/$JOB_COMPLETION_INDEX"', { completions: 3, parallelism: 3, completionMode: 'Indexed' }, 'Never', { OUT: out }),
  );
  const done = await finished(store, 'idx', 'Complete');
  t.equal(done.status?.completedIndexes, '0-2');
  t.equal(done.status?.succeeded, 3);
  const files = (await readdir(out)).sort();
  t.same(files, ['0', '1', '2'], 'one run per index');
  for (const f of files) t.equal((await readFile(join(out, f), 'utf8')).trim(), `${f} idx-${f}`, `index ${f}: env and hostname`);
  const pods = await podsOf(store, j);
  t.same(pods.map((p) => p.metadata.annotations?.['batch.kubernetes.io/job-completion-index']).sort(), ['0', '1', '2']);
  t.ok(pods.every((p) => p.metadata.name.startsWith(`idx-${p.metadata.annotations!['batch.kubernetes.io/job-completion-index']}-`)), 'names carry the index');
});

t.test('activeDeadlineSeconds fails a job and stops its processes; ttlSecondsAfterFinished deletes a finished job', async (t) => {
  const w = await startWorkloads(t, { podCidr: '127.246.0.0/16', nodes: [NODE] });
  const { store } = w;
  const slow = await store.create(job('slow', 'sleep 30', { activeDeadlineSeconds: 3, parallelism: 2, completions: 2 }));
  const running = await waitFor(async () => {
    const ps = (await podsOf(store, slow)).filter((p) => p.status?.phase === 'Running');
    return ps.length === 2 ? ps : undefined;
  }, { what: 'two running' });
  const pids = running.map((p) => Number(p.status!.containerStatuses![0].containerID!.slice('kubeloop://'.length)));
  const f = await finished(store, 'slow', 'Failed', 6000);
  t.equal(condition(f, 'Failed')?.reason, 'DeadlineExceeded');
  await waitFor(() => alivePids(pids).length === 0, { what: 'processes ended', timeoutMs: 5000 });
  t.pass('the processes of the failed job have ended');

  const short = await store.create(job('short', 'exit 0', { ttlSecondsAfterFinished: 0 }));
  await waitFor(async () => !(await store.tryGet('Job', NS, 'short')), { what: 'job deleted by its TTL', timeoutMs: 6000 });
  await waitFor(async () => (await podsOf(store, short)).length === 0, { what: 'its pods too', timeoutMs: 6000 });
  t.pass('finished job and its pods deleted after the TTL');
});

t.test('suspend, resume; deleting a running job leaves no process', async (t) => {
  const w = await startWorkloads(t, { podCidr: '127.246.0.0/16', nodes: [NODE] });
  const { store } = w;
  const j = await store.create(job('held', 'sleep 30', { suspend: true, parallelism: 2, completions: 2 }));
  await waitFor(async () => condition(await store.get<Job>('Job', NS, 'held'), 'Suspended'), { what: 'Suspended condition' });
  t.equal((await podsOf(store, j)).length, 0, 'a suspended job runs nothing');
  await store.mutate<Job>('Job', NS, 'held', (x) => {
    x.spec!.suspend = false;
  });
  const pods = await waitFor(async () => {
    const ps = (await podsOf(store, j)).filter((p) => p.status?.phase === 'Running' && p.status.containerStatuses?.[0]?.containerID);
    return ps.length === 2 ? ps : undefined;
  }, { what: 'resumed: two running' });
  const pids = pods.map((p) => Number(p.status!.containerStatuses![0].containerID!.slice('kubeloop://'.length)));
  t.equal(alivePids(pids).length, 2, 'both processes run');
  await store.delete('Job', NS, 'held', { propagationPolicy: 'Foreground' });
  await waitFor(async () => !(await store.tryGet('Job', NS, 'held')) && (await store.list<Pod>('Pod', { namespace: NS })).items.length === 0, {
    what: 'job and pods gone',
    timeoutMs: 8000,
  });
  // the pod object goes once its containers stopped; the host-side pid of a sandboxed container
  // (unshare) can still be in the kernel's table for a moment, so poll rather than look once
  await waitFor(() => alivePids(pids).length === 0, { what: 'processes ended', timeoutMs: 5000 });
  t.same(alivePids(pids), [], 'cascading delete left no process');
});
