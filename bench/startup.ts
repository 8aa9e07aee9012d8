/**
 * Start-up: `kubeloop up -f config/` to the first successful curl through the ClusterIP of
 * myapp-service. Cold: a fresh state dir; the ClusterIP is only known once the table is
 * printed, so the figure is "table printed, then one curl". Warm: the same state dir again
 * (ClusterIPs are kept), polling the address from the moment of spawn.
 * `node --import tsx bench/startup.ts [--quick]`
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';

const ROOT = resolve(import.meta.dirname, '..');

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

interface Run {
  ms: number;
  url: string;
}

async function runOnce(stateDir: string, knownUrl?: string): Promise<Run> {
  const t0 = performance.now();
  const proc = spawn(
    process.execPath,
    [join(ROOT, 'bin', 'kubeloop.mjs'), 'up', '-f', 'config/', '--state-dir', stateDir,
      '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--nodeport-addresses', '127.0.77.1', '--log-level', process.env.KUBELOOP_BENCH_LOG ?? 'warn',
      '--service-cidr', '127.177.0.0/16', '--pod-cidr', '127.178.0.0/16', '--lb-pool', '127.179.0.0/16'],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  const exited = new Promise((r) => proc.once('exit', r));
  try {
    let url = knownUrl;
    for (;;) {
      if (performance.now() - t0 > 30_000) throw new Error(`no curl within 30 s:\n${out}`);
      if (!url) {
        const m = /default\/myapp-service\s+ClusterIP\s+\S+\s+(\S+)/.exec(out);
        if (m) url = `http://${m[1]}/`;
      }
      if (url && (await curlOnce(url))) return { ms: performance.now() - t0, url };
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    proc.kill('SIGINT');
    await exited;
  }
}

export async function benchStartup(quick = false): Promise<Record<string, number>> {
  const rounds = quick ? 2 : 5;
  const cold: number[] = [];
  const warm: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const dir = await mkdtemp(join(tmpdir(), 'kubeloop-bench-'));
    try {
      const c = await runOnce(dir);
      cold.push(c.ms);
      warm.push((await runOnce(dir, c.url)).ms);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return {
    rounds,
    coldToFirstCurlMsMedian: Math.round(median(cold)),
    warmToFirstCurlMsMedian: Math.round(median(warm)),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(await benchStartup(process.argv.includes('--quick')), null, 2));
}
