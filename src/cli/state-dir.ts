/**
 * The state dir is the owner's alone: the dir 0700, everything in it without group or other
 * bits (the store snapshot holds Secrets, pki/ holds keys, the kubeconfig a credential, logs
 * whatever pods print). Modes are set explicitly, so the umask does not matter; a dir made by an
 * older kubeloop with wider modes is tightened at start.
 */
import { chmod, lstat, mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';

/** Makes `dir` (and missing parents) and sets it to 0700 whatever it was. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
}

/** Written to a temporary name with mode 0600, then renamed: never torn, never briefly wider. */
export async function writePrivate(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, file);
}

/**
 * Removes group and other bits from `dir` and everything under it (symlinks are not followed).
 * Resolves to the number of paths changed. Runs before any component starts, so nothing
 * else writes there meanwhile.
 */
export async function tightenTree(dir: string): Promise<number> {
  let changed = 0;
  const visit = async (p: string): Promise<void> => {
    let st;
    try {
      st = await lstat(p);
    } catch {
      return; // gone meanwhile
    }
    if (st.isSymbolicLink()) return;
    if ((st.mode & 0o077) !== 0) {
      await chmod(p, st.mode & 0o700);
      changed++;
    }
    if (st.isDirectory()) {
      for (const name of await readdir(p)) await visit(join(p, name));
    }
  };
  await visit(dir);
  return changed;
}

/** `ensurePrivateDir` + `tightenTree`, with a log line naming what was widened before. */
export async function securePrivateStateDir(dir: string, log: Logger): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const changed = await tightenTree(dir);
  if (changed > 0) log.warn({ stateDir: dir, paths: changed }, 'the state dir was readable by other users (made by an older kubeloop?): made it owner-only');
}
