/**
 * Issue 18 part 4: `kubeloop status` reprints up's table from the running daemon's API, and on
 * a terminal the log lines after the table go to <state-dir>/kubeloop.log (0600) unless
 * --log-level is given. The terminal is a real pty (util-linux `script`).
 */
import t, { type Test } from 'tap';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT, WEB_ECHO_MANIFEST, tableAddresses } from './helpers/daemon.js';
import { alive, podProcesses } from './helpers/procs.js';
import { waitFor } from './helpers/wait.js';

const run = promisify(execFile);
const BIN = join(ROOT, 'bin', 'kubeloop.mjs');
const POD_PREFIX = '127.89.';
const NODE = '127.0.91.1';
const ranges = ['--pod-cidr', '127.89.0.0/16', '--service-cidr', '127.90.0.0/16', '--lb-pool', '127.91.0.0/16', '--nodeport-addresses', NODE, '--node-ip', NODE];
const shq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** `kubeloop up` on a pseudo-terminal; resolves once it says it is running */
async function upOnPty(t: Test, dir: string, extra: string[]): Promise<{ stateDir: string; out: () => string; pid: number; proc: ChildProcess }> {
  const stateDir = await mkdtemp(join(dir, 'state-'));
  const argv = [process.execPath, BIN, 'up', '-f', join(dir, 'web.yaml'), '--state-dir', stateDir, ...ranges,
    '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--metrics-addr', '127.0.0.1:0', '--stop-grace', '1s', ...extra];
  const proc = spawn('script', ['-qfec', argv.map(shq).join(' '), '/dev/null'], { cwd: ROOT, detached: true, stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, NODE_OPTIONS: '' } });
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  t.teardown(() => {
    try {
      process.kill(-proc.pid!, 'SIGKILL');
    } catch {
      // gone
    }
    for (const p of podProcesses(POD_PREFIX)) process.kill(p.pid, 'SIGKILL');
  });
  await waitFor(() => out.includes('kubeloop is running') || proc.exitCode !== null, { timeoutMs: 60_000, intervalMs: 50, what: 'kubeloop is running' });
  if (!t.match(out, 'kubeloop is running', 'up runs on the pty')) t.comment(out);
  const pid = Number(readFileSync(join(stateDir, 'kubeloop.pid'), 'utf8').split(' ')[0]);
  return { stateDir, out: () => out, pid, proc };
}

/** SIGTERM to the daemon; resolves when it and its pods are gone */
async function stopDaemon(pid: number): Promise<void> {
  process.kill(pid, 'SIGTERM');
  await waitFor(() => !alive(pid) && podProcesses(POD_PREFIX).length === 0, { timeoutMs: 15_000, intervalMs: 50, what: 'the daemon to stop' });
}

t.test('status and the quiet terminal', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-status-'));
  await writeFile(join(dir, 'web.yaml'), WEB_ECHO_MANIFEST);
  t.teardown(() => rm(dir, { recursive: true, force: true }));

  await t.test('without --log-level: the table stays, later lines go to kubeloop.log, status reprints the table', async (t) => {
    const d = await upOnPty(t, dir, []);
    const upTable = d.out();
    const webAddr = tableAddresses(upTable.replace(/\r/g, ''), 'default/web');
    t.equal(webAddr.length, 1, 'up printed default/web with one address');
    t.match(upTable, `Logs:  ${join(d.stateDir, 'kubeloop.log')}`, 'up names the log file');

    const st = await run(process.execPath, [BIN, 'status', '--state-dir', d.stateDir, ...ranges], { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '' } });
    t.same(tableAddresses(st.stdout, 'default/web'), webAddr, 'status shows the address up printed');
    t.same(tableAddresses(st.stdout, 'default/kubernetes'), tableAddresses(upTable.replace(/\r/g, ''), 'default/kubernetes'), 'and the API Service');
    t.match(st.stdout, /default\/web\s+ClusterIP\s+1\/1/, 'with its ready endpoint');

    const before = d.out().length;
    await stopDaemon(d.pid);
    const log = join(d.stateDir, 'kubeloop.log');
    t.equal(statSync(log).mode & 0o777, 0o600, 'kubeloop.log is 0600');
    t.match(readFileSync(log, 'utf8'), /stopping/, 'the stop was logged to the file');
    t.notMatch(d.out().slice(before), /stopping|pod runtime stopped/, 'and not on the terminal');
  });

  await t.test('with --log-level: log lines stay on the terminal', async (t) => {
    const d = await upOnPty(t, dir, ['--log-level', 'info']);
    t.notMatch(d.out(), 'Logs:  ', 'no log file is announced');
    const before = d.out().length;
    await stopDaemon(d.pid);
    await waitFor(() => /stopping/.test(d.out().slice(before)), { timeoutMs: 5000, what: 'the stop line on the terminal' }).catch(() => undefined);
    t.match(d.out().slice(before), /stopping/, 'the stop is logged on the terminal');
  });

  await t.test('status without a daemon says so in one line', async (t) => {
    const r = await run(process.execPath, [BIN, 'status', '--state-dir', join(dir, 'none')], { cwd: ROOT }).catch((e: { code: number; stdout: string; stderr: string }) => e);
    t.equal((r as { code?: number }).code, 1, 'exit 1');
    t.match(r.stderr, /^kubeloop: no kubeconfig at .*: start the daemon with kubeloop up \(same --state-dir\) first\n$/, 'one line with the fix');
  });
});
