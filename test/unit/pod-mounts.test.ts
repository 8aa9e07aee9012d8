import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { writeSetup } from '../../src/agent/runtime/container-mounts.js';
import { ensureTmpfs, unmountBelow } from '../../src/agent/runtime/memory-volumes.js';

// A container's setup script run for real in a mount + PID namespace of its own (as root, as the
// suite runs), and the memory volumes' host-side tmpfs: what the process sees, what the host keeps.

const root = process.getuid?.() === 0;

function run(file: string, args: string[], cwd: string): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, timeout: 10_000 }, (e, out, err) => resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, out: String(out), err: String(err) }));
  });
}

const hostMounts = async (under: string) => (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter((l) => (l.split(' ')[4] ?? '').startsWith(under));

t.test('a mountPath whose nearest existing parent is / gets a root of its own', { skip: !root && 'needs root (the suite runs as root)' }, async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kubeloop-podroot-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const vol = path.join(dir, 'vol');
  const containerDir = path.join(dir, 'c');
  await mkdir(vol);
  await mkdir(containerDir);
  await writeFile(path.join(vol, 'f'), 'from the volume\n');
  const top = `/kl-unit-${process.pid}`;
  const s = await writeSetup({
    containerDir,
    mounts: [
      { name: 'v', source: vol, mountPath: `${top}/data`, readOnly: false },
      { name: 'f', source: path.join(vol, 'f'), mountPath: `${top}-file`, readOnly: true },
    ],
    etc: undefined,
    cwd: `${top}/data`,
    env: { PATH: '/usr/bin:/bin' },
    execPrefix: [],
    newRoot: true,
  });
  t.same(s.skipped, [], 'nothing is left out');
  const probe = [
    `cat ${top}/data/f ${top}-file`,
    'pwd',
    'echo x > f2 && echo written',
    `ls / | grep -c '^kl-unit-${process.pid}'`,
    'ls /proc/self/fd >/dev/null && echo proc',
    `[ -e ${containerDir}/_ns/root ] && echo scratch-visible || echo scratch-hidden`,
    '[ -e /.kubeloop-old ] && echo old-visible || echo old-gone',
  ].join('; ');
  const r = await run('unshare', ['--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child=SIGKILL', '--', 'env', '-i', 'sh', s.script, 'sh', '-c', probe], containerDir);
  t.equal(r.code, 0, r.err);
  t.equal(r.out, `from the volume\nfrom the volume\n${top}/data\nwritten\n2\nproc\nscratch-hidden\nold-gone\n`, 'the volume and a file at their paths, the cwd, /proc, nothing of the scratch or the old root');
  t.equal(await readFile(path.join(vol, 'f2'), 'utf8'), 'x\n', 'writes reach the volume');
  t.notOk(existsSync(top) || existsSync(`${top}-file`), "nothing is made in the host's /");
  t.same(await hostMounts(dir), [], 'nothing stays mounted on the host');
  t.notOk(existsSync(s.script), 'the script removed itself');
});

t.test('emptyDir medium Memory: one tmpfs however many ask, unmounted', { skip: !root && 'needs root' }, async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kubeloop-memvol-'));
  const vol = path.join(dir, '_volumes', 'mem');
  await mkdir(vol, { recursive: true });
  t.teardown(async () => {
    await unmountBelow(dir);
    await rm(dir, { recursive: true, force: true });
  });
  const [a, b] = await Promise.all([ensureTmpfs(vol, 2 * 1024 * 1024), ensureTmpfs(vol, 2 * 1024 * 1024)]);
  t.same([a, b], [{ tmpfs: true }, { tmpfs: true }], 'both callers get the tmpfs');
  const lines = await hostMounts(vol);
  t.equal(lines.length, 1, 'mounted once');
  t.match(lines[0], / - tmpfs kubeloop-emptydir .*size=2048k/, 'a tmpfs of the size asked for');
  t.same(await unmountBelow(dir), [], 'unmounted');
  t.same(await hostMounts(dir), [], 'nothing stays mounted');
  t.same(await ensureTmpfs(vol, undefined), { tmpfs: true }, 'mounted again after an unmount (no stale memo)');
  t.equal((await hostMounts(vol)).length, 1);
});
