/**
 * One pass over /proc: every process's parent, CPU time (its own and its waited-for children's,
 * in clock ticks) and resident set. A container's usage is the sum over its process tree (its
 * group leader and every descendant), which is what a cgroup would count for it, short of
 * processes that left the tree (double-forked daemons re-parented to init).
 *
 * Reads are asynchronous and bounded in parallelism: the event loop that carries the proxy
 * never waits on /proc.
 */
import { execFile } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';

export interface ProcInfo {
  ppid: number;
  /** utime + stime + cutime + cstime, clock ticks */
  ticks: number;
  /** resident pages */
  rssPages: number;
}

/** `/proc/<pid>/stat` → the fields above; undefined when it does not parse */
export function parseStat(text: string): ProcInfo | undefined {
  // the command name (field 2) is in parentheses and may hold spaces and parentheses itself
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  const f = text.slice(close + 2).trim().split(' ');
  // f[0] is field 3 (state): ppid is field 4, utime..cstime 14..17, rss 24
  const n = (i: number): number => Number(f[i - 3]);
  const info = { ppid: n(4), ticks: n(14) + n(15) + n(16) + n(17), rssPages: n(24) };
  return Number.isFinite(info.ppid) && Number.isFinite(info.ticks) && Number.isFinite(info.rssPages) ? info : undefined;
}

/** Every process's stat, read `parallel` at a time; processes that end meanwhile are left out. */
export async function scanProc(parallel = 32): Promise<Map<number, ProcInfo>> {
  const pids = (await readdir('/proc')).filter((d) => /^\d+$/.test(d)).map(Number);
  const out = new Map<number, ProcInfo>();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < pids.length) {
      const pid = pids[next++];
      try {
        const info = parseStat(await readFile(`/proc/${pid}/stat`, 'utf8'));
        if (info) out.set(pid, info);
      } catch {
        // ended between readdir and read
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, pids.length) }, worker));
  return out;
}

/** CPU ticks and resident pages of `root` and all its descendants in one scan */
export function treeUsage(procs: ReadonlyMap<number, ProcInfo>, children: ReadonlyMap<number, number[]>, root: number): { ticks: number; rssPages: number } | undefined {
  const top = procs.get(root);
  if (!top) return undefined;
  let ticks = 0;
  let rssPages = 0;
  const stack = [root];
  const seen = new Set<number>();
  while (stack.length) {
    const pid = stack.pop()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    const p = procs.get(pid);
    if (!p) continue;
    ticks += p.ticks;
    rssPages += p.rssPages;
    for (const c of children.get(pid) ?? []) stack.push(c);
  }
  return { ticks, rssPages };
}

/** parent pid → child pids */
export function childrenOf(procs: ReadonlyMap<number, ProcInfo>): Map<number, number[]> {
  const m = new Map<number, number[]>();
  for (const [pid, p] of procs) {
    const list = m.get(p.ppid);
    if (list) list.push(pid);
    else m.set(p.ppid, [pid]);
  }
  return m;
}

let units: Promise<{ clkTck: number; pageSize: number }> | undefined;

/** the kernel's clock ticks per second and page size (`getconf`), 100 and 4096 when it cannot say */
export function procUnits(): Promise<{ clkTck: number; pageSize: number }> {
  const ask = (name: string, fallback: number): Promise<number> =>
    new Promise((resolve) =>
      execFile('getconf', [name], { timeout: 5000 }, (err, out) => {
        const n = Number(String(out).trim());
        resolve(!err && n > 0 ? n : fallback);
      }),
    );
  units ??= Promise.all([ask('CLK_TCK', 100), ask('PAGESIZE', 4096)]).then(([clkTck, pageSize]) => ({ clkTck, pageSize }));
  return units;
}
