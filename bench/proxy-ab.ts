/**
 * A/B of the proxy's TCP data path, for tuning one change at a time: two or more copies of
 * src/agent/proxy/ (each a directory with tcp.ts, round-robin.ts, …) serve the same 3 backends
 * as bare `TcpListener`s in their own processes (no daemon), interleaved with HAProxy as the
 * reference. Prints medians and per-round ratios.
 *
 *   node --import tsx bench/proxy-ab.ts --variant old=/tmp/proxy-copy --variant new=src/agent/proxy
 *        [--rounds 3] [--seconds 4] [--only http,conn,bulk,rate] [--cpu-prof DIR]
 *
 * `--variant name=dir:N` runs that variant with N processes (its workers.ts, as `--proxy-processes N`);
 * `--variant name=dir:N:net` (or `:uv`) on that data path (util/uv.ts; as `--data-path`).
 * `--out FILE` also writes the figures as FILE.json and a table as FILE.md (`--render FILE` remakes
 * FILE.md from FILE.json).
 *
 * The data-path comparison in the README (bench/results/data-path.md):
 *
 *   node --import tsx bench/proxy-ab.ts --variant uv=src/agent/proxy:1:uv --variant net=src/agent/proxy:1:net \
 *        --only http,conn,bulk --rounds 5 --out bench/results/data-path
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, cpuSeconds, cpuTimes, startHaproxy, waitListening } from './contenders.js';
import { fmt, median, pairedRatio } from './stats.js';
import { children, load, wrk } from './tools.js';

interface Target {
  name: string;
  host: string;
  pids: number[];
  stop(): Promise<void>;
}

const BACKENDS = ['127.0.195.1', '127.0.195.2', '127.0.195.3'];

async function serve(argv: string[]): Promise<void> {
  const arg = (k: string) => argv[argv.indexOf(`--${k}`) + 1]!;
  const dir = resolve(arg('impl'));
  const processes = Number(arg('processes'));
  const host = arg('host');
  const backends = arg('backends').split(',');
  const { default: pino } = await import('pino');
  const path = arg('data-path');
  // a variant from before the net path has tcp.ts only (and loads its bindings itself)
  let { TcpListener } = (await import(pathToFileURL(`${dir}/tcp.ts`).href)) as typeof import('../src/agent/proxy/tcp.js');
  const uvts = (await import(pathToFileURL(`${dir}/../../util/uv.ts`).href)) as Partial<typeof import('../src/util/uv.js')>;
  const chosen = uvts.chooseDataPath?.(path === 'uv' || path === 'net' ? path : 'auto').path;
  if (chosen) {
    if (chosen === 'net') TcpListener = ((await import(pathToFileURL(`${dir}/tcp-net.ts`).href)) as typeof import('../src/agent/proxy/tcp-net.js')).NetTcpListener as unknown as typeof TcpListener;
  }
  const { RoundRobin } = (await import(pathToFileURL(`${dir}/round-robin.ts`).href)) as typeof import('../src/agent/proxy/round-robin.js');
  const log = pino({ level: 'silent' });
  const listeners: Array<{ destroy(): Promise<void> }> = [];
  const { ProxyWorkers } = (await import(pathToFileURL(`${dir}/workers.ts`).href)) as typeof import('../src/agent/proxy/workers.js');
  const workers = processes > 1 ? new ProxyWorkers({ count: processes - 1, log, dialTimeoutsMs: [250, 500, 1000, 2000], dataPath: chosen ?? 'uv' }) : undefined;
  workers?.start();
  for (const [name, port] of [['http', 8080], ['raw', 9000]] as const) {
    const balancer = new RoundRobin();
    balancer.setEndpoints(backends.map((h) => ({ host: h, port, id: `${h}:${port}` })));
    const spec = { id: name, svc: 'ab/proxy', portName: name, servicePort: `ab/proxy:${name}`, protocol: 'TCP' as const, address: host, port, kind: 'clusterIP' as const };
    const l = new TcpListener({ spec, balancer, dialTimeoutsMs: [250, 500, 1000, 2000], log });
    await l.open();
    listeners.push(l);
    workers?.share(spec, l.handle!, balancer.endpoints);
  }
  // the workers take the portals once up; a variant from before `accepting` existed gets 1.5 s
  if (workers) {
    const w = workers as { accepting?: (id: string) => number };
    const end = Date.now() + 20_000;
    if (!w.accepting) await new Promise((r) => setTimeout(r, 1500));
    else while (['http', 'raw'].some((id) => w.accepting!(id) < processes - 1)) {
      if (Date.now() > end) throw new Error('the proxy workers did not take the portals in 20 s');
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  process.stdout.write(`ready ${workers?.pids().join(',') ?? ''}\n`);
  const stop = () => {
    setTimeout(() => {
      console.error('serve: connections did not end within 3 s of SIGTERM');
      process.exit(1);
    }, 3000).unref();
    void (workers?.stop() ?? Promise.resolve()).then(() => Promise.all(listeners.map((l) => l.destroy()))).then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

async function startVariant(name: string, spec: string, host: string, profDir?: string): Promise<Target> {
  const [dir, processes = '1', path = ''] = spec.split(':');
  const p = spawn(
    process.execPath,
    [
      ...(profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}/${name}`] : []),
      '--import', 'tsx', resolve(ROOT, 'bench', 'proxy-ab.ts'),
      'serve', '--impl', dir!, '--processes', processes, '--host', host, '--backends', BACKENDS.join(','), '--data-path', path || 'default',
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.add(p);
  const line = await new Promise<string>((r, j) => {
    p.stdout!.setEncoding('utf8').once('data', (d: string) => r(d));
    p.once('exit', (c) => j(new Error(`variant ${name} exited ${c}`)));
  });
  const workerPids = (/ready (\S*)/.exec(line)?.[1] ?? '').split(',').filter(Boolean).map(Number);
  return {
    name,
    host,
    pids: [p.pid!, ...workerPids],
    stop: async () => {
      p.kill('SIGTERM');
      await new Promise((r) => (p.exitCode !== null ? r(undefined) : p.once('exit', r)));
    },
  };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === 'serve') return serve(argv);
  if (argv[0] === '--render') return render(resolve(argv[1]!), JSON.parse(readFileSync(`${resolve(argv[1]!)}.json`, 'utf8')));
  const variants: Array<[string, string]> = [];
  let rounds = 3;
  let seconds = 4;
  let only = ['http', 'conn', 'bulk', 'rate'];
  let profDir: string | undefined;
  let out: string | undefined;
  for (let i = 0; i < argv.length; i += 2) {
    const v = argv[i + 1]!;
    if (argv[i] === '--variant') variants.push(v.split('=', 2) as [string, string]);
    else if (argv[i] === '--rounds') rounds = Number(v);
    else if (argv[i] === '--seconds') seconds = Number(v);
    else if (argv[i] === '--only') only = v.split(',');
    else if (argv[i] === '--cpu-prof') profDir = resolve(v);
    else if (argv[i] === '--out') out = resolve(v);
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!variants.length) variants.push(['current', 'src/agent/proxy']);
  const stops: Array<() => Promise<void>> = [];
  try {
    for (const ip of BACKENDS) {
      const p = spawn(process.execPath, [resolve(ROOT, 'bench', 'backend.mjs'), '--host', ip], { stdio: 'ignore' });
      children.add(p);
      stops.push(async () => void p.kill('SIGTERM'));
      await waitListening({ host: ip, port: 9000 });
    }
    const targets: Target[] = [];
    const h = await startHaproxy({ ips: BACKENDS, httpPort: 8080, tcpPort: 9000 }, 4000);
    stops.push(h.stop);
    targets.push({ name: 'haproxy', host: h.http.host, pids: h.pids(), stop: h.stop });
    for (const [i, [name, dir]] of variants.entries()) {
      const t = await startVariant(name, dir, `127.0.196.${i + 1}`, profDir);
      stops.push(t.stop);
      targets.push(t);
    }
    for (const t of targets) await wrk({ host: t.host, port: 8080 }, 2, false); // warm-up
    const res: Record<string, Record<string, number[]>> = {};
    const cpu: Record<string, Record<string, number[]>> = {};
    const sys: Record<string, Record<string, number[]>> = {};
    const add = (fig: string, t: Target, v: number, cores: number) => {
      ((res[fig] ??= {})[t.name] ??= []).push(v);
      ((cpu[fig] ??= {})[t.name] ??= []).push(cores);
    };
    for (let r = 0; r < rounds; r++) {
      for (const fig of only) {
        for (const t of targets) {
          const c0 = cpuSeconds(t.pids);
          const s0 = cpuTimes(t.pids);
          const t0 = Date.now();
          let v: number;
          if (fig === 'http') v = (await wrk({ host: t.host, port: 8080 }, seconds, false)).rps;
          else if (fig === 'conn') v = (await wrk({ host: t.host, port: 8080 }, seconds, true)).rps;
          else if (fig === 'rate') v = (await load('rate', { host: t.host, port: 8080, rps: 3000, conns: 32, seconds, warmup: 1 }, 60_000)).p99Ms!;
          else if (fig.startsWith('bulk')) v = (await load('bulk', { host: t.host, port: 9000, streams: fig === 'bulk8' ? 8 : 1, seconds, warmup: 0.5 }, 60_000)).gbitPerSec!;
          else throw new Error(`unknown figure ${fig}`);
          const cores = (cpuSeconds(t.pids) - c0) / ((Date.now() - t0) / 1000);
          const s1 = cpuTimes(t.pids);
          ((sys[fig === 'bulk' ? 'bulk1' : fig] ??= {})[t.name] ??= []).push((s1.system - s0.system) / (s1.user - s0.user + s1.system - s0.system));
          // CPU per unit of work: µs per request/connection, ms per GB; steadier than throughput on a shared machine
          const per = fig === 'rate' ? cores : fig.startsWith('bulk') ? (cores / (v / 8)) * 1000 : (cores / v) * 1e6;
          add(fig === 'bulk' ? 'bulk1' : fig, t, v, per);
        }
      }
      console.error(`round ${r + 1}/${rounds}`);
    }
    if (out) report(out, { rounds, seconds, variants, res, cpu });
    for (const [fig, byT] of Object.entries(res)) {
      const unit = fig === 'rate' ? 'cores' : fig.startsWith('bulk') ? 'cpu-ms/GB' : 'cpu-µs/op';
      const parts = Object.entries(byT).map(([n, xs]) => `${n} ${fmt(median(xs))} (${fmt(median(cpu[fig]![n]!))} ${unit}, ${fmt(100 * median(sys[fig]![n]!), 2)}% sys)`);
      const ratios = Object.keys(byT)
        .filter((n) => n !== 'haproxy')
        .map((n) => `${n}/haproxy ${fmt(pairedRatio(byT[n]!, byT.haproxy!))}`);
      const vs = variants.length > 1 ? `, ${variants[1]![0]}/${variants[0]![0]} ${fmt(pairedRatio(byT[variants[1]![0]]!, byT[variants[0]![0]]!))}` : '';
      const cvs = variants.length > 1 ? `; cpu ${variants[1]![0]}/${variants[0]![0]} ${fmt(pairedRatio(cpu[fig]![variants[1]![0]]!, cpu[fig]![variants[0]![0]]!))}` : '';
      console.log(`${fig.padEnd(6)} ${parts.join(' · ')} — ${ratios.join(', ')}${vs}${cvs}`);
    }
  } finally {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    for (const c of children) c.kill('SIGKILL');
  }
}

const FIGURES: Record<string, { what: string; unit: string }> = {
  http: { what: 'keep-alive HTTP (wrk, 2 threads × 50 connections)', unit: 'req/s' },
  conn: { what: 'new connection per request (wrk, `Connection: close`)', unit: 'conn/s' },
  bulk1: { what: 'bulk, one stream', unit: 'Gbit/s' },
  bulk8: { what: 'bulk, 8 streams', unit: 'Gbit/s' },
  rate: { what: 'p99 at 3,000 req/s', unit: 'ms' },
};

/** FILE.json (every sample) and FILE.md (medians, and each variant over the first and over HAProxy) */
function report(
  file: string,
  r: { rounds: number; seconds: number; variants: Array<[string, string]>; res: Record<string, Record<string, number[]>>; cpu: Record<string, Record<string, number[]>> },
): void {
  const at = new Date().toISOString();
  const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`;
  writeFileSync(`${file}.json`, `${JSON.stringify({ at, machine, loadavg: os.loadavg(), ...r }, null, 1)}\n`);
  render(file, { at, machine, loadavg: os.loadavg(), ...r });
}

/** FILE.md from the figures (also `proxy-ab.ts --render FILE`, from FILE.json) */
function render(
  file: string,
  r: { at: string; machine: string; loadavg: number[]; rounds: number; seconds: number; variants: Array<[string, string]>; res: Record<string, Record<string, number[]>>; cpu: Record<string, Record<string, number[]>> },
): void {
  const { at, machine } = r;
  const [base, ...others] = r.variants.map(([n]) => n);
  const lines = [
    `# Proxy data paths (${at.slice(0, 10)})`,
    '',
    `${machine}; ${r.rounds} interleaved rounds of ${r.seconds} s (HAProxy, then each variant); medians, ratios are medians of per-round ratios.`,
    `Load average around the run ${r.loadavg.map((x) => x.toFixed(1)).join(' / ')} (1/5/15 min) on ${os.cpus().length} cores: on a shared machine read the CPU per unit of work (steadier than throughput).`,
    `Variants: ${r.variants.map(([n, d]) => `\`${n}\` = ${d}`).join(', ')}. \`bench/proxy-ab.ts\` (see its header for the command).`,
    '',
    `| figure | ${[...r.variants.map(([n]) => n), 'haproxy'].join(' | ')} | ${others.map((n) => `${n} / ${base}`).join(' | ')} | ${[base, ...others].map((n) => `${n} / haproxy`).join(' | ')} |`,
    `|---|${'---|'.repeat(r.variants.length + 1 + others.length + r.variants.length)}`,
  ];
  for (const [fig, byT] of Object.entries(r.res)) {
    const f = FIGURES[fig] ?? { what: fig, unit: '' };
    const cell = (n: string) => (byT[n] ? `${fmt(median(byT[n]!))} ${f.unit}` : '–');
    const ratio = (a: string, b: string) => (byT[a] && byT[b] ? fmt(pairedRatio(byT[a]!, byT[b]!)) : '–');
    lines.push(
      `| ${f.what} | ${[...r.variants.map(([n]) => cell(n)), cell('haproxy')].join(' | ')} | ${others.map((n) => ratio(n, base!)).join(' | ')} | ${[base!, ...others].map((n) => ratio(n, 'haproxy')).join(' | ')} |`,
    );
  }
  lines.push('', 'CPU per unit of work (µs per request or connection, ms per GB), medians, and CPU ratios (medians of per-round ratios):', '');
  for (const [fig, byT] of Object.entries(r.cpu)) {
    const ratios = others.map((n) => `${n} / ${base}: ${fmt(pairedRatio(byT[n]!, byT[base!]!))}`).concat([base!, ...others].map((n) => `${n} / haproxy: ${fmt(pairedRatio(byT[n]!, byT.haproxy!))}`));
    lines.push(`- ${FIGURES[fig]?.what ?? fig}: ${Object.entries(byT).map(([n, xs]) => `${n} ${fmt(median(xs))}`).join(' · ')} — ${ratios.join(', ')}`);
  }
  writeFileSync(`${file}.md`, `${lines.join('\n')}\n`);
}

await main();
