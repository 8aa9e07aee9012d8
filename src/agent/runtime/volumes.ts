import { mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Container, PersistentVolumeClaim, Pod } from '../../api/types.js';

/**
 * Where a pod's volumes live on this machine. Without containers a `mountPath` cannot be
 * remapped, so a process finds each mounted volume through an environment variable, and the
 * first mount is its working directory (unless the container sets `workingDir`):
 *
 * | volume | directory |
 * |---|---|
 * | `persistentVolumeClaim` | `<stateDir>/volumes/<namespace>/<claim>/` (kept until the claim is deleted) |
 * | `emptyDir` | `<stateDir>/pods/<ns>_<pod>_<uid>/_volumes/<volume>/` (removed with the pod) |
 * | `hostPath` | the path itself (made for `DirectoryOrCreate`) |
 *
 * For each `volumeMounts[]` entry the container gets `KUBELOOP_VOLUME_<NAME>=<dir>` (the mount's
 * name upper-cased, `-` and `.` → `_`), with `subPath` appended when given.
 */
export interface VolumeContext {
  /** absolute state dir of the node agent */
  stateDir: string;
  /** `${stateDir}/pods/<ns>_<name>_<uid>` */
  podDir: string;
  claim(namespace: string, name: string): PersistentVolumeClaim | undefined;
}

export type VolumeResult =
  | { ok: true; env: Record<string, string>; cwd: string | undefined }
  | { ok: false; message: string };

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
export function containerVolumes(pod: Pod, container: Container, ctx: VolumeContext): VolumeResult {
  const ns = pod.metadata?.namespace ?? 'default';
  const volumes = new Map((pod.spec?.volumes ?? []).map((v) => [v.name, v]));
  const env: Record<string, string> = {};
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
    } else {
      // configMap, secret, projected, downwardAPI...: nothing on disk to hand over (yet)
      continue;
    }
    if (m.subPath) dir = path.join(dir, m.subPath);
    const isHostFile = v.hostPath?.type === 'File';
    // claims and emptyDirs are ours to make; a hostPath only when asked to (or for a subPath in it)
    if (!isHostFile && (!v.hostPath || v.hostPath.type === 'DirectoryOrCreate' || m.subPath)) {
      try {
        // claims and emptyDirs live in the owner-only state dir; a hostPath gets upstream's 0755
        mkdirSync(dir, { recursive: true, mode: v.hostPath ? 0o755 : 0o700 });
      } catch (err) {
        return { ok: false, message: `cannot make the directory of volume "${m.name}" (${dir}): ${(err as Error).message}` };
      }
    }
    env[volumeEnvName(m.name)] = dir;
    if (cwd === undefined && !isHostFile && statOf(dir)?.isDirectory()) cwd = dir;
  }
  return { ok: true, env, cwd };
}

function statOf(p: string) {
  try {
    return statSync(p);
  } catch {
    return undefined;
  }
}
