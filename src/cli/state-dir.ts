/**
 * The state dir is the owner's alone: the dir 0700, everything in it without group or other
 * bits (the store snapshot holds Secrets, pki/ holds keys, the kubeconfig a credential, logs
 * whatever pods print). Modes are set explicitly, so the umask does not matter; a dir made by an
 * older kubeloop with wider modes is tightened at start.
 */
import { chmod, lstat, mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { Logger } from 'pino';
import { PID_FILE } from './pid-file.js';

/**
 * What the daemon keeps in the state dir and trusts: another user who owns one of these (or
 * puts a symlink there) could swap the CA or the snapshot under a root daemon, which a chmod by
 * root does not prevent. pki/'s files are checked too (`checkOwnedPaths`).
 */
const TRUSTED = ['pki', 'kubeconfig', 'store.json', 'snapshot.json', 'pods', 'volumes', PID_FILE];
/** the embedded store's journal segments (`journal-<rv>.log`) */
const JOURNAL = /^journal-\d+\.log$/;

async function userName(uid: number): Promise<string> {
  try {
    const line = (await readFile('/etc/passwd', 'utf8')).split('\n').find((l) => l.split(':')[2] === String(uid));
    return line ? `${line.split(':')[0]} (uid ${uid})` : `uid ${uid}`;
  } catch {
    return `uid ${uid}`;
  }
}

/**
 * Throws one line naming the first path that is a symlink or not owned by this process's
 * user, its owner and the fix; missing paths are fine. `stateDir` is for the message.
 */
export async function checkOwnedPaths(paths: readonly string[], stateDir: string): Promise<void> {
  const uid = process.getuid?.();
  if (uid === undefined) return;
  for (const p of paths) {
    let st;
    try {
      st = await lstat(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw e;
    }
    if (st.isSymbolicLink()) {
      throw new Error(`${p} in the state dir is a symlink, which kubeloop does not follow there (another user could point it anywhere): remove it, or pick another --state-dir`);
    }
    if (st.uid !== uid) {
      const me = await userName(uid);
      throw new Error(
        `${p} is owned by ${await userName(st.uid)}, not by this daemon's user ${me}: another user could replace its keys or state. chown -R ${me.split(' ')[0]} ${stateDir} if it is yours, or pick another --state-dir`,
      );
    }
  }
}

/** The state dir, what it holds that the daemon trusts, and pki/'s files: owned by this user, no symlinks. */
export async function checkStateDirOwner(dir: string): Promise<void> {
  await checkOwnedPaths([dir, ...TRUSTED.map((n) => join(dir, n))], dir);
  let top: string[] = [];
  try {
    top = await readdir(dir);
  } catch {
    // no state dir yet
  }
  await checkOwnedPaths(top.filter((n) => JOURNAL.test(n)).map((n) => join(dir, n)), dir);
  let names: string[] = [];
  try {
    names = await readdir(join(dir, 'pki'));
  } catch {
    // no pki/ yet, or not a dir (ensurePki says so)
  }
  await checkOwnedPaths(names.map((n) => join(dir, 'pki', n)), dir);
}

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
 * What a pod's processes read: its /etc/resolv.conf and /etc/hosts (0644 as in a container)
 * and its volume files (their `defaultMode`/`mode`), in `pods/<pod>/_etc` and
 * `pods/<pod>/_volumes`. The pod's own dir is owner-only, which keeps other users out of
 * everything below it; inside, files keep the modes the pod's spec gave them (a restart used to
 * make every pod's resolv.conf and ConfigMap file 0600, and warn about it each time).
 */
const POD_OWN = /^pods\/[^/]+\/(_etc|_volumes)$/;

/**
 * Removes group and other bits from `dir` and everything under it (symlinks are not followed),
 * except inside each pod's `_etc` and `_volumes` (see POD_OWN). Resolves to the number of paths
 * changed. Runs before any component starts, so nothing else writes there meanwhile.
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
    if (st.isDirectory() && !POD_OWN.test(relative(dir, p))) {
      for (const name of await readdir(p)) await visit(join(p, name));
    }
  };
  await visit(dir);
  return changed;
}

/**
 * `checkStateDirOwner` (before anything is made or changed there), `ensurePrivateDir` +
 * `tightenTree`, with a log line naming what was widened before.
 */
export async function securePrivateStateDir(dir: string, log: Logger): Promise<void> {
  await checkStateDirOwner(dir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const changed = await tightenTree(dir);
  if (changed > 0) log.warn({ stateDir: dir, paths: changed }, 'the state dir was readable by other users (made by an older kubeloop?): made it owner-only');
}
