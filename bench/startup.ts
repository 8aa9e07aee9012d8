/**
 * Start-up: `kubeloop up -f config/` to the first successful curl through the ClusterIP of
 * myapp-service, beside the floor — a bare `node` HTTP server's spawn to its first answered
 * request — measured in the same rounds, interleaved, so a busy machine slows both.
 *
 * - node cold / warm: `node bin/kubeloop.mjs up -f config/` (what `npm start` execs) on a fresh
 *   state dir, then again on the same one. Cold: the ClusterIP is only known once the table is
 *   printed, so the figure is "table printed, then one curl"; warm: ClusterIPs are kept, so the
 *   address is polled from the moment of spawn.
 * - npm start / npx cold: the same through `npm start -- …` and `npx kubeloop up …`.
 * - version: `node bin/kubeloop.mjs version`, spawn to exit.
 *
 * Beside each wall time, the CPU time its process tree used up to that moment (user + system of
 * every process descended from the one spawned, reaped children included, from /proc): on a
 * shared machine wall times follow the other work, CPU times much less, so they are the figure
 * to compare between builds. The 1-min load average is recorded before, after and per round.
 *
 * Runs whatever bin/kubeloop.mjs runs: dist/ when it is current (`npm run build`), else tsx.
 * `node --import tsx bench/startup.ts [--quick] [--rounds N]` writes bench/results/startup.{json,md}.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { readFile, readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';

const ROOT = resolve(import.meta.dirname, '..');
const BIN = join(ROOT, 'bin', 'kubeloop.mjs');

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function curlOnce(url: string): Promise<boolean> {
  return new Promise((res) => {
    const req = http.get(url, { agent: false, timeout: 500 }, (r) => {
      r.resume();
      r.on('end', () => res(r.statusCode === 200));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => res(false));
  });
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** CPU ms (user + system, with reaped children) used so far by `root` and every process under it; 0 off Linux. */
async function treeCpuMs(root: number): Promise<number> {
  const stats = new Map<number, string[]>();
  let names: string[];
  try {
    names = await readdir('/proc');
  } catch {
    return 0;
  }
  await Promise.all(
    names.filter((n) => /^\d+$/.test(n)).map(async (n) => {
      try {
        const s = await readFile(`/proc/${n}/stat`, 'utf8');
        stats.set(Number(n), s.slice(s.lastIndexOf(')') + 2).split(' '));
      } catch {
        // gone
      }
    }),
  );
  const under = (pid: number): boolean => {
    for (let i = 0; i < 64 && pid > 1; i++) {
      if (pid === root) return true;
      const f = stats.get(pid);
      if (!f) return false;
      pid = Number(f[1]);
    }
    return false;
  };
  let ticks = 0;
  // fields after the name: state ppid ... utime(14) stime(15) cutime(16) cstime(17), 1-based in stat
  for (const [pid, f] of stats) if (under(pid)) ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  return ticks * TICK_MS;
}

/** Spawns `cmd` in a process group of its own, polls until `url()` answers 200, ends the group. */
async function toFirstCurl(cmd: string, args: string[], url: (out: string) => string | undefined): Promise<{ ms: number; cpuMs: number; url: string }> {
  const t0 = performance.now();
  const proc = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], detached: true, env: { ...process.env, NODE_OPTIONS: '' } });
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  const exited = new Promise((r) => proc.once('exit', r));
  try {
    for (;;) {
      if (performance.now() - t0 > 30_000) throw new Error(`no curl within 30 s:\n${out}`);
      if (proc.exitCode !== null) throw new Error(`${cmd} exited ${proc.exitCode}:\n${out}`);
      const u = url(out);
      if (u && (await curlOnce(u))) {
        const ms = performance.now() - t0;
        return { ms, cpuMs: await treeCpuMs(proc.pid!), url: u };
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    // the whole group: npm, its shell and the daemon (the daemon stops its pods on SIGTERM)
    try {
      process.kill(-proc.pid!, 'SIGTERM');
    } catch {
      // gone
    }
    const hard = setTimeout(() => {
      try {
        process.kill(-proc.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }, 15_000);
    await exited;
    // the daemon may outlive npm by its own stop: it removes its pid file last
    const i = args.indexOf('--state-dir');
    const until = performance.now() + 20_000;
    if (i >= 0) while (existsSync(join(args[i + 1], 'kubeloop.pid')) && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
    clearTimeout(hard);
  }
}

const upFlags = (stateDir: string): string[] => [
  'up', '-f', 'config/', '--state-dir', stateDir,
  '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--metrics-addr', '127.0.0.1:0', '--nodeport-addresses', '127.0.77.1',
  '--log-level', process.env.KUBELOOP_BENCH_LOG ?? 'warn',
  '--service-cidr', '127.177.0.0/16', '--pod-cidr', '127.178.0.0/16', '--lb-pool', '127.179.0.0/16',
];

const fromTable = (out: string): string | undefined => {
  const m = /default\/myapp-service\s+ClusterIP\s+\S+\s+(\S+)/.exec(out);
  return m ? `http://${m[1]}/` : undefined;
};

async function floorOnce(): Promise<{ ms: number; cpuMs: number }> {
  const port = await freePort();
  const src = `require('http').createServer((q, s) => s.end('ok')).listen(${port}, '127.0.0.1')`;
  return toFirstCurl(process.execPath, ['-e', src], () => `http://127.0.0.1:${port}/`);
}

/**
 * Spawn to exit (wall); the CPU of a second run, read as the reaped-children time of a shell
 * that waited for it (node has no RUSAGE_CHILDREN).
 */
async function versionOnce(): Promise<{ ms: number; cpuMs: number }> {
  const env = { ...process.env, NODE_OPTIONS: '' };
  const t0 = performance.now();
  const p = spawn(process.execPath, [BIN, 'version'], { cwd: ROOT, stdio: 'ignore', env });
  await new Promise((r) => p.once('exit', r));
  const ms = performance.now() - t0;
  const sh = spawn('sh', ['-c', '"$0" "$1" version >/dev/null; cat /proc/$$/stat', process.execPath, BIN], { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'], env });
  let out = '';
  sh.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  await new Promise((r) => sh.once('exit', r));
  const f = out.slice(out.lastIndexOf(')') + 2).split(' ');
  return { ms, cpuMs: (Number(f[13]) + Number(f[14])) * TICK_MS };
}

async function withStateDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-bench-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Does bin/kubeloop.mjs run dist/ (no src/ file newer than the build stamp)? */
function runsDist(): boolean {
  try {
    const builtAt = Number(readFileSync(join(ROOT, 'dist', '.built'), 'utf8'));
    return readdirSync(join(ROOT, 'src'), { recursive: true }).every((e) => statSync(join(ROOT, 'src', String(e))).mtimeMs < builtAt);
  } catch {
    return false;
  }
}

/** the measured commands: wall and CPU samples of each */
const MODES = {
  floor: 'floor: bare `node` HTTP server, spawn → first answered request',
  version: '`kubeloop version` (spawn → exit)',
  cold: '`node bin/kubeloop.mjs up -f config/` (what `npm start` execs), cold → first curl via myapp-service',
  warm: 'same, warm (same state dir)',
  npmStartCold: '`npm start` (the README\'s command), cold',
  npmStartWarm: '`npm start`, warm',
  npxCold: '`npx kubeloop up -f config/`, cold',
  npxWarm: '`npx kubeloop up -f config/`, warm',
} as const;
type Mode = keyof typeof MODES;

export interface StartupResult {
  rounds: number;
  /** what bin/kubeloop.mjs ran: dist/ or the sources through tsx */
  runs: string;
  cpus: number;
  loadAvg1mBefore: number;
  loadAvg1mAfter: number;
  /** median of the 1-min load average at the start of each round */
  loadAvg1mMedian: number;
  floorNodeHttpMsMedian: number;
  versionMsMedian: number;
  coldToFirstCurlMsMedian: number;
  warmToFirstCurlMsMedian: number;
  npmStartColdMsMedian: number;
  npmStartWarmMsMedian: number;
  npxColdMsMedian: number;
  npxWarmMsMedian: number;
  versionOverFloor: number;
  coldOverFloor: number;
  /** CPU ms of each mode's process tree up to the first curl (version: to its exit), medians */
  cpuMsMedian: Record<Mode, number>;
  /** every sample, JSON: { mode: { ms: [...], cpuMs: [...] }, load: [...] } */
  samples: string;
}

export async function benchStartup(quick = false, roundsWanted?: number): Promise<StartupResult> {
  const rounds = roundsWanted ?? (quick ? 2 : 5);
  const s = Object.fromEntries(Object.keys(MODES).map((k) => [k, { ms: [] as number[], cpuMs: [] as number[] }])) as Record<Mode, { ms: number[]; cpuMs: number[] }>;
  const add = (k: Mode, r: { ms: number; cpuMs: number }): void => {
    s[k].ms.push(r.ms);
    s[k].cpuMs.push(r.cpuMs);
  };
  const load: number[] = [];
  const load0 = loadavg()[0];
  for (let i = 0; i < rounds; i++) {
    load.push(loadavg()[0]);
    add('floor', await floorOnce());
    add('version', await versionOnce());
    // each command cold on a fresh state dir, then warm on the same one (ClusterIPs kept: polled from the spawn)
    const coldWarm = async (cold: Mode, warm: Mode, cmd: string, args: (dir: string) => string[]): Promise<void> =>
      withStateDir(async (dir) => {
        const c = await toFirstCurl(cmd, args(dir), fromTable);
        add(cold, c);
        add(warm, await toFirstCurl(cmd, args(dir), () => c.url));
      });
    await coldWarm('cold', 'warm', process.execPath, (dir) => [BIN, ...upFlags(dir)]);
    await coldWarm('npmStartCold', 'npmStartWarm', 'npm', (dir) => ['start', '--', ...upFlags(dir).slice(3)]);
    await coldWarm('npxCold', 'npxWarm', 'npx', (dir) => ['kubeloop', ...upFlags(dir)]);
  }
  const m = (k: Mode): number => Math.round(median(s[k].ms));
  return {
    rounds,
    runs: runsDist() ? 'dist/ (compiled)' : 'src/ through tsx',
    cpus: cpus().length,
    loadAvg1mBefore: Number(load0.toFixed(2)),
    loadAvg1mAfter: Number(loadavg()[0].toFixed(2)),
    loadAvg1mMedian: Number(median(load).toFixed(2)),
    floorNodeHttpMsMedian: m('floor'),
    versionMsMedian: m('version'),
    coldToFirstCurlMsMedian: m('cold'),
    warmToFirstCurlMsMedian: m('warm'),
    npmStartColdMsMedian: m('npmStartCold'),
    npmStartWarmMsMedian: m('npmStartWarm'),
    npxColdMsMedian: m('npxCold'),
    npxWarmMsMedian: m('npxWarm'),
    versionOverFloor: Number((m('version') / m('floor')).toFixed(2)),
    coldOverFloor: Number((m('cold') / m('floor')).toFixed(2)),
    cpuMsMedian: Object.fromEntries(Object.keys(MODES).map((k) => [k, Math.round(median(s[k as Mode].cpuMs))])) as Record<Mode, number>,
    samples: JSON.stringify({ ...Object.fromEntries(Object.entries(s).map(([k, v]) => [k, { ms: v.ms.map(Math.round), cpuMs: v.cpuMs }])), load: load.map((l) => Number(l.toFixed(2))) }),
  };
}

function markdown(r: StartupResult): string {
  const ms: Record<Mode, number> = {
    floor: r.floorNodeHttpMsMedian,
    version: r.versionMsMedian,
    cold: r.coldToFirstCurlMsMedian,
    warm: r.warmToFirstCurlMsMedian,
    npmStartCold: r.npmStartColdMsMedian,
    npmStartWarm: r.npmStartWarmMsMedian,
    npxCold: r.npxColdMsMedian,
    npxWarm: r.npxWarmMsMedian,
  };
  const x = (a: number, b: number): string => (b > 0 ? (a / b).toFixed(2) : '—');
  return [
    `# start-up (bench/startup.ts, ${new Date().toISOString()})`,
    '',
    `Runs ${r.runs}; ${r.cpus} CPUs, 1-min load average ${r.loadAvg1mBefore} before, ${r.loadAvg1mAfter} after, median ${r.loadAvg1mMedian} at the rounds' starts (other work on the machine); medians of ${r.rounds}, interleaved.`,
    'CPU: user + system of the process tree spawned (pods included) up to the first curl; the figure to compare between builds on a shared machine.',
    '',
    '| what | median wall ms | × floor | median CPU ms | × floor CPU |',
    '|---|---:|---:|---:|---:|',
    ...(Object.keys(MODES) as Mode[]).map((k) => `| ${MODES[k]} | ${ms[k]} | ${k === 'floor' ? 1 : x(ms[k], ms.floor)} | ${r.cpuMsMedian[k]} | ${k === 'floor' ? 1 : x(r.cpuMsMedian[k], r.cpuMsMedian.floor)} |`),
    '',
    `samples: \`${r.samples}\``,
    '',
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--rounds');
  const r = await benchStartup(process.argv.includes('--quick'), i > 0 ? Number(process.argv[i + 1]) : undefined);
  console.log(JSON.stringify(r, null, 2));
  if (!process.argv.includes('--no-write')) {
    await writeFile(join(ROOT, 'bench', 'results', 'startup.json'), JSON.stringify(r, null, 2) + '\n');
    await writeFile(join(ROOT, 'bench', 'results', 'startup.md'), markdown(r));
  }
}
