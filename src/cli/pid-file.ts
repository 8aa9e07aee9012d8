/**
 * One daemon per state dir, through `<stateDir>/kubeloop.pid`: `<pid> <start time>`, the start
 * time being field 22 of /proc/<pid>/stat (clock ticks since boot), so a pid the kernel gave to
 * another process since is told apart from the daemon that wrote it. A file whose pid is dead,
 * reused, or a live process that is not a kubeloop of this state dir (by its /proc cmdline) is
 * taken over with a log line; only a live kubeloop of this state dir keeps the next one out.
 */
import { linkSync, readFileSync, readlinkSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { Logger } from 'pino';

export const PID_FILE = 'kubeloop.pid';

/**
 * Takes the pid file of `stateDir` (absolute) or throws naming the daemon that holds it. Returns
 * its path. The file is created exclusively (a complete temp file hard-linked into place), so of
 * two `up` started at the same instant on one state dir exactly one gets it; a stale file is
 * removed and the exclusive create tried once more.
 */
export function takePidFile(stateDir: string, log: Logger): string {
  const file = join(stateDir, PID_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${process.pid} ${startTime(process.pid) ?? ''}\n`.replace(' \n', '\n'), { mode: 0o600 });
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        linkSync(tmp, file);
        return file;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      let text = '';
      try {
        text = readFileSync(file, 'utf8');
      } catch {
        continue; // removed meanwhile: try the exclusive create again
      }
      const [pidText, startText] = text.trim().split(/\s+/);
      const pid = Number(pidText) || 0;
      // our own pid in a file we did not just create: a killed daemon's, whose pid we were given
      if (pid === process.pid) {
        rmSync(file, { force: true });
        continue;
      }
      const why = pid ? staleReason(pid, startText, stateDir) : 'is not a pid';
      if (!why) throw new Error(`another kubeloop (pid ${pid}) is using the state dir ${stateDir}: stop it, or pass --state-dir`);
      if (why !== 'gone') log.warn({ pid, file }, `taking over the pid file: pid ${pid} ${why}`);
      rmSync(file, { force: true });
    }
    throw new Error(`another kubeloop took the state dir ${stateDir} at the same moment: stop it, or pass --state-dir`);
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** why the daemon `pid` names is not holding the state dir; undefined when it is */
function staleReason(pid: number, recordedStart: string | undefined, stateDir: string): string | undefined {
  const start = startTime(pid);
  // a zombie (killed, not yet reaped by its parent) still answers kill(pid, 0): it holds nothing
  if (start === undefined) return alive(pid) && !zombie(pid) ? undefined : 'gone';
  if (recordedStart && recordedStart !== start) return `is not a kubeloop: the pid was reused (started at tick ${start}, not ${recordedStart})`;
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return undefined; // cannot tell: assume it is one
  }
  if (!argv.some((a) => /^kubeloop(\.[cm]?[jt]s)?$/.test(basename(a)) || /src\/cli\/main\.[jt]s$/.test(a))) {
    return `is not a kubeloop (${basename(argv[0] ?? '?')})`;
  }
  const theirs = stateDirOf(pid, argv);
  if (theirs !== undefined && canonical(theirs) !== canonical(stateDir)) return `is a kubeloop of another state dir (${theirs})`;
  return undefined;
}

/** the state dir a running kubeloop uses, from its argv, environment and cwd; undefined when unreadable */
function stateDirOf(pid: number, argv: readonly string[]): string | undefined {
  let cwd: string;
  try {
    cwd = readlinkSync(`/proc/${pid}/cwd`);
  } catch {
    return undefined;
  }
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--state-dir' && argv[i + 1] !== undefined) return resolve(cwd, argv[i + 1]);
    if (argv[i].startsWith('--state-dir=')) return resolve(cwd, argv[i].slice('--state-dir='.length));
  }
  try {
    const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    const v = env.find((e) => e.startsWith('KUBELOOP_STATE_DIR='));
    return resolve(cwd, v ? v.slice('KUBELOOP_STATE_DIR='.length) : '.kubeloop');
  } catch {
    return undefined;
  }
}

function canonical(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

/** field 22 of /proc/<pid>/stat, a zombie counting as gone */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (f[0] === 'Z' || f[0] === 'X') return undefined;
    return f[19];
  } catch {
    return undefined;
  }
}

function zombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return /^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
