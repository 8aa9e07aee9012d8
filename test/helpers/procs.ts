import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';
import { waitFor } from './wait.js';

export interface PodProcess {
  pid: number;
  podName: string;
  podIP: string;
}

/**
 * Processes whose environment says they are pods with an IP inside `podIpPrefix`
 * (e.g. `127.201.`): how tests find pod processes without asking the daemon.
 */
export function podProcesses(podIpPrefix: string): PodProcess[] {
  const out: PodProcess[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let env: string;
    try {
      env = readFileSync(`/proc/${d}/environ`, 'utf8');
    } catch {
      continue;
    }
    const vars = new Map(env.split('\0').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
    const ip = vars.get('POD_IP');
    if (ip?.startsWith(podIpPrefix)) out.push({ pid: Number(d), podName: vars.get('POD_NAME') ?? '', podIP: ip });
  }
  return out;
}

/** the pids of `pid`'s child processes (empty when it is gone) */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Is the process still running? A zombie (exited, not yet reaped) counts as gone. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/**
 * The daemon's open descriptors, without the inotify one libuv opens at the first fs.watch and
 * keeps (watches come and go inside it), so the count returns to a baseline.
 */
export function daemonFdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).filter((f) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${f}`) !== 'anon_inode:inotify';
    } catch {
      return false;
    }
  }).length;
}

/**
 * The daemon's descriptor count at rest: polls until two counts 300 ms apart agree (up to 10 s)
 * and resolves to it, the baseline a test expects the count to return to.
 */
export async function steadyFdCount(pid: number): Promise<number> {
  let base = 0;
  await waitFor(
    async () => {
      const a = daemonFdCount(pid);
      await new Promise((r) => setTimeout(r, 300));
      base = daemonFdCount(pid);
      return a === base;
    },
    { what: 'a steady descriptor count', timeoutMs: 10_000 },
  );
  return base;
}

/**
 * Live (non-zombie) processes running `sleep <mark>` whose mark `isMark` accepts, by mark: how
 * tests find the processes they started inside pods, probes and hooks by argv alone.
 */
export function sleepersByMark(isMark: (mark: string) => boolean): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let argv: string[];
    let stat: string;
    try {
      argv = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      stat = readFileSync(`/proc/${d}/stat`, 'utf8');
    } catch {
      continue;
    }
    if (basename(argv[0] ?? '') !== 'sleep' || !isMark(argv[1] ?? '')) continue;
    if (stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z') continue;
    out.set(argv[1], [...(out.get(argv[1]) ?? []), Number(d)]);
  }
  return out;
}

/** SIGKILLs every process `sleepersByMark(isMark)` finds (a test's teardown sweep) */
export function killSleepers(isMark: (mark: string) => boolean): void {
  for (const pid of [...sleepersByMark(isMark).values()].flat()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}
