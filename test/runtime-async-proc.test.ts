/**
 * Issue 14, must-have 3: no synchronous file reads on the daemon's event loop. groupAlive
 * (polled while a pod's processes stop) scanned all of /proc synchronously and logTail (the
 * FallbackToLogsOnError message) read synchronously; both are asynchronous now and must still
 * be right: a grandchild left in the group after its leader exited is found, and reported gone
 * once it ends; the log's tail is the last lines. (Event-loop delay under 2,000 extra processes:
 * bench/proc-scan.ts.)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { logTail } from '../src/agent/runtime/container.js';
import { groupAlive, killGroup } from '../src/agent/runtime/process.js';
import { waitFor } from './helpers/wait.js';

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

t.test('groupAlive: asynchronous, finds a grandchild left in the group, and its end', async (t) => {
  // the leader starts a grandchild in its group, prints its pid and exits
  const leader: ChildProcess = spawn('sh', ['-c', 'sleep 60 & echo $!'], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
  const pgid = leader.pid!;
  t.teardown(() => void killGroup(pgid, 'SIGKILL'));
  let out = '';
  leader.stdout!.on('data', (b: Buffer) => (out += b));
  await new Promise((r) => leader.once('exit', r));
  const grandchild = Number(out.trim());
  t.ok(grandchild > 0 && alive(grandchild), `the grandchild ${grandchild} runs after its leader exited`);

  const p = groupAlive(pgid);
  t.ok(p instanceof Promise, 'groupAlive answers asynchronously');
  t.equal(await p, true, 'the group has a live member');

  process.kill(grandchild, 'SIGKILL');
  await waitFor(async () => !(await groupAlive(pgid)), { what: 'the group to be reported gone', timeoutMs: 5000 });
  t.pass('reported gone once the grandchild ended');
  t.equal(await groupAlive(2 ** 22 + 7), false, 'a group that never existed is not alive');
});

t.test('groupAlive: a setsid grandchild is a group of its own, found and then gone', async (t) => {
  const leader = spawn('sh', ['-c', 'setsid sleep 60 >/dev/null 2>&1 & echo $!'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  leader.stdout!.on('data', (b: Buffer) => (out += b));
  await new Promise((r) => leader.once('exit', r));
  const pid = Number(out.trim());
  t.teardown(() => void killGroup(pid, 'SIGKILL'));
  // setsid forks when the caller leads a group; the sleep's group is its own pid once it has run
  await waitFor(async () => alive(pid) && (await groupAlive(pid)), { what: `the setsid process ${pid} alive in its own group` });
  killGroup(pid, 'SIGKILL');
  await waitFor(async () => !(await groupAlive(pid)), { what: 'its group to be reported gone', timeoutMs: 5000 });
  t.pass('found, then reported gone');
});

t.test('logTail: asynchronous, the last lines within the byte bound', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kl-logtail-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'log');
  writeFileSync(file, Array.from({ length: 100 }, (_, i) => `line ${i}`).join('\n') + '\n');
  const p = logTail(file);
  t.ok(p instanceof Promise, 'logTail answers asynchronously');
  const tail = await p;
  t.equal(tail.split('\n').length, 80, '80 lines');
  t.ok(tail.endsWith('line 99') && tail.startsWith('line 20'), 'the last ones');
  t.equal((await logTail(file, 20)).split('\n').at(-1), 'line 99', 'bounded by bytes');
  t.equal(await logTail(join(dir, 'missing')), '', 'a missing log is empty');
});
