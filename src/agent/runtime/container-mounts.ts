import { lstat, mkdir, readdir, readlink, realpath, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Pod } from '../../api/types.js';
import { type BindMount, type RootEntry, mountScript, mountsBelow } from './mount-script.js';
import { newRootDetected } from './sandbox.js';
import { hostsFile, resolvConf } from './pod-files.js';
import type { ResolvedMount } from './volumes.js';

export interface PodFilesInput {
  pod: Pod;
  podIP: string;
  clusterDomain: string;
  /** the kube-dns Service's ClusterIP, when there is one */
  nameserver: string | undefined;
  /** the node's own resolv.conf (for dnsPolicy Default and host-network pods) */
  hostResolv: string;
}

/** Writes the pod's `_etc/resolv.conf` and `_etc/hosts`; resolves to their paths. */
export async function writePodFiles(podDir: string, i: PodFilesInput): Promise<{ resolv: string; hosts: string }> {
  const dir = path.join(podDir, '_etc');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const resolv = path.join(dir, 'resolv.conf');
  const hosts = path.join(dir, 'hosts');
  await writeFile(resolv, resolvConf({ pod: i.pod, clusterDomain: i.clusterDomain, nameserver: i.nameserver, hostResolv: i.hostResolv }), { mode: 0o644 });
  await writeFile(hosts, hostsFile({ pod: i.pod, podIP: i.podIP, clusterDomain: i.clusterDomain }), { mode: 0o644 });
  return { resolv, hosts };
}

export interface SetupInput {
  /** `<podDir>/<container>`: the script and the scratch dir go here */
  containerDir: string;
  mounts: readonly ResolvedMount[];
  etc: { resolv: string; hosts: string } | undefined;
  cwd: string;
  env: Readonly<Record<string, string>>;
  execPrefix: readonly string[];
  /**
   * whether a mount point whose nearest existing parent is `/` may get a new root (pivot_root);
   * default: what the start-up check found (sandbox.ts)
   */
  newRoot?: boolean;
}

export interface Setup {
  /** the script file for the sandbox's pid 1 */
  script: string;
  /** mounts that cannot be at their path, with why (they are still given as KUBELOOP_VOLUME_*) */
  skipped: string[];
}

/**
 * Plans a container's mounts (which targets exist, which need an overlay on their nearest
 * existing parent) and writes the setup script (owner-only: it holds the environment).
 */
export async function writeSetup(i: SetupInput): Promise<Setup> {
  const binds: BindMount[] = [];
  const skipped: string[] = [];
  const overlays = new Map<string, readonly string[]>();
  const all = [
    ...i.mounts.map((m) => ({ source: m.source, target: path.resolve('/', m.mountPath), readOnly: m.readOnly, etc: false })),
    ...(i.etc
      ? [
          { source: i.etc.resolv, target: '/etc/resolv.conf', readOnly: false, etc: true },
          { source: i.etc.hosts, target: '/etc/hosts', readOnly: false, etc: true },
        ]
      : []),
  ];
  for (const m of all) {
    const src = await stat(m.source).catch(() => undefined);
    if (!src) {
      skipped.push(`${m.target}: ${m.source} does not exist`);
      continue;
    }
    const file = !src.isDirectory();
    const target = await stat(m.target).catch(() => undefined);
    if (target) {
      if (target.isDirectory() === file) {
        skipped.push(`${m.target}: is a ${target.isDirectory() ? 'directory' : 'file'} on this machine, the volume a ${file ? 'file' : 'directory'}`);
        continue;
      }
      binds.push({ source: m.source, target: m.target, readOnly: m.readOnly, file });
      continue;
    }
    if (m.etc || (await lstat(m.target).catch(() => undefined))) {
      // a dangling symlink (e.g. resolv.conf → a resolver that is not running): not followed
      skipped.push(`${m.target}: a dangling symlink on this machine`);
      continue;
    }
    const parent = await nearestExisting(path.dirname(m.target));
    if (parent === '/') {
      if (!(i.newRoot ?? newRootDetected())) {
        skipped.push(`${m.target}: neither it nor a parent below / exists on this machine and pods get no root of their own here (pivot_root failed at start-up): mkdir -p ${m.target}, or mount below an existing directory`);
        continue;
      }
      binds.push({ source: m.source, target: m.target, readOnly: m.readOnly, file, inNewRoot: true });
      continue;
    }
    if (!overlays.has(parent)) overlays.set(parent, await mountsBelow(parent));
    binds.push({ source: m.source, target: m.target, readOnly: m.readOnly, file, overlayOn: parent });
  }
  // an overlay on a parent of another overlay's parent would hide it: keep the outermost only
  for (const p of [...overlays.keys()]) {
    if ([...overlays.keys()].some((o) => o !== p && p.startsWith(`${o}/`))) overlays.delete(p);
  }
  for (const b of binds) if (b.overlayOn && !overlays.has(b.overlayOn)) b.overlayOn = [...overlays.keys()].find((o) => b.target.startsWith(`${o}/`));
  const scratch = path.join(i.containerDir, '_ns');
  await mkdir(scratch, { recursive: true, mode: 0o700 });
  let newRoot;
  if (binds.some((b) => b.inNewRoot)) {
    // in the new root every target is a real path: a symlink to an absolute path (/lib64 →
    // /usr/lib64) would otherwise be followed in the old root, which is detached
    for (const b of binds) if (!b.inNewRoot) b.target = await realTarget(b.target);
    newRoot = { entries: await rootEntries(), scratchReal: await realpath(scratch) };
  }
  const script = path.join(i.containerDir, '_setup.sh');
  await writeFile(script, mountScript({ scratch, mounts: binds, overlays, cwd: i.cwd, env: i.env, execPrefix: i.execPrefix, ...(newRoot ? { newRoot } : {}) }), { mode: 0o600 });
  return { script, skipped };
}

/** `p` with its existing part resolved (the part below it does not exist yet) */
async function realTarget(p: string): Promise<string> {
  const whole = await realpath(p).catch(() => undefined);
  if (whole) return whole;
  const base = await nearestExisting(p);
  return path.join(await realpath(base), path.relative(base, p));
}

/** this machine's `/` as a new root carries it (sockets, fifos and devices at the top are left out) */
async function rootEntries(): Promise<RootEntry[]> {
  const out: RootEntry[] = [];
  for (const name of (await readdir('/')).sort()) {
    const st = await lstat(path.join('/', name)).catch(() => undefined);
    if (!st) continue;
    if (st.isSymbolicLink()) out.push({ name, kind: 'link', link: await readlink(path.join('/', name)) });
    else if (st.isDirectory()) out.push({ name, kind: 'dir' });
    else if (st.isFile()) out.push({ name, kind: 'file' });
  }
  return out;
}

async function nearestExisting(dir: string): Promise<string> {
  let d = dir;
  while (d !== '/' && !(await stat(d).catch(() => undefined))?.isDirectory()) d = path.dirname(d);
  return d;
}

/** whether `cmd` (argv[0]) would be looked up where a mount puts it (absolute path or PATH dir under a mountPath) */
export function commandInMounts(cmd: string, envPath: string | undefined, mountPaths: readonly string[]): boolean {
  const under = (p: string) => mountPaths.some((m) => p === m || p.startsWith(m.endsWith('/') ? m : `${m}/`));
  if (cmd.includes('/')) return path.isAbsolute(cmd) && under(cmd);
  return (envPath ?? '').split(':').some((d) => d && under(d));
}
