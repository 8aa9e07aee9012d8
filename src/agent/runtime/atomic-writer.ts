import { chmod, mkdir, readFile, readdir, readlink, rename, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** One file of a projected volume: its path relative to the volume, its bytes and mode. */
export interface VolumeFile {
  data: Buffer;
  mode: number;
}

const DATA = '..data';
const DATA_TMP = '..data_tmp';

/**
 * The kubelet's atomic writer layout (pkg/volume/util/atomic_writer.go), so a reader never sees
 * half of an update:
 *
 *   <dir>/..2026_01_02_15_04_05.123456789/key   the files of one version
 *   <dir>/..data → ..2026_01_02_15_04_05.123456789   swapped by one rename(2)
 *   <dir>/key → ..data/key                        what the user sees (top-level names only)
 *
 * Writes a new version only when the content or a mode differs from the current one; the old
 * version dir and user-visible links of names gone are removed after the swap. Resolves to
 * whether anything was written.
 */
export async function writeAtomic(dir: string, files: ReadonlyMap<string, VolumeFile>): Promise<boolean> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const current = await readlink(path.join(dir, DATA)).catch(() => undefined);
  if (current && (await sameContent(path.join(dir, current), files))) {
    await linkTopLevel(dir, files); // a previous write may have stopped before the links
    return false;
  }
  const version = versionName();
  const vdir = path.join(dir, version);
  await mkdir(vdir, { mode: 0o700 });
  for (const [rel, f] of files) {
    const p = path.join(vdir, rel);
    await mkdir(path.dirname(p), { recursive: true, mode: 0o700 });
    await writeFile(p, f.data, { mode: f.mode });
    await chmod(p, f.mode); // the umask does not narrow it
  }
  const tmp = path.join(dir, DATA_TMP);
  await unlink(tmp).catch(() => undefined);
  await symlink(version, tmp);
  await rename(tmp, path.join(dir, DATA));
  await linkTopLevel(dir, files);
  // old versions (and any left by an interrupted write) go once nothing links to them
  for (const e of await readdir(dir)) {
    if (e.startsWith('..') && e !== DATA && e !== version) await rm(path.join(dir, e), { recursive: true, force: true });
  }
  return true;
}

/** `key → ..data/key` for each top-level name; links of names no longer projected are removed */
async function linkTopLevel(dir: string, files: ReadonlyMap<string, VolumeFile>): Promise<void> {
  const want = new Set([...files.keys()].map((rel) => rel.split('/')[0]!));
  for (const e of await readdir(dir)) {
    if (e.startsWith('..') || want.has(e)) continue;
    await rm(path.join(dir, e), { recursive: true, force: true });
  }
  for (const name of want) {
    const p = path.join(dir, name);
    const target = path.join(DATA, name);
    const cur = await readlink(p).catch(() => undefined);
    if (cur === target) continue;
    await rm(p, { recursive: true, force: true });
    await symlink(target, p);
  }
}

async function sameContent(vdir: string, files: ReadonlyMap<string, VolumeFile>): Promise<boolean> {
  const have = await listFiles(vdir).catch(() => undefined);
  if (!have || have.length !== files.size) return false;
  for (const rel of have) {
    const f = files.get(rel);
    if (!f) return false;
    const p = path.join(vdir, rel);
    const [st, data] = await Promise.all([stat(p), readFile(p)]);
    if ((st.mode & 0o7777) !== f.mode || !data.equals(f.data)) return false;
  }
  return true;
}

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(path.join(dir, e.name), rel)));
    else out.push(rel);
  }
  return out;
}

let last = '';
let seq = 0;

/** `..2026_01_02_15_04_05.<ns>` as the kubelet names them; unique within this process */
function versionName(): string {
  const d = new Date();
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const base = `..${d.getUTCFullYear()}_${p(d.getUTCMonth() + 1)}_${p(d.getUTCDate())}_${p(d.getUTCHours())}_${p(d.getUTCMinutes())}_${p(d.getUTCSeconds())}`;
  const frac = `${p(d.getUTCMilliseconds(), 3)}${p(Number(process.hrtime.bigint() % 1_000_000n), 6)}`;
  let name = `${base}.${frac}`;
  if (name <= last) name = `${base}.${frac}${p(++seq, 4)}`;
  last = name;
  return name;
}

/**
 * Checks a projected path as the kubelet's validatePath does: relative, no `..` element, not
 * starting with `..`. Returns the problem, or undefined.
 */
export function pathProblem(rel: string): string | undefined {
  if (!rel) return 'must not be empty';
  if (path.isAbsolute(rel)) return 'must be a relative path';
  if (rel.length > 4096) return 'must be at most 4096 characters';
  const parts = rel.split('/');
  if (parts.includes('..')) return "must not contain '..'";
  if (rel.startsWith('..')) return "must not start with '..'";
  return undefined;
}
