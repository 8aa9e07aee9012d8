/** Child processes of the benchmark (load clients, wrk), each bounded in time. */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './contenders.js';

/** every child still running: killed by the orchestrator's cleanup */
export const children = new Set<ChildProcess>();

export function run(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 8 << 20 }, (err, stdout, stderr) => {
      children.delete(p);
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
    children.add(p);
  });
}

const LOAD = [join(ROOT, 'bench', 'load.ts')];
const TSX = ['--import', 'tsx'];

export async function load(mode: 'rate' | 'bulk', opts: Record<string, string | number>, timeoutMs: number): Promise<Record<string, number>> {
  const args = [...TSX, ...LOAD, mode, ...Object.entries(opts).flatMap(([k, v]) => [`--${k}`, String(v)])];
  const out = await run(process.execPath, args, timeoutMs);
  return JSON.parse(out.trim().split('\n').pop()!) as Record<string, number>;
}

/** An idle-connection holder: resolves once its connections are open, with a `close()` */
export async function holdIdle(host: string, port: number, count: number): Promise<{ report: Record<string, number>; close(): Promise<void> }> {
  const p = spawn(process.execPath, [...TSX, ...LOAD, 'idle', '--host', host, '--port', String(port), '--count', String(count)], {
    cwd: ROOT,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.add(p);
  const exited = new Promise<void>((r) => p.once('exit', () => (children.delete(p), r())));
  const report = await new Promise<Record<string, number>>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('idle client: no report within 120 s')), 120_000);
    p.once('message', (m) => {
      clearTimeout(t);
      resolve(m as Record<string, number>);
    });
    p.once('exit', (code) => reject(new Error(`idle client exited ${code}`)));
  });
  return {
    report,
    async close() {
      if (p.connected) p.send('close');
      const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}

export interface WrkResult {
  rps: number;
  requests: number;
  p50Ms: number;
  p99Ms: number;
  socketErrors: number;
  non2xx: number;
}

function toMs(v: string, unit: string): number {
  const n = Number(v);
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n;
}

export async function wrk(a: { host: string; port: number }, seconds: number, close: boolean): Promise<WrkResult> {
  const args = ['-c', '50', '-t', '2', '-d', `${seconds}s`, '--timeout', '5s', '--latency', ...(close ? ['-H', 'Connection: close'] : []), `http://${a.host}:${a.port}/`];
  const out = await run('wrk', args, (seconds + 20) * 1000);
  const lat = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)`, 'm').exec(out);
    return m ? toMs(m[1]!, m[2]!) : NaN;
  };
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN),
    requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN),
    p50Ms: lat('50'),
    p99Ms: lat('99'),
    socketErrors: se ? Number(se[1]) + Number(se[2]) + Number(se[3]) + Number(se[4]) : 0,
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
  };
}

