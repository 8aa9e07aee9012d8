import { statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Container, PersistentVolumeClaim, Pod } from '../../api/types.js';
import { writeAtomic } from './atomic-writer.js';
import { parseQuantity } from './env.js';
import { type MemoryVolume, ensureTmpfs } from './memory-volumes.js';
import { type ObjectLookup, isProjected, project } from './volume-sources.js';

/**
 * Where a pod's volumes live on this machine. Without containers a `mountPath` cannot be
 * remapped, so a process finds each mounted volume through an environment variable, and the
 * first mount is its working directory (unless the container sets `workingDir`):
 *
 * | volume | directory |
 * |---|---|
 * | `persistentVolumeClaim` | `<stateDir>/volumes/<namespace>/<claim>/` (kept until the claim is deleted) |
 * | `emptyDir` | `<stateDir>/pods/<ns>_<pod>_<uid>/_volumes/<volume>/` (removed with the pod) |
 * | `emptyDir` `medium: Memory` | the same directory, a tmpfs of `sizeLimit` mounted on the host side when the daemon is root (memory-volumes.ts) |
 * | `hostPath` | the path itself (made for `DirectoryOrCreate`) |
 * | `configMap`, `secret`, `downwardAPI`, `projected` | `<podDir>/_volumes/<volume>/`, the kubelet's atomic writer layout (atomic-writer.ts), rewritten when its sources change |
 *
 * (`_volumes`, not `volumes`: a pod's dir also holds a log dir per container name, and a
 * container may be called `volumes`.) With a mount namespace each mount is bound at its
 * `mountPath` (mount-script.ts); either way the container gets `KUBELOOP_VOLUME_<NAME>` (the
 * mount's name upper-cased, `-` and `.` → `_`): the `mountPath` where the volume is mounted
 * there, else the host directory (with `subPath` appended when given).
 */
export interface VolumeContext {
  /** absolute state dir of the node agent */
  stateDir: string;
  /** `${stateDir}/pods/<ns>_<name>_<uid>` */
  podDir: string;
  claim(namespace: string, name: string): PersistentVolumeClaim | undefined;
  /** ConfigMaps and Secrets for projected volumes */
  objects: ObjectLookup;
}

/** one `volumeMounts[]` entry, resolved on this machine */
export interface ResolvedMount {
  name: string;
  /** host path (a volume's dir, or the file/dir a `subPath` names in it) */
  source: string;
  mountPath: string;
  readOnly: boolean;
}

export type VolumeResult =
  | { ok: true; env: Record<string, string>; cwd: string | undefined; mounts: ResolvedMount[] }
  | { ok: false; message: string };

/**
 * Writes (or rewrites) a configMap/secret/downwardAPI/projected volume of the pod; resolves to
 * the problem when its source is missing (nothing is written then: the old content stays, as
 * the kubelet keeps a volume whose ConfigMap was deleted).
 */
export async function writeProjected(pod: Pod, volumeName: string, ctx: VolumeContext): Promise<string | undefined> {
  const v = pod.spec?.volumes?.find((x) => x.name === volumeName);
  if (!v || !isProjected(v)) return undefined;
  const p = project(pod, v, ctx.objects);
  if (!p.ok) return p.message;
  await writeAtomic(path.join(emptyDirRoot(ctx.podDir), v.name), p.files);
  return undefined;
}

export const volumeEnvName = (name: string): string => `KUBELOOP_VOLUME_${name.toUpperCase().replace(/[-.]/g, '_')}`;

/** the directory backing a claim; the volume provisioner (controllers) makes the same one */
export function claimDir(stateDir: string, namespace: string, claim: string): string {
  return path.join(stateDir, 'volumes', namespace, claim);
}

export function emptyDirRoot(podDir: string): string {
  return path.join(podDir, '_volumes');
}

/**
 * The directories of a container's mounts, made if missing; `ok: false` while one cannot be
 * provided yet (an unbound or missing claim, a hostPath `Directory` that does not exist): the
 * container waits in ContainerCreating with that message, as a pod whose volume cannot be
 * mounted does.
 */
export async function containerVolumes(pod: Pod, container: Container, ctx: VolumeContext): Promise<VolumeResult> {
  const ns = pod.metadata?.namespace ?? 'default';
  const volumes = new Map((pod.spec?.volumes ?? []).map((v) => [v.name, v]));
  const env: Record<string, string> = {};
  const mounts: ResolvedMount[] = [];
  let cwd: string | undefined;
  for (const m of container.volumeMounts ?? []) {
    const v = volumes.get(m.name);
    if (!v) return { ok: false, message: `volume "${m.name}" is mounted but not declared in spec.volumes` };
    let dir: string;
    if (v.persistentVolumeClaim) {
      const name = v.persistentVolumeClaim.claimName;
      const c = ctx.claim(ns, name);
      if (!c) return { ok: false, message: `persistentvolumeclaim "${name}" not found` };
      if (c.metadata?.deletionTimestamp) return { ok: false, message: `persistentvolumeclaim "${name}" is being deleted` };
      if (c.status?.phase !== 'Bound') return { ok: false, message: `waiting for persistentvolumeclaim "${name}" to be bound` };
      dir = claimDir(ctx.stateDir, ns, name);
    } else if (v.emptyDir) {
      dir = path.join(emptyDirRoot(ctx.podDir), v.name);
      if (v.emptyDir.medium === 'Memory') {
        const mem = await memoryVolume(dir, v.emptyDir.sizeLimit);
        if ('message' in mem) return { ok: false, message: `cannot make the directory of volume "${m.name}" (${dir}): ${mem.message}` };
      }
    } else if (v.hostPath) {
      dir = v.hostPath.path;
      const type = v.hostPath.type ?? '';
      // other types (and none) are not checked: the path is handed over as it is
      if (type === 'Directory' || type === 'File') {
        const st = statOf(dir);
        if (!st || (type === 'Directory') !== st.isDirectory()) {
          return { ok: false, message: `hostPath type check failed: ${dir} is not a ${type === 'Directory' ? 'directory' : 'file'}` };
        }
      }
    } else if (isProjected(v)) {
      let problem: string | undefined;
      try {
        problem = await writeProjected(pod, v.name, ctx);
      } catch (err) {
        problem = `cannot write volume "${v.name}": ${(err as Error).message}`;
      }
      if (problem) return { ok: false, message: problem };
      dir = path.join(emptyDirRoot(ctx.podDir), v.name);
      if (m.subPath) {
        // a key of the volume: the file it names now (updates do not reach a subPath, as upstream)
        const p = path.join(dir, m.subPath);
        if (!statOf(p)) return { ok: false, message: `volume "${v.name}" has no "${m.subPath}" (subPath of mount ${m.mountPath})` };
        mounts.push({ name: m.name, source: p, mountPath: m.mountPath, readOnly: true });
        env[volumeEnvName(m.name)] ??= p;
        continue;
      }
      mounts.push({ name: m.name, source: dir, mountPath: m.mountPath, readOnly: true });
      env[volumeEnvName(m.name)] ??= dir;
      cwd ??= dir;
      continue;
    } else {
      // image, ephemeral, csi...: nothing on disk to hand over
      continue;
    }
    if (m.subPath) dir = path.join(dir, m.subPath);
    const isHostFile = v.hostPath?.type === 'File';
    // claims and emptyDirs are ours to make; a hostPath only when asked to (or for a subPath in it)
    if (!isHostFile && (!v.hostPath || v.hostPath.type === 'DirectoryOrCreate' || m.subPath)) {
      try {
        // claims and emptyDirs live in the owner-only state dir; a hostPath gets upstream's 0755
        await mkdir(dir, { recursive: true, mode: v.hostPath ? 0o755 : 0o700 });
      } catch (err) {
        return { ok: false, message: `cannot make the directory of volume "${m.name}" (${dir}): ${(err as Error).message}` };
      }
    }
    // a volume mounted twice: the variable names its first mount
    env[volumeEnvName(m.name)] ??= dir;
    mounts.push({ name: m.name, source: dir, mountPath: m.mountPath, readOnly: !!m.readOnly });
    if (cwd === undefined && !isHostFile && statOf(dir)?.isDirectory()) cwd = dir;
  }
  return { ok: true, env, cwd, mounts };
}

/**
 * The directory of an emptyDir of medium Memory, made and (where the daemon is root) a tmpfs
 * before the first container of the pod uses it (memory-volumes.ts).
 */
export async function memoryVolume(dir: string, sizeLimit: string | undefined): Promise<MemoryVolume | { message: string }> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    return { message: (err as Error).message };
  }
  let size: number | undefined;
  try {
    size = sizeLimit ? parseQuantity(String(sizeLimit)) : undefined;
  } catch {
    size = undefined; // the API validates sizeLimit; an odd one gets the kernel's default
  }
  return ensureTmpfs(dir, size);
}

function statOf(p: string) {
  try {
    return statSync(p);
  } catch {
    return undefined;
  }
}
