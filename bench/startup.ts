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
 * Runs whatever bin/kubeloop.mjs runs: dist/ when it is current (`npm run build`), else tsx.
 * `node --import tsx bench/startup.ts [--quick] [--rounds N]` writes bench/results/startup.{json,md}.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
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

/** Spawns `cmd` in a process group of its own, polls until `url()` answers 200, ends the group. */
async function toFirstCurl(cmd: string, args: string[], url: (out: string) => string | undefined): Promise<{ ms: number; url: string }> {
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
      if (u && (await curlOnce(u))) return { ms: performance.now() - t0, url: u };
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

async function floorOnce(): Promise<number> {
  const port = await freePort();
  const src = `require('http').createServer((q, s) => s.end('ok')).listen(${port}, '127.0.0.1')`;
  return (await toFirstCurl(process.execPath, ['-e', src], () => `http://127.0.0.1:${port}/`)).ms;
}

async function versionOnce(): Promise<number> {
  const t0 = performance.now();
  const p = spawn(process.execPath, [BIN, 'version'], { cwd: ROOT, stdio: 'ignore', env: { ...process.env, NODE_OPTIONS: '' } });
  await new Promise((r) => p.once('exit', r));
  return performance.now() - t0;
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

export interface StartupResult {
  rounds: number;
  /** what bin/kubeloop.mjs ran: dist/ or the sources through tsx */
  runs: string;
  cpus: number;
  loadAvg1mBefore: number;
  loadAvg1mAfter: number;
  floorNodeHttpMsMedian: number;
  versionMsMedian: number;
  coldToFirstCurlMsMedian: number;
  warmToFirstCurlMsMedian: number;
  npmStartColdMsMedian: number;
  npxColdMsMedian: number;
  versionOverFloor: number;
  coldOverFloor: number;
  /** every sample, JSON */
  samples: string;
}

export async function benchStartup(quick = false, roundsWanted?: number): Promise<StartupResult> {
  const rounds = roundsWanted ?? (quick ? 2 : 5);
  const s: Record<string, number[]> = { floor: [], version: [], cold: [], warm: [], npmStartCold: [], npxCold: [] };
  const load0 = loadavg()[0];
  for (let i = 0; i < rounds; i++) {
    s.floor.push(await floorOnce());
    s.version.push(await versionOnce());
    await withStateDir(async (dir) => {
      const c = await toFirstCurl(process.execPath, [BIN, ...upFlags(dir)], fromTable);
      s.cold.push(c.ms);
      s.warm.push((await toFirstCurl(process.execPath, [BIN, ...upFlags(dir)], () => c.url)).ms);
    });
    await withStateDir(async (dir) => s.npmStartCold.push((await toFirstCurl('npm', ['start', '--', ...upFlags(dir).slice(3)], fromTable)).ms));
    await withStateDir(async (dir) => s.npxCold.push((await toFirstCurl('npx', ['kubeloop', ...upFlags(dir)], fromTable)).ms));
  }
  const m = (k: string): number => Math.round(median(s[k]));
  return {
    rounds,
    runs: runsDist() ? 'dist/ (compiled)' : 'src/ through tsx',
    cpus: cpus().length,
    loadAvg1mBefore: Number(load0.toFixed(2)),
    loadAvg1mAfter: Number(loadavg()[0].toFixed(2)),
    floorNodeHttpMsMedian: m('floor'),
    versionMsMedian: m('version'),
    coldToFirstCurlMsMedian: m('cold'),
    warmToFirstCurlMsMedian: m('warm'),
    npmStartColdMsMedian: m('npmStartCold'),
    npxColdMsMedian: m('npxCold'),
    versionOverFloor: Number((m('version') / m('floor')).toFixed(2)),
    coldOverFloor: Number((m('cold') / m('floor')).toFixed(2)),
    samples: JSON.stringify(Object.fromEntries(Object.entries(s).map(([k, v]) => [k, v.map(Math.round)]))),
  };
}

function markdown(r: StartupResult): string {
  return [
    `# start-up (bench/startup.ts, ${new Date().toISOString()})`,
    '',
    `Runs ${r.runs}; ${r.cpus} CPUs, 1-min load average ${r.loadAvg1mBefore} before and ${r.loadAvg1mAfter} after (other work on the machine); medians of ${r.rounds}, interleaved.`,
    '',
    '| what | median ms | × floor |',
    '|---|---:|---:|',
    `| floor: bare \`node\` HTTP server, spawn → first answered request | ${r.floorNodeHttpMsMedian} | 1 |`,
    `| \`kubeloop version\` (spawn → exit) | ${r.versionMsMedian} | ${r.versionOverFloor} |`,
    `| \`node bin/kubeloop.mjs up -f config/\` (what \`npm start\` execs), cold → first curl via myapp-service | ${r.coldToFirstCurlMsMedian} | ${r.coldOverFloor} |`,
    `| same, warm (same state dir) | ${r.warmToFirstCurlMsMedian} | ${(Number(r.warmToFirstCurlMsMedian) / Number(r.floorNodeHttpMsMedian)).toFixed(2)} |`,
    `| \`npm start\`, cold | ${r.npmStartColdMsMedian} | ${(Number(r.npmStartColdMsMedian) / Number(r.floorNodeHttpMsMedian)).toFixed(2)} |`,
    `| \`npx kubeloop up -f config/\`, cold | ${r.npxColdMsMedian} | ${(Number(r.npxColdMsMedian) / Number(r.floorNodeHttpMsMedian)).toFixed(2)} |`,
    '',
    `samples (ms): \`${r.samples}\``,
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
