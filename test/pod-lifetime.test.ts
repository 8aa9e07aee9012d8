/**
 * No pod process outlives its daemon (issue 14, finding 6): every process of every pod —
 * `command:` pods, their setsid'd and double-forked children, `env -i`'d ones, built-in images —
 * is gone within seconds of a SIGKILL of the daemon; the next `up` runs exactly one copy of each
 * pod; a stale pid file naming an unrelated live process is taken over; a graceful delete of a
 * `sleep` pod does not wait out its grace period.
 */
import t from 'tap';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { ROOT, type RunningDaemon, startDaemon } from './helpers/daemon.js';
import { killSleepers, podProcesses, sleepersByMark } from './helpers/procs.js';
import { waitFor } from './helpers/wait.js';

const PREFIX = '127.233.';
const args = (manifest: string): string[] => [
  '-f', manifest,
  '--service-cidr', '127.133.0.0/16',
  '--pod-cidr', '127.233.0.0/16',
  '--lb-pool', '127.143.0.0/16',
  '--nodeport-addresses', '127.0.33.8',
  '--node-ip', '127.0.33.8',
  '--api-addr', '127.0.0.1:0',
  '--dns-addr', '127.0.0.1:0',
  '--log-level', 'info',
];

/** `sleep 36NN.<tag>`: a process of this test run, found by its argv (env -i leaves no POD_* behind) */
const TAG = randomBytes(4).readUInt32BE(0).toString().padStart(10, '0');
const mark = (n: number): string => `36${String(n).padStart(2, '0')}.${TAG}`;

/** pod name → the marked sleeps it leaves running */
const PODS: Record<string, { cmd: string[]; marks: string[] }> = {
  plain: { cmd: ['sleep', mark(1)], marks: [mark(1)] },
  'setsid-child': { cmd: ['sh', '-c', `setsid sleep ${mark(2)} & exec sleep ${mark(12)}`], marks: [mark(2), mark(12)] },
  // the subshell exits at once: its setsid'd child is an orphan in a session of its own
  'double-fork': { cmd: ['sh', '-c', `(setsid sh -c 'sleep ${mark(3)}' &); exec sleep ${mark(13)}`], marks: [mark(3), mark(13)] },
  'env-i': { cmd: ['env', '-i', 'sleep', mark(4)], marks: [mark(4)] },
  'env-i-setsid': { cmd: ['sh', '-c', `env -i setsid sleep ${mark(5)} & exec env -i sleep ${mark(15)}`], marks: [mark(5), mark(15)] },
};
const ALL_MARKS = Object.values(PODS).flatMap((p) => p.marks);

function manifest(): string {
  const docs = Object.entries(PODS).map(([name, p]) =>
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name },
      spec: { terminationGracePeriodSeconds: 30, containers: [{ name: 'c', image: 'busybox', command: p.cmd }] },
    }),
  );
  // a built-in image too: it must end with the daemon through the same mechanism
  docs.push(JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'builtin' }, spec: { containers: [{ name: 'web', image: 'nginx', ports: [{ containerPort: 8080 }] }] } }));
  return docs.join('\n---\n');
}

const isMark = (m: string): boolean => ALL_MARKS.includes(m);
/** live (non-zombie) processes running `sleep <mark>`, by mark */
const marked = (): Map<string, number[]> => sleepersByMark(isMark);

const builtinProcs = (): number[] => podProcesses(PREFIX).filter((p) => p.podName === 'builtin').map((p) => p.pid);

const killAll = (): void => killSleepers(isMark);

async function sigkill(d: RunningDaemon): Promise<number> {
  const exited = new Promise((r) => d.proc.once('exit', r));
  d.proc.kill('SIGKILL');
  await exited;
  return Date.now();
}

function kubectl(d: RunningDaemon, ...a: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) =>
    execFile('kubectl', ['--kubeconfig', join(d.stateDir, 'kubeconfig'), '--cache-dir', join(d.stateDir, 'kubectl-cache'), ...a], { timeout: 60_000 }, (e, out, err) =>
      resolve({ code: e ? 1 : 0, out, err }),
    ),
  );
}

t.test('SIGKILL of the daemon ends every pod process; the next up runs one copy of each pod', async (t) => {
  t.teardown(killAll);
  const stateDir = await mkdtemp(join(tmpdir(), 'kubeloop-lifetime-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  const file = join(stateDir, '..', `${basename(stateDir)}.yaml`);
  writeFileSync(file, manifest());
  t.teardown(() => rm(file, { force: true }));

  const first = await startDaemon(args(file), { stateDir });
  t.teardown(() => first.proc.kill('SIGKILL'));
  await waitFor(() => ALL_MARKS.every((m) => marked().has(m)) && builtinProcs().length > 0, { timeoutMs: 20_000, what: 'every pod process running' });
  const before = [...marked().values()].flat();
  const builtin = builtinProcs();

  const killedAt = await sigkill(first);
  const gone = await waitFor(() => (marked().size === 0 && builtin.every((p) => !readable(p)) ? Date.now() : 0), {
    timeoutMs: 5000,
    what: 'no pod process left after the SIGKILL',
  }).catch(() => 0);
  t.ok(gone, `every pod process is gone within 5 s of the SIGKILL (left: ${JSON.stringify([...marked()])})`);
  if (gone) t.comment(`${before.length + builtin.length} pod processes gone ${gone - killedAt} ms after the SIGKILL`);

  // the same state dir again: each pod runs once, and stays at one copy
  const second = await startDaemon(args(file), { stateDir });
  t.teardown(() => second.stop('SIGKILL'));
  await waitFor(() => ALL_MARKS.every((m) => marked().has(m)), { timeoutMs: 20_000, what: 'pods running again' });
  const deadline = Date.now() + 1500;
  while (Date.now() < deadline) {
    const m = marked();
    const twice = ALL_MARKS.filter((k) => (m.get(k)?.length ?? 0) > 1);
    if (twice.length) {
      t.fail(`two copies of ${twice.join(', ')}`);
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  t.ok(ALL_MARKS.every((m) => marked().get(m)?.length === 1), 'exactly one process per pod after the restart');
  t.ok(before.every((p) => !readable(p)), 'none of the first daemon\'s processes is among them');

  // graceful delete of a plain `sleep` pod: SIGTERM reaches sleep, no 30 s grace period wait
  const t0 = Date.now();
  const del = await kubectl(second, 'delete', 'pod', 'plain', '--wait=true');
  const took = Date.now() - t0;
  t.equal(del.code, 0, del.err);
  t.ok(took < 5000, `kubectl delete of a sleep pod took ${took} ms (grace period 30 s)`);
  t.notOk(marked().has(mark(1)), 'its process is gone');
});

t.test('a stale pid file naming an unrelated live process is taken over', async (t) => {
  const stateDir = await mkdtemp(join(tmpdir(), 'kubeloop-stalepid-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  const other: ChildProcess = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.teardown(() => other.kill('SIGKILL'));
  writeFileSync(join(stateDir, 'kubeloop.pid'), String(other.pid));
  const d = await startDaemon(args('').slice(2), { stateDir });
  t.teardown(() => d.stop());
  t.match(d.stdout() + d.stderr(), new RegExp(`pid ${other.pid}.*not a kubeloop|not a kubeloop.*pid ${other.pid}`), 'the takeover is logged');
  t.equal(readFileSync(join(stateDir, 'kubeloop.pid'), 'utf8').split(/\s/)[0], String(d.proc.pid), 'the pid file is ours now');

  // a live kubeloop of this state dir still keeps a second one out
  const second = spawn(process.execPath, [join(ROOT, 'bin', 'kubeloop.mjs'), 'up', '--state-dir', stateDir, '--metrics-addr', '127.0.0.1:0', ...args('').slice(2)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  t.teardown(() => second.kill('SIGKILL'));
  let err = '';
  second.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  second.stdout!.resume();
  const code = await new Promise((r) => second.once('exit', r));
  t.not(code, 0, 'a second daemon on the same state dir exits');
  t.match(err, /another kubeloop \(pid \d+\) is using the state dir/, 'and says why');
});

t.test('two up started at the same instant on one fresh state dir: exactly one runs', async (t) => {
  const stateDir = await mkdtemp(join(tmpdir(), 'kubeloop-twoup-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  const launch = () => {
    const p = spawn(process.execPath, [join(ROOT, 'bin', 'kubeloop.mjs'), 'up', '--state-dir', stateDir, '--metrics-addr', '127.0.0.1:0', ...args('').slice(2)], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    const r = { p, out: '', err: '', code: undefined as number | null | undefined };
    p.stdout!.setEncoding('utf8').on('data', (c: string) => (r.out += c));
    p.stderr!.setEncoding('utf8').on('data', (c: string) => (r.err += c));
    p.once('exit', (code) => (r.code = code));
    return r;
  };
  const both = [launch(), launch()];
  t.teardown(async () => {
    for (const r of both) {
      if (r.code !== undefined) continue;
      r.p.kill('SIGINT');
      await new Promise((res) => r.p.once('exit', res));
    }
  });
  const settled = await waitFor(() => {
    const running = both.filter((r) => r.out.includes('kubeloop is running'));
    const exited = both.filter((r) => r.code !== undefined);
    return running.length + exited.length === 2 ? { running, exited } : undefined;
  }, { what: 'one daemon running and the other gone', timeoutMs: 30_000 });
  t.equal(settled.running.length, 1, 'exactly one daemon runs');
  t.equal(settled.exited.length, 1, 'the other exits');
  t.not(settled.exited[0]?.code, 0, 'with a failure code');
  t.match(settled.exited[0]?.err ?? '', /another kubeloop .*state dir/, 'and says which state dir is taken');
  t.equal(readFileSync(join(stateDir, 'kubeloop.pid'), 'utf8').split(/\s/)[0], String(settled.running[0]?.p.pid), 'the pid file names the one that runs');
});

function readable(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}
