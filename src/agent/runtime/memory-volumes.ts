import { execFile } from 'node:child_process';
import { readFile, realpath } from 'node:fs/promises';
import path from 'node:path';

/**
 * `emptyDir: { medium: Memory }` as the kubelet mounts it: a tmpfs on the volume's directory
 * under the pod dir, mounted on the host side before a container uses it, so every container
 * of the pod (each in its own mount namespace, made after it) shares the one tmpfs; `sizeLimit`
 * becomes `size=` (none: the kernel's default, half the RAM). Only root can mount on the host
 * side; a non-root daemon's containers each have their own user namespace, where a tmpfs
 * would not be shared, so the volume stays a directory on disk (`tmpfs: false` says why).
 *
 * Every tmpfs is named `kubeloop-emptydir`: `unmountBelow` detaches only those, when the pod's
 * volumes are removed, when a killed daemon's pod dirs are collected, and at the runtime's stop.
 */
export type MemoryVolume = { tmpfs: true } | { tmpfs: false; why: string };

export const TMPFS_SOURCE = 'kubeloop-emptydir';

const BIN_DIRS = '/usr/bin:/bin:/usr/sbin:/sbin';

/** one mount per directory however many containers ask at once */
const mounting = new Map<string, Promise<MemoryVolume>>();

function run(file: string, args: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 5000, env: { PATH: BIN_DIRS } }, (e, _out, err) =>
      resolve(e ? String(err).trim().split('\n')[0] || e.message : undefined),
    );
  });
}

interface MountLine {
  point: string;
  fstype: string;
  source: string;
}

async function mounts(): Promise<MountLine[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const out: MountLine[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const dash = f.indexOf('-');
    if (dash < 0 || f.length < dash + 3) continue;
    out.push({ point: unescapeMount(f[4] ?? ''), fstype: f[dash + 1] ?? '', source: unescapeMount(f[dash + 2] ?? '') });
  }
  return out;
}

/**
 * Makes `dir` (which must exist) a tmpfs of at most `sizeBytes`, unless it is one already
 * (a daemon restarted while the pod stayed: its content is kept, as the kubelet keeps it).
 * Never rejects.
 */
export function ensureTmpfs(dir: string, sizeBytes: number | undefined): Promise<MemoryVolume> {
  let p = mounting.get(dir);
  if (!p) {
    p = (async (): Promise<MemoryVolume> => {
      if (process.platform !== 'linux') return { tmpfs: false, why: 'tmpfs needs Linux' };
      if (process.getuid?.() !== 0) {
        return { tmpfs: false, why: 'kubeloop does not run as root, and a tmpfs mounted in one container\'s user namespace is not seen by the pod\'s other containers' };
      }
      // mountinfo names real paths (a state dir reached through a symlink would not match)
      const real = await realpath(dir).catch(() => dir);
      if ((await mounts()).some((m) => m.point === real && m.source === TMPFS_SOURCE)) return { tmpfs: true };
      const size = sizeBytes && sizeBytes > 0 ? `,size=${Math.ceil(sizeBytes)}` : '';
      const err = await run('mount', ['-t', 'tmpfs', '-o', `mode=0700${size}`, TMPFS_SOURCE, dir]);
      return err ? { tmpfs: false, why: `cannot mount a tmpfs: ${err}` } : { tmpfs: true };
    })();
    mounting.set(dir, p);
    // a failure is not remembered: the next container of the pod tries again
    void p.then((r) => {
      if (!r.tmpfs && mounting.get(dir) === p) mounting.delete(dir);
    });
  }
  return p;
}

/**
 * Detaches (lazily: a process may still hold a file) every `kubeloop-emptydir` tmpfs at or
 * below `dir`, deepest first. Resolves to the mount points it could not detach.
 */
export async function unmountBelow(dir: string): Promise<string[]> {
  const under = (d: string, p: string) => p === d || p.startsWith(d.endsWith('/') ? d : `${d}/`);
  for (const d of [...mounting.keys()]) if (under(dir, d)) mounting.delete(d);
  if (process.platform !== 'linux') return [];
  const real = await realpath(dir).catch(() => dir);
  const points = (await mounts())
    .filter((m) => m.source === TMPFS_SOURCE && m.fstype === 'tmpfs' && under(real, m.point))
    .map((m) => m.point)
    .sort((a, b) => b.split(path.sep).length - a.split(path.sep).length);
  const failed: string[] = [];
  // a directory mounted twice shows twice: each umount takes the top one
  for (const p of points) if (await run('umount', ['-l', p])) failed.push(p);
  return failed;
}

const unescapeMount = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
