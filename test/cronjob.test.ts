import t from 'tap';
import type { CronJob, Job, Pod, Stored } from '../src/api/types.js';
import { parseSchedule, unmetSchedule } from '../src/controllers/cronjob.js';
import { addNode, fakeKubelet, setPodStatus } from './controllers-helpers.js';
import { waitFor } from './helpers/wait.js';
import { FakeClock, eventsFor, startWorkloads } from './workloads-helpers.js';

const NS = 'default';
const HOUR = 3_600_000;

type W = Awaited<ReturnType<typeof startWorkloads>>;

function cronJob(name: string, schedule: string, spec: Partial<NonNullable<CronJob['spec']>> = {}): CronJob {
  return {
    apiVersion: 'batch/v1',
    kind: 'CronJob',
    metadata: { name, namespace: NS },
    spec: {
      schedule,
      ...spec,
      jobTemplate: {
        spec: {
          template: { spec: { restartPolicy: 'Never', containers: [{ name: 'c', image: 'busybox', command: ['sh', '-c', 'sleep 1'] }] } },
        },
      },
    },
  };
}

/**
 * A simulated clock starting now (CronJobs count start times from their creation, which is real
 * time); `hour(h)` is the h-th top of the hour after that.
 */
function simulated(): { clock: FakeClock; hour: (h: number) => Date } {
  const now = Date.now();
  const top = Math.ceil((now + 1000) / HOUR) * HOUR;
  return { clock: new FakeClock(new Date(now)), hour: (h) => new Date(top + (h - 1) * HOUR) };
}

const stamp = (d: Date) => d.toISOString().replace('.000Z', 'Z');

async function jobsOf(w: W, cj: Stored<CronJob>): Promise<Stored<Job>[]> {
  const { items } = await w.store.list<Job>('Job', { namespace: NS });
  return items.filter((j) => j.metadata.ownerReferences?.some((r) => r.uid === cj.metadata.uid) && !j.metadata.deletionTimestamp);
}

const done = (j: Job) => j.status?.conditions?.some((c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True');

/** the kubelet's part: the job's pod exits 0, so the job controller completes the job */
async function complete(w: W, j: Stored<Job>): Promise<void> {
  const pod = await waitFor(async () => {
    const { items } = await w.store.list<Pod>('Pod', { namespace: NS });
    return items.find((p) => p.metadata.ownerReferences?.some((r) => r.uid === j.metadata.uid) && p.status?.phase === 'Running');
  }, { what: `a running pod of ${j.metadata.name}` });
  await setPodStatus(w.store, NS, pod.metadata.name, { phase: 'Succeeded', ready: false });
  await waitFor(async () => done(await w.store.get<Job>('Job', NS, j.metadata.name)), { what: `${j.metadata.name} complete` });
}

/** every controller idle twice in a row: nothing more is about to happen */
async function quiet(w: W): Promise<void> {
  await waitFor(async () => {
    if (w.controllers.pending) return false;
    await new Promise((r) => setTimeout(r, 30));
    return w.controllers.pending === 0;
  }, { what: 'controllers quiet' });
}

t.test('schedule arithmetic: macros, time zones, missed start times', async (t) => {
  const from = new Date('2024-03-01T10:07:00Z');
  t.equal(parseSchedule('@hourly', undefined, from).next().toDate().toISOString(), '2024-03-01T11:00:00.000Z');
  t.equal(parseSchedule('0 9 * * *', 'Asia/Tokyo', from).next().toDate().toISOString(), '2024-03-02T00:00:00.000Z', '09:00 in Tokyo is 00:00 UTC');
  t.equal(parseSchedule('CRON_TZ=America/New_York 30 8 * * 1-5', undefined, from).next().toDate().toISOString(), '2024-03-01T13:30:00.000Z', 'CRON_TZ prefix: 08:30 in New York');
  t.throws(() => parseSchedule('0 9 * * *', 'Mars/Olympus', from), /unknown time zone Mars\/Olympus/);
  t.throws(() => parseSchedule('every day', undefined, from), /unparseable schedule/);
  const u = unmetSchedule('*/15 * * * *', undefined, new Date('2024-03-01T10:00:00Z'), new Date('2024-03-01T11:05:00Z'));
  t.equal(u.missed, 4);
  t.equal(u.last?.toISOString(), '2024-03-01T11:00:00.000Z');
  t.equal(u.next.toISOString(), '2024-03-01T11:15:00.000Z');
  const many = unmetSchedule('* * * * *', undefined, new Date('2024-03-01T00:00:00Z'), new Date('2024-03-01T10:00:00Z'));
  t.ok(many.missed > 100, 'too many missed start times are not all walked');
  t.equal(many.last?.toISOString(), '2024-03-01T10:00:00.000Z', 'the latest is still found');
});

t.test('Forbid over a simulated day: no overlap, late starts past startingDeadlineSeconds skipped, history limit', async (t) => {
  const { clock, hour } = simulated();
  const w = await startWorkloads(t, { clock });
  await addNode(w.store, 'n1');
  fakeKubelet(t, w.store);
  const cj = await w.store.create(cronJob('nightly', '0 * * * *', { concurrencyPolicy: 'Forbid', startingDeadlineSeconds: 600, successfulJobsHistoryLimit: 3 }));
  await quiet(w);
  t.equal((await jobsOf(w, cj)).length, 0, 'nothing before the first start time');

  // hour 1: the first job starts and keeps running through hours 2..4
  await clock.advanceTo(hour(1), () => quiet(w));
  const first = await waitFor(async () => (await jobsOf(w, cj))[0], { what: 'first job' });
  t.equal(first.metadata.annotations?.['batch.kubernetes.io/cronjob-scheduled-timestamp'], stamp(hour(1)));
  for (let h = 2; h <= 4; h++) {
    await clock.advanceTo(hour(h), () => quiet(w));
    await quiet(w);
  }
  t.equal((await jobsOf(w, cj)).length, 1, 'Forbid: no second job while the first runs');
  t.ok((await eventsFor(w.store, cj)).some((e) => e.reason === 'JobAlreadyActive'), 'JobAlreadyActive event');
  // it finishes 30 minutes after hour 4's start time: that start is past its 10-minute deadline
  await clock.advanceTo(new Date(hour(4).getTime() + 30 * 60_000), () => quiet(w));
  await complete(w, first);
  await quiet(w);
  t.equal((await jobsOf(w, cj)).length, 1, 'the missed start is not made up late: only the finished first job');

  // the rest of the day: each hour's job runs and completes before the next
  let made = 1;
  for (let h = 5; h <= 24; h++) {
    await clock.advanceTo(hour(h), () => quiet(w));
    const j = await waitFor(async () => (await jobsOf(w, cj)).find((x) => !done(x)), { what: `job of hour ${h}` });
    made++;
    await complete(w, j);
  }
  await quiet(w);
  const left = await jobsOf(w, cj);
  t.equal(made, 21, '1 + 20 jobs over the day');
  t.equal(left.length, 3, 'successfulJobsHistoryLimit: 3 finished jobs kept');
  const st = (await w.store.get<CronJob>('CronJob', NS, 'nightly')).status;
  t.equal(st?.lastScheduleTime, stamp(hour(24)));
  t.ok(st?.lastSuccessfulTime, 'lastSuccessfulTime');
  t.notOk(st?.active, 'nothing active');
});

t.test('Replace: each start replaces the running job; Allow: runs overlap', async (t) => {
  const { clock, hour } = simulated();
  const w = await startWorkloads(t, { clock });
  await addNode(w.store, 'n1');
  fakeKubelet(t, w.store);
  const rep = await w.store.create(cronJob('replace', '0 * * * *', { concurrencyPolicy: 'Replace' }));
  const allow = await w.store.create(cronJob('allow', '*/30 * * * *'));
  await quiet(w);
  const seen = new Set<string>();
  for (let h = 1; h <= 6; h++) {
    await clock.advanceTo(hour(h), () => quiet(w));
    const cur = await waitFor(async () => {
      const js = await jobsOf(w, rep);
      return js.length === 1 && !seen.has(js[0].metadata.name) ? js[0] : undefined;
    }, { what: `replacement at hour ${h}` });
    seen.add(cur.metadata.name);
  }
  t.equal(seen.size, 6, 'six jobs over six hours');
  await quiet(w);
  const st = (await w.store.get<CronJob>('CronJob', NS, 'replace')).status;
  t.equal(st?.active?.length, 1, 'one active job at a time');
  t.ok((await eventsFor(w.store, rep)).some((e) => e.reason === 'SuccessfulDelete'), 'the replaced jobs were deleted');
  // every half hour between the CronJob's creation and the clock's time
  const HALF = HOUR / 2;
  const want = Math.floor(hour(6).getTime() / HALF) - Math.floor(Date.parse(allow.metadata.creationTimestamp) / HALF);
  const a = await waitFor(async () => {
    const js = await jobsOf(w, allow);
    return js.length === want ? js : undefined;
  }, { what: `Allow: ${want} overlapping jobs` });
  t.equal(a.filter((j) => !done(j)).length, want, `all ${want} still running side by side`);
});

t.test('suspend stops new jobs; resuming runs the latest missed start once; a time zone moves the start', async (t) => {
  const { clock, hour } = simulated();
  const w = await startWorkloads(t, { clock });
  await addNode(w.store, 'n1');
  fakeKubelet(t, w.store);
  const cj = await w.store.create(cronJob('paused', '0 * * * *', { suspend: true }));
  await quiet(w);
  for (let h = 1; h <= 3; h++) await clock.advanceTo(hour(h), () => quiet(w));
  await quiet(w);
  t.equal((await jobsOf(w, cj)).length, 0, 'suspended: no jobs');
  await w.store.mutate<CronJob>('CronJob', NS, 'paused', (c) => {
    c.spec!.suspend = false;
  });
  const js = await waitFor(async () => {
    const x = await jobsOf(w, cj);
    return x.length ? x : undefined;
  }, { what: 'a job after resuming' });
  await quiet(w);
  t.equal((await jobsOf(w, cj)).length, 1, 'only the most recent missed start runs');
  t.equal(js[0].metadata.annotations?.['batch.kubernetes.io/cronjob-scheduled-timestamp'], stamp(hour(3)));

  const tz = await w.store.create(cronJob('tokyo', '0 9 * * *', { timeZone: 'Asia/Tokyo' }));
  await quiet(w);
  await clock.advanceTo(new Date(hour(27).getTime() + 1), () => quiet(w));
  const tj = await waitFor(async () => (await jobsOf(w, tz))[0], { what: 'the Tokyo job' });
  const at = new Date(tj.metadata.annotations!['batch.kubernetes.io/cronjob-scheduled-timestamp']!);
  t.equal(at.getUTCHours(), 0, '09:00 Asia/Tokyo = 00:00 UTC');
  t.equal(at.getUTCMinutes(), 0);

  // admission refuses what robfig/cron refuses; '@every' passes it (as upstream) but the controller's parser cannot run it
  await t.rejects(w.store.create(cronJob('refused', '61 * * * *')), { reason: 'Invalid', message: /end of range \(61\) above maximum \(59\): 61/ });
  await w.store.create(cronJob('broken', '@every 1h30m'));
  await waitFor(async () => (await eventsFor(w.store, { kind: 'CronJob', metadata: { name: 'broken' } })).some((e) => e.reason === 'UnparseableSchedule'), {
    what: 'UnparseableSchedule event',
  });
  t.pass('a bad schedule is an event, not a crash');
});
