import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { writePrivate } from './state-dir.js';

const FILE = 'instance-id';

/**
 * This daemon instance's identity on a shared store (the owner of its node's Lease, the
 * controllers' leader election): made once per state dir and kept there, so a daemon restarted
 * on the same state dir is the same owner and takes its node back at once, while a daemon on
 * another state dir (or a copy on another host started beside it) is another one.
 */
export async function ensureInstanceId(stateDir: string): Promise<string> {
  const file = join(stateDir, FILE);
  const cur = (await readFile(file, 'utf8').catch(() => '')).trim();
  if (/^[\w.-]{1,200}$/.test(cur)) return cur;
  const id = `${hostname().replace(/[^\w.-]/g, '-').slice(0, 100)}_${randomBytes(6).toString('hex')}`;
  await writePrivate(file, `${id}\n`);
  return id;
}
