import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { type NofileLimit, readNofile } from '../util/fds.js';

const run = promisify(execFile);

/**
 * Makes the daemon's soft RLIMIT_NOFILE its hard limit: every listener, connection and pod log
 * is a descriptor, and one limit is shared by every component. Node itself raises the soft
 * limit at start-up (unless embedded without it); when it is still below the hard limit,
 * util-linux `prlimit` raises it (Node has no setrlimit; raising one's own soft limit up to
 * the hard one needs no privilege). Logs the outcome once (debug; a failure as a warning with
 * the fix); never throws. Linux only.
 */
export async function raiseNofile(log: Logger): Promise<NofileLimit | undefined> {
  const before = await readNofile();
  if (!before) return undefined;
  let now = before;
  if (before.soft < before.hard) {
    const to = Number.isFinite(before.hard) ? String(before.hard) : 'unlimited';
    try {
      await run('prlimit', [`--pid=${process.pid}`, `--nofile=${to}:${to}`], { timeout: 5000 });
      now = (await readNofile()) ?? before;
    } catch (err) {
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      log.warn(
        { err: missing ? undefined : err, soft: before.soft, hard: before.hard },
        `cannot raise the open-files limit from ${before.soft} to ${before.hard}` +
          `${missing ? ' (prlimit from util-linux is not installed)' : ''}: run \`ulimit -n ${to}\` before kubeloop up`,
      );
      return before;
    }
  }
  // /metrics shows it as process_max_fds next to process_open_fds
  log.debug({ before, now }, `open-files limit (RLIMIT_NOFILE) ${now.soft}`);
  return now;
}
