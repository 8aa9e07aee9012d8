// The daemon's open-files limit: read from /proc, raised from soft to hard at start (util-linux prlimit).
import { execFileSync } from 'node:child_process';
import t from 'tap';
import pino from 'pino';
import { raiseNofile } from '../../src/cli/rlimit.js';
import { parseNofile, readNofile } from '../../src/util/fds.js';

t.test('parseNofile reads the Max open files line', async (t) => {
  const text = 'Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n';
  t.same(parseNofile(text), { soft: 1024, hard: 524288 });
  t.same(parseNofile('Max open files            unlimited            unlimited            files'), { soft: Infinity, hard: Infinity });
  t.equal(parseNofile('nothing here'), undefined);
});

t.test('raiseNofile lifts a lowered soft limit to the hard one', { skip: process.platform !== 'linux' && 'Linux only' }, async (t) => {
  const before = (await readNofile())!;
  const low = Math.min(256, before.hard);
  // this test file runs in a process of its own: lower its soft limit as a small `ulimit -n` would
  execFileSync('prlimit', [`--pid=${process.pid}`, `--nofile=${low}:${before.hard}`]);
  t.teardown(() => execFileSync('prlimit', [`--pid=${process.pid}`, `--nofile=${before.soft}:${before.hard}`]));
  t.equal((await readNofile())!.soft, low);
  const now = await raiseNofile(pino({ level: 'silent' }));
  t.same(now, { soft: before.hard, hard: before.hard });
  t.same(await readNofile(), { soft: before.hard, hard: before.hard });
});
