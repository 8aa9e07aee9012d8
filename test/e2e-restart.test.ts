/**
 * A daemon killed outright (SIGKILL) cannot stop its pods. The next `kubeloop up` on the same
 * state dir ends what is left of them before running the pods again, and a clean stop then
 * leaves nothing behind.
 */
import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon } from './helpers/daemon.js';
import { alive, childPids, podProcesses } from './helpers/procs.js';
import { waitFor } from './helpers/wait.js';

const PREFIX = '127.232.';
const args = [
  '-f', 'test/fixtures/sleeper.yaml',
  '--service-cidr', '127.132.0.0/16',
  '--pod-cidr', '127.232.0.0/16',
  '--lb-pool', '127.142.0.0/16',
  '--nodeport-addresses', '127.0.32.8',
  '--node-ip', '127.0.32.8',
  '--log-level', 'warn',
];

t.test('a restart after SIGKILL ends the pods the killed daemon left', async (t) => {
  const stateDir = await mkdtemp(join(tmpdir(), 'kubeloop-restart-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));

  const first = await startDaemon(args, { stateDir });
  const before = await waitFor(() => {
    const p = podProcesses(PREFIX).filter((x) => x.podName === 'sleeper');
    return p.length ? p : undefined;
  }, { timeoutMs: 10_000 });
  // the store is durable once a write is acknowledged: wait until the journal holds the running container
  await waitFor(() => {
    try {
      return readdirSync(stateDir).some((f) => /^(journal-\d+\.log|snapshot\.json)$/.test(f) && readFileSync(join(stateDir, f), 'utf8').includes('kubeloop://'));
    } catch {
      return false;
    }
  }, { timeoutMs: 10_000 });
  first.proc.kill('SIGKILL');
  await new Promise((r) => first.proc.once('exit', r));
  // the pod's PID namespace dies with the daemon (runtime/sandbox.ts); where the machine has
  // none, the next daemon ends what is left before it runs the pod again
  const second = await startDaemon(args, { stateDir });
  t.teardown(() => second.stop());
  await waitFor(() => before.every((p) => !alive(p.pid)), { timeoutMs: 10_000 });
  t.pass('no process of the killed daemon\'s pod is left');
  const again = await waitFor(() => {
    const p = podProcesses(PREFIX).filter((x) => x.podName === 'sleeper');
    return p.length ? p : undefined;
  }, { timeoutMs: 10_000 });
  t.ok(again.every((p) => !before.some((b) => b.pid === p.pid)), 'the pod runs again as a new process');
});

/** the daemon's proxy worker processes (`--proxy-processes`), by their command line */
function proxyWorkers(daemonPid: number): number[] {
  return childPids(daemonPid).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('agent/proxy/worker.') /* worker.js from dist/, worker.ts from src/ */;
    } catch {
      return false;
    }
  });
}

t.test('proxy worker processes end with the daemon, whether it is stopped or killed', async (t) => {
  const p3 = [...args.slice(0, args.indexOf('--pod-cidr')), '--pod-cidr', '127.233.0.0/16', ...args.slice(args.indexOf('--pod-cidr') + 2)];
  const withWorkers = [...p3, '--proxy-processes', '3'];
  for (const how of ['SIGINT', 'SIGKILL'] as const) {
    const d = await startDaemon(withWorkers);
    t.teardown(() => d.stop());
    const workers = await waitFor(() => {
      const w = proxyWorkers(d.proc.pid!);
      return w.length === 2 ? w : undefined;
    }, { timeoutMs: 10_000 });
    t.equal(workers.length, 2, `--proxy-processes 3: two worker processes beside the daemon (${how})`);
    if (how === 'SIGINT') await d.stop('SIGINT');
    else {
      d.proc.kill('SIGKILL');
      await new Promise((r) => d.proc.once('exit', r));
    }
    await waitFor(() => workers.every((p) => !alive(p)), { timeoutMs: 10_000 });
    t.pass(`no worker outlives the daemon (${how})`);
  }
});
