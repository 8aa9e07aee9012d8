import { readFile } from 'node:fs/promises';
import path from 'node:path';

/** One bind mount a container gets inside its mount namespace. */
export interface BindMount {
  /** host path: a volume's directory, a file in it (subPath), or the pod's hosts/resolv.conf */
  source: string;
  /** where the process sees it */
  target: string;
  readOnly: boolean;
  file: boolean;
  /**
   * the nearest existing ancestor of a target that does not exist on this machine: an overlay
   * (upper layer in the namespace's private tmpfs) is put on it so the mount point can be made
   * without touching the host's filesystem
   */
  overlayOn?: string;
  /** the mount point is made in the new root (its nearest existing parent on this machine is `/`) */
  inNewRoot?: boolean;
}

/** one entry of this machine's `/`, carried into a pod's new root */
export interface RootEntry {
  name: string;
  /** dir: `mount --rbind` (its submounts too: /proc, /sys, /dev); file: `mount --bind`; link: the same symlink */
  kind: 'dir' | 'file' | 'link';
  /** a link's target */
  link?: string;
}

/**
 * A new root for the container's mount namespace: a tmpfs holding every entry of this
 * machine's `/` (bound, so the same files), the missing top-level mount points, and the
 * volumes; `pivot_root` then makes it `/` for every process of the namespace (the `unshare`
 * that holds it included, so `nsenter --mount` finds the same view), and the old root is
 * detached.
 */
export interface NewRoot {
  entries: readonly RootEntry[];
  /**
   * the scratch dir's real path: the entry that holds it is bound first and the copy of the
   * scratch tmpfs it brings along is detached at once (it would hold the new root itself)
   */
  scratchReal: string;
}

export interface MountScript {
  /** host dir where the namespace's private tmpfs goes (made by the caller, owner-only) */
  scratch: string;
  mounts: readonly BindMount[];
  /** the overlays' parents and, for each, the mount points below it (re-attached on top) */
  overlays: ReadonlyMap<string, readonly string[]>;
  /** the process's working directory, as the process sees it */
  cwd: string;
  env: Readonly<Record<string, string>>;
  /** run before the program (the nested user namespace that gives a non-root daemon its own uid back) */
  execPrefix: readonly string[];
  /** build a new root and pivot into it; mount targets are then real paths (no symlink in them) */
  newRoot?: NewRoot;
}

/** names dash keeps in its environment; others go through env(1) */
const SHELL_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The `sh` script that pid 1 of a container's namespaces runs before the program (run as
 * `env -i /bin/sh <script> <program argv>`): mounts a private tmpfs, pins each source there,
 * overlays parents of mount points that do not exist, binds every volume (read-only where
 * asked), then restores the container's exact environment and execs the program. It removes
 * itself first (it holds the environment, secrets included). Any failed mount ends it with
 * exit code 125 and one `kubeloop:` line in the container's log.
 */
export function mountScript(s: MountScript): string {
  const L: string[] = [
    'rm -f "$0"',
    'fail() { echo "kubeloop: $*" >&2; exit 125; }',
    `mount -t tmpfs -o mode=0700,size=16m kubeloop-pod ${q(s.scratch)} || fail "cannot mount a tmpfs in the pod's mount namespace"`,
    `cd ${q(s.scratch)} || fail "cannot enter the pod's scratch dir"`,
    'mkdir src ovl pin',
  ];
  // 1. every source pinned first: overlays below may hide its host path
  s.mounts.forEach((m, i) => {
    L.push(m.file ? `: > src/${i}` : `mkdir src/${i}`);
    L.push(`mount --bind ${q(m.source)} src/${i} || fail ${q(`cannot bind ${m.source}`)}`);
  });
  // 2. overlays (paths relative to the scratch dir: kernel lookups from the cwd, no canonicalizing)
  let o = 0;
  for (const [parent, below] of s.overlays) {
    L.push(`mkdir -p ovl/${o}/u ovl/${o}/w pin/${o}`);
    below.forEach((b, j) => L.push(`mkdir pin/${o}/${j} && mount --rbind ${q(b)} pin/${o}/${j} || fail ${q(`cannot keep the mount ${b}`)}`));
    L.push(
      `mount -c -t overlay kubeloop-overlay -o ${q(`lowerdir=${parent},upperdir=ovl/${o}/u,workdir=ovl/${o}/w`)} ${q(parent)} || fail ${q(`cannot overlay ${parent} to make mount points below it (overlayfs)`)}`,
    );
    below.forEach((b, j) => L.push(`mount -c --rbind pin/${o}/${j} ${q(b)} || fail ${q(`cannot restore the mount ${b}`)}`));
    o++;
  }
  // 3. the new root (after the overlays: its binds carry them along)
  const R = s.newRoot ? 'root' : '';
  if (s.newRoot) L.push(...newRootLines(s.newRoot));
  // 4. the mounts at their paths (in the new root: `root/<target>`, relative to the scratch dir)
  s.mounts.forEach((m, i) => {
    const t = q(R + m.target);
    if (m.overlayOn || m.inNewRoot) {
      L.push(m.file ? `mkdir -p ${q(R + path.dirname(m.target))} && { [ -e ${t} ] || : > ${t}; }` : `mkdir -p ${t}`);
    }
    L.push(`mount -c --bind src/${i} ${t} || fail ${q(`cannot mount at ${m.target}`)}`);
    if (m.readOnly) L.push(`mount -o remount,bind,ro ${t} || fail ${q(`cannot make ${m.target} read-only`)}`);
  });
  if (s.newRoot) {
    // every process of the namespace whose root was the old one (the holder `unshare` too) moves
    L.push(
      'cd root && mkdir .kubeloop-old && pivot_root . .kubeloop-old || fail "cannot pivot_root into the pod\'s new root"',
      'umount -l .kubeloop-old && rmdir .kubeloop-old || fail "cannot detach the old root"',
      'cd / || fail "cannot enter the new root"',
    );
  }
  L.push(`cd ${q(s.cwd)} || fail ${q(`workingDir ${s.cwd} does not exist in the pod`)}`);
  // 5. the container's environment, exactly: dash adds PWD/OLDPWD and drops names it cannot hold
  const odd: string[] = [];
  L.push('unset PWD OLDPWD');
  for (const [k, v] of Object.entries(s.env)) {
    if (SHELL_NAME.test(k)) L.push(`export ${k}=${q(v)}`);
    else odd.push(`${k}=${v}`);
  }
  const env = odd.length ? ['/usr/bin/env', ...odd.map(q)] : [];
  L.push(`exec ${[...s.execPrefix.map(q), ...env].join(' ')} "$@"`);
  return L.join('\n') + '\n';
}

/**
 * The new root's tmpfs and this machine's `/` in it. The binds go through one `mount -a` over a
 * table written in the scratch dir (one process instead of one per entry: ~25 entries cost
 * ~1 s of execs on a loaded machine). The entry holding the scratch dir goes first, and the copy
 * of the scratch it brings along is detached right after.
 */
function newRootLines(r: NewRoot): string[] {
  const L = [`mkdir root && mount -t tmpfs -o mode=0755,size=4m kubeloop-root root || fail "cannot mount the pod's new root (tmpfs)"`];
  const top = r.scratchReal.split('/')[1] ?? '';
  const entries = [...r.entries].sort((a, b) => Number(b.name === top) - Number(a.name === top));
  const rootReal = `${r.scratchReal}/root`;
  const dirs = entries.filter((e) => e.kind === 'dir');
  if (dirs.length) L.push(`mkdir ${dirs.map((e) => q(`root/${e.name}`)).join(' ')} || fail "cannot make the new root's directories"`);
  const table: string[] = [];
  for (const e of entries) {
    if (e.kind === 'link') L.push(`ln -s ${q(e.link ?? '')} ${q(`root/${e.name}`)} || fail ${q(`cannot link /${e.name} in the new root`)}`);
    if (e.kind === 'file') L.push(`: > ${q(`root/${e.name}`)}`);
    if (e.kind !== 'link') table.push(`${fstabPath(`/${e.name}`)} ${fstabPath(`${rootReal}/${e.name}`)} none ${e.kind === 'dir' ? 'rbind' : 'bind'} 0 0`);
  }
  if (table.length) {
    L.push(`printf '%s\\n' ${table.map(q).join(' ')} > root.fstab`);
    L.push(`mount -a -T root.fstab || fail "cannot bind this machine's / into the new root"`);
  }
  if (dirs.some((e) => e.name === top)) L.push(`umount -l ${q(`root${r.scratchReal}`)} || fail "cannot hide the scratch dir in the new root"`);
  return L;
}

/** a path as fstab(5) spells it: space, tab, newline and backslash octal-escaped */
const fstabPath = (p: string): string => p.replace(/[\\ \t\n]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);

/**
 * Mount points strictly below `dir` that are not below another of them (from
 * /proc/self/mountinfo: the namespace starts as a copy of the daemon's).
 */
export async function mountsBelow(dir: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const points = [...new Set(text.split('\n').map((l) => unescapeMount(l.split(' ')[4] ?? '')).filter((p) => p.startsWith(prefix)))].sort();
  const top: string[] = [];
  for (const p of points) if (!top.some((t) => p.startsWith(`${t}/`))) top.push(p);
  return top;
}

const unescapeMount = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
