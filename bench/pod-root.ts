// What a container's start costs with its mounts (sandbox.ts, mount-script.ts): spawn → exit of
// `true` through the real wrapper, three ways interleaved over the rounds:
//   ns      the mount + PID namespace, no setup script (the reference)
//   overlay a volume at /opt/kl-bench (an overlay on /opt makes the mount point)
//   newroot a volume at /kl-bench (nearest existing parent /: a root of the container's own)
// plus the mounts the new root's namespace holds. Medians; ratios are medians of per-round ratios.
// Run: node --import tsx bench/pod-root.ts [rounds]  (as root or with user namespaces; writes bench/results/pod-root.md)
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { writeSetup } from '../src/agent/runtime/container-mounts.js';
import { detectSandbox } from '../src/agent/runtime/sandbox.js';
import { median, pairedRatio } from './stats.js';

const ROUNDS = Math.min(Number(process.argv[2] ?? 30) || 30, 200);

function run(argv: string[], cwd: string): Promise<{ ms: number; out: string }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    execFile(argv[0]!, argv.slice(1), { cwd, timeout: 10_000 }, (e, out, err) => (e ? reject(new Error(`${e.message}: ${err}`)) : resolve({ ms: performance.now() - t0, out: String(out) })));
  });
}

const dir = await mkdtemp(path.join(tmpdir(), 'kubeloop-bench-podroot-'));
try {
  const { sandbox } = await detectSandbox(dir);
  if (!sandbox.mounts || !sandbox.newRoot) throw new Error('this machine gives pods no mount namespace or no new root: nothing to measure');
  const vol = path.join(dir, 'vol');
  await mkdir(vol);
  const cases = {
    ns: undefined,
    overlay: '/opt/kl-bench',
    newroot: '/kl-bench',
  } as const;
  const ms: Record<keyof typeof cases, number[]> = { ns: [], overlay: [], newroot: [] };
  let mounts = '';
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, mountPath] of Object.entries(cases) as [keyof typeof cases, string | undefined][]) {
      const containerDir = path.join(dir, `${name}-${r}`);
      await mkdir(containerDir);
      let setup: string | undefined;
      if (mountPath) {
        const s = await writeSetup({ containerDir, mounts: [{ name: 'v', source: vol, mountPath, readOnly: false }], etc: undefined, cwd: '/', env: { PATH: '/usr/bin:/bin' }, execPrefix: sandbox.execPrefix });
        if (s.skipped.length) throw new Error(s.skipped.join('; '));
        setup = s.script;
      }
      const last = r === ROUNDS - 1 && name === 'newroot';
      const argv = last ? ['/bin/sh', '-c', 'grep -c . /proc/self/mountinfo'] : ['/bin/true'];
      const res = await run(sandbox.wrap(argv, containerDir, setup), containerDir);
      if (last) mounts = res.out.trim();
      else ms[name].push(res.ms);
    }
  }
  const host = (await run(['/bin/sh', '-c', 'grep -c . /proc/self/mountinfo'], dir)).out.trim();
  const load = (await import('node:os')).loadavg()[0]!.toFixed(1);
  const f = (x: number) => x.toFixed(1);
  const md = [
    `# A container's start with its mounts (${ROUNDS} interleaved rounds, ${new Date().toISOString().slice(0, 10)}, 1-min load ${load}, ${process.getuid?.() === 0 ? 'root' : 'non-root: user namespaces'})`,
    '',
    'spawn → exit of `true` through the real wrapper (setpriv, unshare, setup script, flock):',
    '',
    '| case | median ms | ratio to ns |',
    '|---|---|---|',
    `| ns: mount + PID namespace, no setup (reference) | ${f(median(ms.ns))} | 1 |`,
    `| overlay: a volume at /opt/kl-bench | ${f(median(ms.overlay))} | ${pairedRatio(ms.overlay, ms.ns).toFixed(2)} |`,
    `| newroot: a volume at /kl-bench (a root of its own) | ${f(median(ms.newroot))} | ${pairedRatio(ms.newroot, ms.ns).toFixed(2)} |`,
    '',
    `Mounts in the new root's namespace: ${mounts} (the host's: ${host}).`,
    '',
  ].join('\n');
  console.log(md);
  await writeFile('bench/results/pod-root.md', md);
} finally {
  await rm(dir, { recursive: true, force: true });
}
