/**
 * Event-loop delay while the pod runtime polls groupAlive (as it does while a pod's processes
 * stop) on a machine with many processes: the old synchronous /proc scan (kept here as the
 * "before") against the asynchronous one in src/agent/runtime/process.ts.
 *
 * Usage: node --import tsx bench/proc-scan.ts [extraProcesses=2000] [polls=50]
 * Starts `extraProcesses` sleeping processes in one group (all killed at the end), keeps one
 * more group alive to poll, and reports per variant the wall time of one scan and the event
 * loop's delay (perf_hooks monitorEventLoopDelay, 1 ms resolution) during the polls, plus the
 * worst gap seen by a 1 ms timer (what a DNS or proxy callback would wait).
 */
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { groupAlive, killGroup } from '../src/agent/runtime/process.js';

const EXTRA = Number(process.argv[2] ?? 2000);
const POLLS = Number(process.argv[3] ?? 50);

/** the scan as it was before (synchronous), for the comparison */
function groupAliveSync(pgid: number): boolean {
  if (!killGroup(pgid, 0)) return false;
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${e}/stat`, 'utf8');
    } catch {
      continue;
    }
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(f[2]) === pgid && f[0] !== 'Z' && f[0] !== 'X') return true;
  }
  return false;
}

const procs = (): number => readdirSync('/proc').filter((e) => /^\d+$/.test(e)).length;

async function measure(name: string, poll: () => Promise<boolean> | boolean): Promise<Record<string, string | number>> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  let last = performance.now();
  let worstGap = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    worstGap = Math.max(worstGap, now - last);
    last = now;
  }, 1);
  h.enable();
  const t0 = performance.now();
  for (let i = 0; i < POLLS; i++) {
    await poll();
    await new Promise((r) => setTimeout(r, 10)); // the runtime's poll interval
  }
  const wall = performance.now() - t0;
  h.disable();
  clearInterval(tick);
  const ms = (ns: number): number => Math.round(ns / 1e5) / 10;
  return {
    variant: name,
    'scan ms (mean)': Math.round((wall / POLLS - 10) * 10) / 10,
    'loop delay p50 ms': ms(h.percentile(50)),
    'loop delay p99 ms': ms(h.percentile(99)),
    'loop delay max ms': ms(h.max),
    'worst 1 ms timer gap ms': Math.round(worstGap * 10) / 10,
  };
}

async function main(): Promise<void> {
  const before = procs();
  // the extra processes: one group, killed together at the end
  const crowd = spawn('sh', ['-c', `i=0; while [ $i -lt ${EXTRA} ]; do sleep 300 & i=$((i+1)); done; wait`], { detached: true, stdio: 'ignore' });
  const target = spawn('sleep', ['300'], { detached: true, stdio: 'ignore' });
  const cleanup = (): void => {
    killGroup(crowd.pid!, 'SIGKILL');
    killGroup(target.pid!, 'SIGKILL');
  };
  process.once('exit', cleanup);
  try {
    const deadline = Date.now() + 60_000;
    while (procs() < before + EXTRA && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const n = procs();
    console.log(`processes on the machine: ${n} (${n - before} started here), polls per variant: ${POLLS}, cores: ${(await import('node:os')).cpus().length}, load: ${(await import('node:os')).loadavg().map((x) => x.toFixed(1)).join(' ')}`);
    const rows = [];
    rows.push(await measure('sync scan (before)', () => groupAliveSync(target.pid!)));
    rows.push(await measure('async scan (now)', () => groupAlive(target.pid!)));
    console.table(rows);
  } finally {
    cleanup();
  }
}

await main();
