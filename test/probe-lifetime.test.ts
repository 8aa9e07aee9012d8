/**
 * Exec probes and preStop hooks die with their daemon and at their timeout (issue 14, finding
 * 6): they run in the same sandbox as containers (a PID namespace tied to the daemon), so after
 * a SIGKILL of the daemon no probe or hook process remains, setsid'd ones included, and a probe
 * that times out is ended with every process it started.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RunningDaemon, startDaemon } from './helpers/daemon.js';
import { daemonApi } from './helpers/api.js';
import { killSleepers, sleepersByMark } from './helpers/procs.js';
import { waitFor } from './helpers/wait.js';

const args = (manifest: string): string[] => [
  '-f', manifest,
  '--service-cidr', '127.119.0.0/16',
  '--pod-cidr', '127.219.0.0/16',
  '--lb-pool', '127.120.0.0/16',
  '--nodeport-addresses', '127.0.219.1',
  '--node-ip', '127.0.219.1',
  '--api-addr', '127.0.0.1:0',
  '--dns-addr', '127.0.0.1:0',
];

/** `sleep 37NN.<tag>`: a process of this test run, found by its argv */
const TAG = randomBytes(4).readUInt32BE(0).toString().padStart(10, '0');
const mark = (n: number): string => `37${String(n).padStart(2, '0')}.${TAG}`;
/** a shell that leaves a setsid'd sleep (its own session, outside the probe's group) and a plain one */
const both = (a: number, b: number): string[] => ['sh', '-c', `setsid sleep ${mark(a)} & exec sleep ${mark(b)}`];

const isMark = (m: string): boolean => m.endsWith(`.${TAG}`);
/** live (non-zombie) processes running `sleep <mark>` of this run, by mark */
const marked = (): Map<string, number[]> => sleepersByMark(isMark);

const killAll = (): void => killSleepers(isMark);

const container = { name: 'c', image: 'busybox', command: ['sleep', '300'] };

function manifest(): string {
  return [
    {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'probed' },
      spec: {
        containers: [{ ...container, readinessProbe: { exec: { command: both(1, 2) }, timeoutSeconds: 600, periodSeconds: 1 } }],
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'hooked' },
      spec: {
        terminationGracePeriodSeconds: 600,
        containers: [{ ...container, lifecycle: { preStop: { exec: { command: both(3, 4) } } } }],
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'timeout' },
      spec: {
        containers: [{ ...container, readinessProbe: { exec: { command: both(5, 6) }, timeoutSeconds: 1, periodSeconds: 3600 } }],
      },
    },
  ]
    .map((d) => JSON.stringify(d))
    .join('\n---\n');
}

t.test('exec probes and preStop hooks: the timeout ends the whole probe, a SIGKILL of the daemon ends them all', async (t) => {
  t.teardown(killAll);
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-probe-lifetime-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'pods.yaml');
  writeFileSync(file, manifest());
  const d: RunningDaemon = await startDaemon(args(file));
  t.teardown(() => d.stop('SIGKILL'));

  // a probe that times out after 1 s is ended with everything it started, setsid'd or not
  const seen = await waitFor(() => (marked().has(mark(5)) && marked().has(mark(6)) ? Date.now() : 0), { timeoutMs: 20_000, what: 'the timing-out probe running' });
  const ended = await waitFor(() => (!marked().has(mark(5)) && !marked().has(mark(6)) ? Date.now() : 0), { timeoutMs: 5000, what: 'the timed-out probe gone' }).catch(
    () => 0,
  );
  t.ok(ended, `the timed-out probe left nothing (left: ${JSON.stringify([...marked()].filter(([m]) => m === mark(5) || m === mark(6)))})`);
  if (ended) t.comment(`timed-out probe gone ${ended - seen} ms after it was seen (timeoutSeconds 1)`);

  // a probe that runs (600 s timeout) and a preStop hook that runs (the pod is being deleted)
  await waitFor(() => marked().has(mark(1)) && marked().has(mark(2)), { timeoutMs: 20_000, what: 'the exec probe running' });
  const api = await daemonApi(d);
  const del = await api.kubectl('delete', 'pod', 'hooked', '--wait=false');
  t.equal(del.code, 0, del.stderr);
  await waitFor(() => marked().has(mark(3)) && marked().has(mark(4)), { timeoutMs: 20_000, what: 'the preStop hook running' });
  const running = [...marked().keys()].sort();
  t.ok([mark(1), mark(2), mark(3), mark(4)].every((m) => running.includes(m)), 'probe and hook processes (setsid\'d ones too) run');

  const exited = new Promise((r) => d.proc.once('exit', r));
  d.proc.kill('SIGKILL');
  await exited;
  const killedAt = Date.now();
  const gone = await waitFor(() => (marked().size === 0 ? Date.now() : 0), { timeoutMs: 5000, what: 'no probe or hook process left' }).catch(() => 0);
  t.ok(gone, `every probe and hook process is gone within 5 s of the SIGKILL (left: ${JSON.stringify([...marked()])})`);
  if (gone) t.comment(`probe and hook processes gone ${gone - killedAt} ms after the SIGKILL`);
});
