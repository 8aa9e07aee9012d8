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

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
