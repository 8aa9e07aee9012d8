/**
 * Issue 18 part 3: the daemon stops gracefully with its pods however it is asked — a signal
 * to the node process itself, to `npm start`, or to `npx kubeloop up` (npm exec → sh -c →
 * node: npm and the shell die of a SIGTERM, the daemon used to keep running with its pods).
 */
import t from 'tap';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, WEB_ECHO_MANIFEST } from './helpers/daemon.js';
import { alive, podProcesses } from './helpers/procs.js';
import { waitFor } from './helpers/wait.js';

const POD_PREFIX = '127.81.';

/** `up` flags of this file: its own ranges and free ports */
const upFlags = (stateDir: string, manifest: string): string[] => [
  'up', '-f', manifest, '--state-dir', stateDir,
  '--pod-cidr', '127.81.0.0/16', '--service-cidr', '127.82.0.0/16', '--lb-pool', '127.83.0.0/16',
  '--nodeport-addresses', '127.0.84.1', '--node-ip', '127.0.84.1',
  '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--metrics-addr', '127.0.0.1:0',
  '--stop-grace', '2s', '--log-level', process.env.KUBELOOP_TEST_LOG ?? 'info',
];

const killGroup = (p: ChildProcess): void => {
  try {
    process.kill(-p.pid!, 'SIGKILL');
  } catch {
    // gone
  }
};

/** the daemon's pid from its pid file (`<pid> <start time>`) */
const daemonPid = (stateDir: string): number | undefined => {
  try {
    return Number(readFileSync(join(stateDir, 'kubeloop.pid'), 'utf8').split(' ')[0]) || undefined;
  } catch {
    return undefined;
  }
};

const ways: Array<{ name: string; cmd: (flags: string[]) => [string, string[]]; signal: NodeJS.Signals }> = [
  { name: 'SIGINT to the node process', cmd: (f) => [process.execPath, [join(ROOT, 'bin', 'kubeloop.mjs'), ...f]], signal: 'SIGINT' },
  { name: 'SIGTERM to npm start', cmd: (f) => ['npm', ['start', '--', ...f.slice(3)]], signal: 'SIGTERM' },
  { name: 'SIGTERM to npx kubeloop up', cmd: (f) => ['npx', ['kubeloop', ...f]], signal: 'SIGTERM' },
];

t.test('a stop signal however sent ends the daemon and every pod', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-signals-'));
  const manifest = join(dir, 'web.yaml');
  await writeFile(manifest, WEB_ECHO_MANIFEST);
  t.teardown(() => rm(dir, { recursive: true, force: true }));

  for (const way of ways) {
    await t.test(way.name, async (t) => {
      const stateDir = await mkdtemp(join(dir, 'state-'));
      const [cmd, args] = way.cmd(upFlags(stateDir, manifest));
      // a group of its own, so the teardown can end npm, its shell and the daemon together;
      // as a user runs it (KUBELOOP_FROM_SOURCE unset): dist/ when it is current
      const proc = spawn(cmd, args, { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '', KUBELOOP_FROM_SOURCE: '' } });
      let out = '';
      let err = '';
      proc.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
      proc.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
      t.teardown(() => {
        killGroup(proc);
        for (const p of podProcesses(POD_PREFIX)) process.kill(p.pid, 'SIGKILL');
      });

      await waitFor(() => out.includes('kubeloop is running') || proc.exitCode !== null, { timeoutMs: 60_000, intervalMs: 50, what: 'kubeloop is running' });
      if (!t.match(out, 'kubeloop is running', 'it started')) t.comment(`${out}\n${err.slice(-3000)}`);
      const pid = daemonPid(stateDir);
      t.ok(pid && alive(pid), 'the daemon runs (pid file)');
      t.ok(podProcesses(POD_PREFIX).length >= 1, 'the pod runs as a process');

      process.kill(proc.pid!, way.signal);
      await waitFor(() => !alive(pid!) && podProcesses(POD_PREFIX).length === 0, {
        timeoutMs: 15_000,
        intervalMs: 50,
        what: 'the daemon and its pod to be gone',
      }).catch(() => undefined);
      if (!t.notOk(alive(pid!), `the daemon ${pid} exited`)) t.comment(err.slice(-3000));
      t.same(podProcesses(POD_PREFIX), [], 'no pod process survives');
      t.notOk(existsSync(join(stateDir, 'kubeloop.pid')), 'it stopped gracefully: its pid file is removed');
      t.match(err, /"msg":"(stopping|parent process \(npm\) exited: stopping)"/, 'the daemon logged its stop');
    });
  }
});
