/**
 * The node tunnel alone (src/agent/tunnel), without daemons, store or proxy: two network
 * namespaces as hosts (198.18.0.1, 198.18.0.2). Host 2 runs a TunnelServer and the "pod" (an
 * HTTP server and a bulk source on 127.50.0.1, plus the same two on 198.18.0.2 for the direct
 * figures); host 1 runs RemoteListeners + TunnelClient answering on 127.50.0.1, as a daemon does
 * for a remote pod. From host 1, with wrk (1 thread, 32 connections) and one bulk stream:
 *  - req/s keep-alive and new connections/s (`Connection: close`) through the tunnel vs straight
 *    over the veth to the same kind of server; bulk MiB/s likewise. Ratios per round, medians.
 * Also the CPU time (user + system) the tunnel processes spend per 1000 requests, per 1000 new
 * connections and per GiB: what the tunnel costs, whatever else loads the machine.
 * `--baseline REV` runs a second tunnel pair on that git revision's src/agent/tunnel, interleaved
 * (A/B in one run, ratios per round); `--cpu-prof DIR` profiles the tunnel processes;
 * `--only keepalive,close,bulk,latency` measures a subset.
 *
 *   node --import tsx bench/tunnel.ts [--rounds 3] [--seconds 5] [--mb 256] [--baseline REV] [--cpu-prof DIR] [--only …]
 *
 * Addresses: 198.18.0.0/24 and loopback inside the namespaces it creates; loops bounded.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { ROOT } from '../test/helpers/daemon.js';
import { type NetnsHost, type NetnsHosts, startNetnsHosts } from '../test/helpers/netns-hosts.js';
import { waitFor } from '../test/helpers/wait.js';
import { fmt, median, pairedRatio } from './stats.js';
import { TRANSFER_DEFAULTS, takeTransferFlag } from './transfer-args.js';

const TUNNEL_PORT = 10251;
const SELF = fileURLToPath(import.meta.url);
/** the sources the tunnel processes load: this checkout's, or a baseline revision's (--baseline) */
const SRC = process.env.KUBELOOP_BENCH_TUNNEL_SRC ?? join(ROOT, 'src');
const BULK = join(ROOT, 'bench', 'bulk-source.mjs');
const BACKEND = join(ROOT, 'bench', 'backend.mjs');

/** a CA and two node certificates signed by it (host 2's names its address), as the cluster's pki makes them */
function certificates(dir: string, serverIP: string): void {
  const o = (args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  o(['req', '-x509', ...ec, '-days', '1', '-subj', '/CN=bench-ca', '-keyout', 'ca.key', '-out', 'ca.crt']);
  for (const [name, node, san] of [['server', 'h2', `IP:${serverIP}`], ['client', 'h1', 'IP:198.18.0.1']]) {
    o(['req', ...ec, '-subj', `/O=system:nodes/CN=system:node:${node}`, '-keyout', `${name}.key`, '-out', `${name}.csr`]);
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\n`);
    o(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', `${name}.ext`, '-out', `${name}.crt`]);
  }
}

/** the child roles: `server DIR SERVER_IP POD PORT` in host 2, `client DIR SERVER_IP POD PORT` in host 1 */
async function role(which: string, dir: string, serverIP: string, pod: string, tunnelPort: number): Promise<void> {
  const log = pino({ level: process.env.KUBELOOP_BENCH_LOG ?? 'silent' }, pino.destination(2));
  const ca = readFileSync(join(dir, 'ca.crt'), 'utf8');
  const server = { cert: readFileSync(join(dir, 'server.crt'), 'utf8'), key: readFileSync(join(dir, 'server.key'), 'utf8'), ca };
  const client = { cert: readFileSync(join(dir, 'client.crt'), 'utf8'), key: readFileSync(join(dir, 'client.key'), 'utf8'), ca };
  const stops: Array<() => unknown> = [];
  if (which === 'server') {
    const { TunnelServer } = (await import(`${SRC}/agent/tunnel/server.js`)) as typeof import('../src/agent/tunnel/server.js');
    const s = new TunnelServer({
      log,
      address: serverIP,
      port: tunnelPort,
      tls: server,
      udpIdleTimeoutMs: 30_000,
      isPeer: (subject) => subject.CN === 'system:node:h1',
      allow: (ip, port, protocol) => ip === pod && protocol === 'TCP' && (port === 8080 || port === 9000),
    });
    await s.start();
    stops.push(() => s.stop());
  } else {
    const { TunnelClient } = (await import(`${SRC}/agent/tunnel/client.js`)) as typeof import('../src/agent/tunnel/client.js');
    const { RemoteListeners } = (await import(`${SRC}/agent/tunnel/listeners.js`)) as typeof import('../src/agent/tunnel/listeners.js');
    const c = new TunnelClient({ tls: client, log });
    const peer = { node: 'h2', address: serverIP, port: tunnelPort };
    const l = new RemoteListeners({ log, client: c, peer: () => peer, udpIdleTimeoutMs: 30_000 });
    await l.sync([8080, 9000].map((port) => ({ key: `TCP ${pod}:${port}`, protocol: 'TCP' as const, ip: pod, port, node: 'h2', nodeIP: serverIP })));
    stops.push(() => l.stop(), () => c.close());
  }
  process.stdout.write('ready\n');
  const quit = async (): Promise<void> => {
    for (const f of stops) await f();
    process.exit(0);
  };
  process.once('SIGTERM', () => void quit());
  process.once('SIGINT', () => void quit());
}

interface Args {
  rounds: number;
  seconds: number;
  mb: number;
  prof?: string;
  /** measure only these figures (keepalive, close, bulk, latency); default all */
  only?: Set<string>;
  /** a second tunnel pair running src/agent/tunnel of this git revision (A/B in one run) */
  baseline?: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { ...TRANSFER_DEFAULTS };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    if (takeTransferFlag(a, argv[i], v)) {
      i++;
      continue;
    }
    switch (argv[i]) {
      case '--cpu-prof': a.prof = v; i++; break;
      case '--only': a.only = new Set(v.split(',')); i++; break;
      case '--baseline': a.baseline = v; i++; break;
      default: throw new Error(`unknown argument ${argv[i]} (expected --rounds, --seconds, --mb, --cpu-prof, --only, --baseline)`);
    }
  }
  return a;
}

async function wrkIn(h: NetnsHost, url: string, seconds: number, close: boolean): Promise<number> {
  const r = await h.run(['wrk', '-t', '1', '-c', '32', '-d', `${seconds}s`, '--timeout', '5s', ...(close ? ['-H', 'Connection: close'] : []), url], { timeoutMs: (seconds + 20) * 1000 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? NaN);
  if (!Number.isFinite(rps)) throw new Error(`wrk ${url}: ${r.stderr || r.stdout}`);
  const errs = /Socket errors: (.*)/.exec(r.stdout)?.[1];
  if (errs) process.stderr.write(`  ${url}${close ? ' (close)' : ''}: socket errors ${errs}\n`);
  return rps;
}

/** user + system CPU ms of a process so far (/proc/PID/stat fields 14 and 15, in clock ticks of 10 ms) */
function cpuOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return 0;
  }
}

/** median ms of `n` sequential curl requests on new connections (connect, first byte, total) */
async function latencyIn(h: NetnsHost, url: string, n: number): Promise<{ connect: number; first: number; total: number }> {
  const xs: Array<[number, number, number]> = [];
  for (let i = 0; i < n; i++) {
    const r = await h.run(['curl', '-s', '-o', '/dev/null', '--max-time', '3', '-w', '%{time_connect} %{time_starttransfer} %{time_total}', url]);
    const v = r.stdout.trim().split(' ').map((x) => Number(x) * 1000);
    if (v.length === 3 && v.every(Number.isFinite)) xs.push(v as [number, number, number]);
  }
  return { connect: median(xs.map((x) => x[0])), first: median(xs.map((x) => x[1])), total: median(xs.map((x) => x[2])) };
}

async function fetchIn(h: NetnsHost, host: string, port: number, mb: number): Promise<number> {
  const r = await h.run([process.execPath, BULK, 'fetch', host, String(port), String(mb)], { timeoutMs: 70_000 });
  const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { mbps?: number; mb?: number; error?: string };
  if (!out.mbps || (out.mb ?? 0) < mb) throw new Error(`bulk ${host}:${port}: ${out.error ?? r.stderr} (${out.mb} MiB)`);
  return out.mbps;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const cleanups: Array<() => unknown> = [];
  const shim = { teardown: (fn: () => unknown) => void cleanups.push(fn) };
  const dir = mkdtempSync(join(tmpdir(), 'kubeloop-tunnel-bench-'));
  let lan: NetnsHosts | undefined;
  try {
    lan = await startNetnsHosts(shim, { hosts: 2 });
    const [h1, h2] = lan.hosts;
    certificates(dir, h2.ip);
    // contenders: straight over the veth, the tunnel, and (--baseline) the tunnel of another revision
    type Where = 'direct' | 'tunnel' | 'baseline';
    const tunnels: Array<{ where: Where; pod: string; port: number; env: Record<string, string> }> = [{ where: 'tunnel', pod: '127.50.0.1', port: TUNNEL_PORT, env: {} }];
    if (args.baseline) {
      // that revision's src/ beside this one (the tunnel modules import only types from outside it)
      const base = join(dir, 'baseline');
      execFileSync('sh', ['-c', `mkdir -p ${base} && git -C ${ROOT} archive ${JSON.stringify(args.baseline)} src | tar -x -C ${base}`]);
      tunnels.push({ where: 'baseline', pod: '127.50.0.2', port: TUNNEL_PORT + 1, env: { KUBELOOP_BENCH_TUNNEL_SRC: join(base, 'src') } });
    }
    const node = (r: string, t: (typeof tunnels)[number]): string[] => [
      process.execPath, '--import', 'tsx', ...(args.prof ? ['--cpu-prof', '--cpu-prof-dir', join(args.prof, `${t.where}-${r}`)] : []), SELF, r, dir, h2.ip, t.pod, String(t.port),
    ];
    const targets: Record<string, { http: string; bulk: [string, number] }> = { direct: { http: `http://${h2.ip}:8081/`, bulk: [h2.ip, 9001] } };
    h2.spawn([process.execPath, BACKEND, '--host', h2.ip, '--http', '8081', '--tcp', '9101']);
    h2.spawn([process.execPath, BULK, 'serve', h2.ip, '9001']);
    /** the tunnel processes of each contender (`ip netns exec` execs, so the pid is node's) */
    const pids: Record<string, number[]> = {};
    const started = (h: NetnsHost, r: string, t: (typeof tunnels)[number]): Promise<void> =>
      new Promise((resolve, reject) => {
        const p = h.spawn(node(r, t), { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...t.env } });
        (pids[t.where] ??= []).push(p.pid!);
        p.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
        p.once('exit', (code) => reject(new Error(`${r} exited ${code}`)));
      });
    for (const t of tunnels) {
      h2.spawn([process.execPath, BACKEND, '--host', t.pod, '--http', '8080', '--tcp', '9100']);
      h2.spawn([process.execPath, BULK, 'serve', t.pod, '9000']);
      await started(h2, 'server', t);
      await started(h1, 'client', t);
      targets[t.where] = { http: `http://${t.pod}:8080/`, bulk: [t.pod, 9000] };
    }
    const wheres = Object.keys(targets) as Where[];
    for (const w of wheres) await waitFor(async () => (await h1.run(['curl', '-s', '--max-time', '2', targets[w].http])).stdout.includes('hello'), { what: targets[w].http, timeoutMs: 20_000, intervalMs: 100 });
    for (const w of wheres) await wrkIn(h1, targets[w].http, 1, false);

    const want = (f: string): boolean => !args.only || args.only.has(f);
    const lat: Record<string, { connect: number; first: number; total: number }> = {};
    if (want('latency')) for (const w of wheres) lat[w] = await latencyIn(h1, targets[w].http, 30);
    const raw: Record<'keepalive' | 'close' | 'bulk', Record<string, number[]>> = { keepalive: {}, close: {}, bulk: {} };
    for (const m of Object.values(raw)) for (const w of wheres) m[w] = [];
    // CPU ms (user + system, both tunnel processes) per 1000 requests / per 1000 connections / per GiB:
    // what the tunnel costs, whatever the machine's load
    const cpu: Record<'keepalive' | 'close' | 'bulk', Record<string, number[]>> = { keepalive: {}, close: {}, bulk: {} };
    for (const m of Object.values(cpu)) for (const w of wheres) m[w] = [];
    const cpuMs = (w: string): number => (pids[w] ?? []).reduce((sum, pid) => sum + cpuOf(pid), 0);
    for (let r = 0; r < args.rounds; r++) {
      // the order rotates each round, so no contender always runs first
      const order = wheres.map((_, i) => wheres[(i + r) % wheres.length]);
      for (const mode of ['keepalive', 'close'] as const) {
        if (!want(mode)) continue;
        for (const w of order) {
          const c0 = cpuMs(w);
          const rps = await wrkIn(h1, targets[w].http, args.seconds, mode === 'close');
          raw[mode][w].push(rps);
          if (w !== 'direct') cpu[mode][w].push(((cpuMs(w) - c0) / (rps * args.seconds)) * 1000);
        }
      }
      if (want('bulk')) {
        for (const w of order) {
          const c0 = cpuMs(w);
          raw.bulk[w].push(await fetchIn(h1, ...targets[w].bulk, args.mb));
          if (w !== 'direct') cpu.bulk[w].push(((cpuMs(w) - c0) / args.mb) * 1024);
        }
      }
      process.stderr.write(`round ${r + 1}: ${JSON.stringify(Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, Object.fromEntries(wheres.map((w) => [w, v[w].at(-1)]))])))}\n`);
    }
    const load = os.loadavg().map((x) => x.toFixed(1)).join(' ');
    const rows = [
      ['req/s keep-alive', raw.keepalive],
      ['new connections/s', raw.close],
      ['bulk MiB/s', raw.bulk],
    ] as const;
    const v = args.baseline ? ` | baseline ${args.baseline} | tunnel/baseline` : '';
    process.stdout.write(
      [
        `| figure (load ${load}) | direct over the veth | through the tunnel | tunnel/direct${v} |`,
        `|---|---|---|---|${args.baseline ? '---|---|' : ''}`,
        ...rows.map(([what, x]) => `| ${what} | ${fmt(median(x.direct))} | ${fmt(median(x.tunnel))} | ${fmt(pairedRatio(x.tunnel, x.direct))}${args.baseline ? ` | ${fmt(median(x.baseline))} | ${fmt(pairedRatio(x.tunnel, x.baseline))}` : ''} |`),
        `| ms, one request on a new connection (curl, median of 30) | ${fmt(lat.direct?.total)} | ${fmt(lat.tunnel?.total)} | ${args.baseline ? ` | ${fmt(lat.baseline?.total)} | ` : ''}|`,
        `| tunnel CPU ms per 1000 requests keep-alive | | ${fmt(median(cpu.keepalive.tunnel))} | ${args.baseline ? ` | ${fmt(median(cpu.keepalive.baseline))} | ${fmt(pairedRatio(cpu.keepalive.tunnel, cpu.keepalive.baseline))}` : ''}|`,
        `| tunnel CPU ms per 1000 new connections | | ${fmt(median(cpu.close.tunnel))} | ${args.baseline ? ` | ${fmt(median(cpu.close.baseline))} | ${fmt(pairedRatio(cpu.close.tunnel, cpu.close.baseline))}` : ''}|`,
        `| tunnel CPU ms per GiB | | ${fmt(median(cpu.bulk.tunnel))} | ${args.baseline ? ` | ${fmt(median(cpu.bulk.baseline))} | ${fmt(pairedRatio(cpu.bulk.tunnel, cpu.bulk.baseline))}` : ''}|`,
        `raw: ${JSON.stringify(raw)}`,
        `cpu: ${JSON.stringify(cpu)}`,
        '',
      ].join('\n'),
    );
  } finally {
    // SIGTERM first: the tunnel processes write their profiles on exit
    for (const fn of cleanups.reverse()) await fn();
    rmSync(dir, { recursive: true, force: true });
  }
}

const [r, dir, ip, pod, port] = process.argv.slice(2);
if (r === 'server' || r === 'client') await role(r, dir, ip, pod, Number(port));
else await main();
