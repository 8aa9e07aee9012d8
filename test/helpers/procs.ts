import { readFileSync, readdirSync } from 'node:fs';

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
