/**
 * The benchmark suite (`npm run bench`, `npm run bench -- --quick`): kubeloop's proxy side by
 * side with HAProxy, nginx and a direct connection, in front of the same 3 backends, then
 * programming latency, start-up and DNS against dnsmasq. Contenders are interleaved
 * (A B C D A B C D …) over the rounds; cells are medians, ratios medians of per-round ratios.
 *
 *   node --import tsx bench/run.ts [--quick] [--rounds N] [--seconds S] [--only a,b] [--contenders a,b]
 *                                  [--out DIR] [--cpu-prof]
 *
 *   --only        any of: http, rate, conn, bulk, idle, programming, startup, dns, store
 *   --contenders  any of: kubeloop, kubeloop2, haproxy, nginx, direct (kubeloop is always started: its
 *                 pods are the backends; kubeloop2 is a second daemon with --proxy-processes 2 in
 *                 front of the same pods)
 *   --out         where result files go (default bench/results); latest.md/latest.svg are only
 *                 replaced by a full run (no --quick, no --only, no --contenders) into bench/results
 *   --cpu-prof    run the daemon under `node --cpu-prof`; prints its hottest functions at the end
 *
 * Tools: Debian packages haproxy, nginx (+ libnginx-mod-stream), wrk, dnsperf, dnsmasq (and dig,
 * from dnsutils, for bench/dns.ts). A missing tool is named and its part skipped.
 * Everything is loopback, bounded in time and count, and every process is ended at the end.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  type Backends,
  type Contender,
  ROOT,
  direct,
  have,
  maxIdleConnections,
  cpuSeconds,
  getText,
  rssKiB,
  startHaproxy,
  startKubeloop,
  startNginx,
  versionOf,
} from './contenders.js';
import { benchProgramming, summarize as summarizeProgramming } from './programming.js';
import { CONTENDERS, type ContenderName, type Figure, type Goal, type KubeloopOnlyRow, type Results, markdown, portable, svg } from './report.js';
import { benchStartup } from './startup.js';
import { fmt, median, pairedRatio } from './stats.js';
import { children, holdIdle, load, run, wrk } from './tools.js';

const TSX = ['--import', 'tsx'];

const PARTS = ['http', 'rate', 'conn', 'bulk', 'idle', 'programming', 'startup', 'dns', 'store'] as const;
type Part = (typeof PARTS)[number];

interface Args {
  quick: boolean;
  rounds: number;
  seconds: number;
  only: Set<Part>;
  contenders: Set<ContenderName>;
  out: string;
  cpuProf: boolean;
  partial: boolean;
}

function parseArgs(argv: string[]): Args {
  const quick = argv.includes('--quick');
  const a: Args = {
    quick,
    rounds: 3,
    seconds: quick ? 2 : 6,
    only: new Set(PARTS),
    contenders: new Set(CONTENDERS),
    out: join(ROOT, 'bench', 'results'),
    cpuProf: false,
    partial: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    switch (argv[i]) {
      case '--quick':
        break;
      case '--rounds':
        a.rounds = Math.min(10, Math.max(1, Number(v)));
        i++;
        break;
      case '--seconds':
        a.seconds = Math.min(60, Math.max(1, Number(v)));
        i++;
        break;
      case '--only': {
        const parts = (v ?? '').split(',').filter(Boolean);
        for (const p of parts) if (!PARTS.includes(p as Part)) throw new Error(`--only: unknown part "${p}" (${PARTS.join(', ')})`);
        a.only = new Set(parts as Part[]);
        a.partial = true;
        i++;
        break;
      }
      case '--contenders': {
        const cs = (v ?? '').split(',').filter(Boolean);
        for (const c of cs) if (!CONTENDERS.includes(c as ContenderName)) throw new Error(`--contenders: unknown "${c}" (${CONTENDERS.join(', ')})`);
        a.contenders = new Set(cs as ContenderName[]);
        a.partial = true;
        i++;
        break;
      }
      case '--out':
        a.out = v!;
        i++;
        break;
      case '--cpu-prof':
        a.cpuProf = true;
        break;
      default:
        throw new Error(`unknown argument ${argv[i]}: see the comment at the top of bench/run.ts`);
    }
  }
  return a;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** runs `fn` and reports the CPU cores the contender's processes used meanwhile (NaN for direct) */
async function withCpu<T>(c: Contender, fn: () => Promise<T>): Promise<{ result: T; cores: number }> {
  const pids = c.pids();
  const c0 = cpuSeconds(pids);
  const t0 = performance.now();
  const result = await fn();
  const cores = pids.length ? (cpuSeconds(pids) - c0) / ((performance.now() - t0) / 1000) : NaN;
  return { result, cores: Number(cores.toFixed(3)) };
}

// ---- figures ----

class Figures {
  readonly list: Figure[] = [];
  get(key: string, label: string, unit: string, better: 'higher' | 'lower', chart = true): Figure {
    let f = this.list.find((x) => x.key === key);
    if (!f) this.list.push((f = { key, label, unit, better, chart, raw: {}, median: {}, vsHaproxy: {}, vsDirect: {}, details: {} }));
    return f;
  }
  add(f: Figure, c: ContenderName, value: number, detail?: unknown): void {
    (f.raw[c] ??= []).push(value);
    (f.details[c] ??= []).push(detail ?? value);
  }
  finish(): void {
    for (const f of this.list) {
      for (const c of CONTENDERS) {
        const xs = f.raw[c];
        if (!xs?.length) continue;
        f.median[c] = median(xs);
        if (f.raw.haproxy?.length) f.vsHaproxy[c] = pairedRatio(xs, f.raw.haproxy);
        if (f.raw.direct?.length) f.vsDirect[c] = pairedRatio(xs, f.raw.direct);
      }
    }
  }
}

function machine(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    nproc: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    loadAtStart: os.loadavg().map((x) => x.toFixed(2)).join(' '),
    fdHardLimit: maxIdleConnections(10_000).fdLimit,
  };
}

function versions(): Record<string, string> {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  let rev = '';
  try {
    rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (dirty) rev += '+changes';
  } catch {
    // not a checkout
  }
  return {
    kubeloop: `${pkg.version}${rev ? ` (${rev})` : ''}`,
    node: process.version,
    haproxy: versionOf('haproxy', ['-v'], /HAProxy version (\S+)/),
    nginx: versionOf('nginx', ['-v'], /nginx\/(\S+)/),
    wrk: versionOf('wrk', ['-v'], /wrk (\S+)/),
    dnsperf: versionOf('dnsperf', ['-h'], /Version (\S+)/),
    dnsmasq: versionOf('dnsmasq', ['-v'], /Dnsmasq version (\S+)/),
  };
}

/** top self-time functions of the newest .cpuprofile in `dir` */
function profileSummary(dir: string, top = 20): string[] {
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')) : [];
  if (!files.length) return ['(no profile written)'];
  // the main thread's profile is the biggest (tsx's loader thread writes one too)
  const main = files.map((f) => ({ f, size: readFileSync(join(dir, f)).length })).sort((x, y) => y.size - x.size)[0]!.f;
  const prof = JSON.parse(readFileSync(join(dir, main), 'utf8')) as {
    nodes: Array<{ id: number; hitCount: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
  };
  const self = new Map<string, number>();
  let total = 0;
  for (const n of prof.nodes) {
    total += n.hitCount;
    const f = n.callFrame;
    const where = f.url ? `${f.url.replace(/^file:\/\//, '').replace(ROOT + '/', '')}:${f.lineNumber + 1}` : '';
    const k = `${f.functionName || '(anonymous)'} ${where}`.trim();
    self.set(k, (self.get(k) ?? 0) + n.hitCount);
  }
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, v]) => `${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`);
}

// ---- main ----

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const t0 = performance.now();
  const date = new Date().toISOString().replace(/:/g, '-').replace(/\..*$/, '');
  const mode: Results['mode'] = a.partial ? 'partial' : a.quick ? 'quick' : 'full';
  const figs = new Figures();
  const skipped: string[] = [];
  const notes: string[] = [];
  const kubeloopOnly: KubeloopOnlyRow[] = [];
  const raw: Record<string, unknown> = {};
  const idleWant = a.quick ? 1000 : 10_000;
  const idle = maxIdleConnections(idleWant);
  const idleFirst = a.quick ? 500 : 5000;
  const rate = { rps: 3000, conns: 32 };
  const cfg = {
    rounds: a.rounds,
    wrkSeconds: a.seconds,
    wrk: '-c 50 -t 2 --latency (keep-alive), and with -H "Connection: close"',
    fixedRate: `${rate.rps} req/s over ${rate.conns} keep-alive connections, open loop, ${a.seconds} s after 1 s warm-up`,
    bulkSeconds: Math.max(1.5, a.seconds - 1),
    idleCounts: [idleFirst, idle.count],
    idleWanted: idleWant,
    programming: a.quick ? '1000 Services × 5 endpoints, 30 samples of each kind' : '1000 Services × 5 endpoints, 100 samples of each kind',
  };
  const log = (s: string) => console.log(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${s}`);

  const need: Array<[string, string, Part[] | 'contender', ContenderName?]> = [
    ['wrk', 'wrk', ['http', 'conn']],
    ['haproxy', 'haproxy', 'contender', 'haproxy'],
    ['nginx', 'nginx (and libnginx-mod-stream)', 'contender', 'nginx'],
    ['dnsperf', 'dnsperf', ['dns']],
    ['dnsmasq', 'dnsmasq', ['dns']],
    ['dig', 'dnsutils', ['dns']],
  ];
  for (const [cmd, pkg, parts, contender] of need) {
    if (have(cmd)) continue;
    const what = parts === 'contender' ? `the ${contender} contender` : `the ${parts.join('/')} figures`;
    const msg = `${cmd} is not installed: ${what} skipped — install it with: sudo apt-get install -y ${pkg.split(' ')[0]}`;
    console.error(msg);
    skipped.push(msg);
    if (parts === 'contender') a.contenders.delete(contender!);
    else for (const p of parts) a.only.delete(p);
  }
  if (idle.count < idleWant && a.only.has('idle')) {
    notes.push(
      `idle connections: ${idleWant.toLocaleString('en-US')} wanted, ${idle.count.toLocaleString('en-US')} held — a proxy holds 2 descriptors per connection ` +
        `and this machine's hard RLIMIT_NOFILE is ${idle.fdLimit} (not raisable here); per-connection figures are measured at ${idle.count.toLocaleString('en-US')}`,
    );
  }

  const started: Contender[] = [];
  const profDir = a.cpuProf ? mkdtempSync(join(os.tmpdir(), 'kubeloop-bench-prof-')) : undefined;
  let interrupted = false;
  const cleanup = async () => {
    for (const c of children) c.kill('SIGKILL');
    for (const c of [...started].reverse()) await c.stop().catch((e: Error) => console.error(`stopping ${c.name}: ${e.message}`));
    started.length = 0;
  };
  const onSignal = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    console.error('interrupted: stopping every contender');
    void cleanup().then(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const proxyParts = (['http', 'rate', 'conn', 'bulk', 'idle'] as Part[]).filter((p) => a.only.has(p));
  try {
    if (proxyParts.length) {
      log('starting kubeloop (3 backend pods behind a ClusterIP Service)');
      const kl = await startKubeloop({ profileDir: profDir });
      started.push(kl.contender);
      const b: Backends = kl.backends;
      raw.backends = b;
      const cs: Contender[] = [];
      if (a.contenders.has('kubeloop')) cs.push(kl.contender);
      if (a.contenders.has('kubeloop2')) {
        const k2 = await startKubeloop({ forward: b, processes: 2 });
        started.push(k2.contender);
        cs.push(k2.contender);
      }
      if (a.contenders.has('haproxy')) {
        try {
          const h = await startHaproxy(b, Math.floor((idle.fdLimit - 200) / 2));
          started.push(h);
          cs.push(h);
        } catch (e) {
          skipped.push(`haproxy: ${(e as Error).message.split('\n')[0]}`);
        }
      }
      if (a.contenders.has('nginx')) {
        try {
          const n = await startNginx(b, idle.fdLimit);
          started.push(n);
          cs.push(n);
        } catch (e) {
          skipped.push(`nginx: ${(e as Error).message.split('\n')[0]}`);
        }
      }
      if (a.contenders.has('direct')) cs.push(direct(b));
      log(`contenders: ${cs.map((c) => `${c.name} ${c.http.host}`).join(', ')}; backends ${b.ips.join(', ')}`);

      // warm-up: JIT of the daemon and the backends, connection pools
      for (const c of cs) if (a.only.has('http') || a.only.has('conn')) await wrk(c.http, 2, false).catch(() => undefined);

      const eachRound = async (what: string, fn: (c: Contender, round: number) => Promise<void>) => {
        for (let r = 0; r < a.rounds; r++) {
          for (const c of cs) {
            try {
              await fn(c, r);
            } catch (e) {
              const msg = `${what}, ${c.name}, round ${r + 1}: ${(e as Error).message.split('\n')[0]}`;
              console.error(msg);
              notes.push(`error: ${msg}`);
            }
          }
          log(`${what}: round ${r + 1}/${a.rounds} done`);
        }
      };

      if (a.only.has('http')) {
        const f = figs.get('http_rps', 'HTTP keep-alive req/s (wrk -c 50 -t 2)', 'req/s', 'higher');
        const fl = figs.get('http_wrk_p99', 'p99 latency at saturation (wrk, closed loop)', 'ms', 'lower', false);
        const fc = figs.get('http_cpu', 'proxy CPU during the keep-alive test', 'cores', 'lower', false);
        await eachRound('keep-alive req/s', async (c) => {
          const { result: w, cores } = await withCpu(c, () => wrk(c.http, a.seconds, false));
          figs.add(f, c.name, w.rps, { ...w, proxyCores: cores });
          figs.add(fl, c.name, w.p99Ms, w);
          if (c.name !== 'direct') figs.add(fc, c.name, cores);
        });
      }
      if (a.only.has('rate')) {
        const p50 = figs.get('rate_p50', `p50 latency at ${rate.rps} req/s (open loop)`, 'ms', 'lower');
        const p99 = figs.get('rate_p99', `p99 latency at ${rate.rps} req/s (open loop)`, 'ms', 'lower');
        await eachRound('fixed-rate latency', async (c) => {
          const r = await load('rate', { host: c.http.host, port: c.http.port, rps: rate.rps, conns: rate.conns, seconds: a.seconds, warmup: 1 }, (a.seconds + 20) * 1000);
          figs.add(p50, c.name, r.p50Ms!, r);
          figs.add(p99, c.name, r.p99Ms!, r);
        });
      }
      if (a.only.has('conn')) {
        const f = figs.get('conn_rps', 'new connections/s (Connection: close)', 'conn/s', 'higher');
        const fc = figs.get('conn_cpu', 'proxy CPU during the new-connections test', 'cores', 'lower', false);
        await eachRound('new connections/s', async (c) => {
          const { result: w, cores } = await withCpu(c, () => wrk(c.http, a.seconds, true));
          figs.add(f, c.name, w.rps, { ...w, proxyCores: cores });
          if (c.name !== 'direct') figs.add(fc, c.name, cores);
        });
        await sleep(1000);
      }
      if (a.only.has('bulk')) {
        for (const streams of [1, 8]) {
          const f = figs.get(`bulk_${streams}`, `bulk throughput, ${streams} stream${streams > 1 ? 's' : ''}`, 'Gbit/s', 'higher');
          await eachRound(`bulk ${streams}`, async (c) => {
            const { result: r, cores } = await withCpu(c, () =>
              load('bulk', { host: c.tcp.host, port: c.tcp.port, streams, seconds: cfg.bulkSeconds, warmup: 0.5 }, (cfg.bulkSeconds + 20) * 1000),
            );
            figs.add(f, c.name, r.gbitPerSec!, { ...r, proxyCores: cores });
          });
        }
      }
      if (a.only.has('idle')) {
        const per1 = figs.get('idle_first', `proxy RSS per idle connection, ${idleFirst.toLocaleString('en-US')} held`, 'KiB', 'lower', false);
        const per2 = figs.get('idle_max', `proxy RSS per idle connection, ${idle.count.toLocaleString('en-US')} held`, 'KiB', 'lower', false);
        const rssF = figs.get('idle_rss', `proxy RSS with ${idle.count.toLocaleString('en-US')} idle connections`, 'MiB', 'lower', false);
        const latF = figs.get('idle_p99', `p99 at ${rate.rps} req/s with ${idle.count.toLocaleString('en-US')} idle held`, 'ms', 'lower');
        const latR = figs.get('idle_p99_effect', 'p99 with idle held ÷ p99 without (same round)', '×', 'lower', false);
        const latC = figs.get(
          'idle_p99_proxy_effect',
          'p99 with idle held through the proxy ÷ p99 with as many held direct to the backends (same round)',
          '×',
          'lower',
          false,
        );
        const probeSeconds = a.quick ? 1 : 3;
        const settle = a.quick ? 500 : 1000;
        // RSS before a contender's first hold: memory a process took for a hold stays mapped after
        // it (freed heap, malloc arenas), so "held − before" in a later round counts only growth
        // beyond the first hold (it came out negative); every round is measured from this baseline
        const rssBaseline = new Map<string, number>();
        await eachRound('idle connections', async (c, round) => {
          const probe = () =>
            load('rate', { host: c.http.host, port: c.http.port, rps: rate.rps, conns: rate.conns, seconds: probeSeconds, warmup: 0.5 }, 30_000);
          // The control: as many idle connections held straight to the backends, so the machine
          // (kernel, backends, holders) carries the same load and only the proxy is spared it.
          // Measured before or after the proxied hold, alternating by round (with an odd round
          // count one order comes once more often).
          const control = async (count: number) => {
            const started = await Promise.allSettled(
              b.ips.map((ip, i) => holdIdle(ip, b.tcpPort, Math.floor(count / b.ips.length) + (i < count % b.ips.length ? 1 : 0))),
            );
            const hs = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
            const failed = started.find((r) => r.status === 'rejected');
            if (failed) {
              // the holders that did start are closed before the error goes on
              for (const h of hs) await h.close();
              throw (failed as PromiseRejectedResult).reason;
            }
            try {
              await sleep(settle);
              return { held: hs.reduce((n, h) => n + h.report.opened!, 0), probe: await probe() };
            } finally {
              for (const h of hs) await h.close();
              await sleep(settle * 1.5);
            }
          };
          if (c.name === 'direct') {
            // the machine's own share: the probe straight to a backend, none held vs the control
            const none = await probe();
            const ctl = await control(idle.count);
            figs.add(latR, c.name, ctl.probe.p99Ms! / none.p99Ms!, { before: none, heldDirect: ctl.held, heldDirectProbe: ctl.probe });
            return;
          }
          const controlFirst = round % 2 === 1;
          const early = controlFirst ? await control(idle.count) : undefined;
          const before = await probe();
          await sleep(settle / 2);
          const rssBefore = rssKiB(c.pids());
          if (!rssBaseline.has(c.name)) rssBaseline.set(c.name, rssBefore);
          const rss0 = rssBaseline.get(c.name)!;
          const h1 = await holdIdle(c.tcp.host, c.tcp.port, idleFirst);
          let h2: Awaited<ReturnType<typeof holdIdle>> | undefined;
          try {
            await sleep(settle);
            const rss1 = rssKiB(c.pids());
            h2 = await holdIdle(c.tcp.host, c.tcp.port, idle.count - idleFirst);
            await sleep(settle);
            const rss2 = rssKiB(c.pids());
            const during = await probe();
            const held = h1.report.opened! + h2.report.opened!;
            await h2.close();
            await h1.close();
            await sleep(settle * 1.5); // let the proxy close its side
            const detail: Record<string, unknown> = {
              rss0KiB: rss0,
              rssBeforeThisHoldKiB: rssBefore,
              rss1KiB: rss1,
              rss2KiB: rss2,
              first: h1.report,
              second: h2.report,
              held,
              controlFirst,
              p99Before: before.p99Ms,
              p99During: during.p99Ms,
              before,
              during,
            };
            figs.add(per1, c.name, (rss1 - rss0) / h1.report.opened!, detail);
            figs.add(per2, c.name, (rss2 - rss0) / held, detail);
            figs.add(rssF, c.name, rss2 / 1024, detail);
            figs.add(latF, c.name, during.p99Ms!, detail);
            figs.add(latR, c.name, during.p99Ms! / before.p99Ms!, detail);
            if (held < idle.count) notes.push(`${c.name}: only ${held} of ${idle.count} idle connections opened`);
            // the same count as the proxied hold asked for, whichever comes first
            const ctl = early ?? (await control(idle.count));
            Object.assign(detail, { heldDirect: ctl.held, p99HeldDirect: ctl.probe.p99Ms, heldDirectProbe: ctl.probe });
            figs.add(latC, c.name, during.p99Ms! / ctl.probe.p99Ms!, detail);
            if (ctl.held < idle.count) notes.push(`${c.name}: the direct control held only ${ctl.held} of ${idle.count}`);
          } finally {
            // no-ops when already closed above
            await h2?.close();
            await h1.close();
          }
        });
      }
      if (kl.metricsUrl) {
        // the per-pod distribution as a user would see it
        try {
          const text = await getText(kl.metricsUrl);
          raw.metricsSample = text.split('\n').filter((l) => l.startsWith('kubeloop_proxy_endpoint_connections_total{service="default/bench"'));
        } catch (e) {
          notes.push(`metrics scrape failed: ${(e as Error).message}`);
        }
      }
      log('stopping the contenders');
      await cleanup();
    }

    const part = async (name: string, fn: () => Promise<void>) => {
      try {
        await fn();
      } catch (e) {
        const msg = `${name}: ${(e as Error).message.split('\n')[0]}`;
        console.error(msg);
        notes.push(`error: ${msg}`);
      }
    };

    if (a.only.has('programming')) await part('programming latency', async () => {
      log('programming latency: loading 1,000 Services × 5 endpoints');
      const r = await benchProgramming({ quick: a.quick });
      const s = summarizeProgramming(r);
      raw.programming = { ...s, loadSeconds: r.loadSeconds, podReadyMs: r.podReadyMs, serviceCreateMs: r.serviceCreateMs, metricProgrammingMs: r.metricProgrammingMs, syncMs: r.syncMs };
      kubeloopOnly.push(
        { what: `programming latency, pod turns Ready → new connection routed (1,000 Services × 5 endpoints, ${s.samples} samples)`, value: `p50 ${fmt(s.podReadyP50Ms)} ms · p99 ${fmt(s.podReadyP99Ms)} ms`, reference: 'goal p99 ≤ 50 ms; upstream SLO p99 ≤ 50 s (p50 ≤ 20 s)' },
        { what: 'programming latency, Service created → new connection routed', value: `p50 ${fmt(s.serviceCreateP50Ms)} ms · p99 ${fmt(s.serviceCreateP99Ms)} ms`, reference: 'goal p99 ≤ 50 ms' },
        { what: 'kubeproxy_network_programming_duration_seconds for the pod-Ready samples', value: `p50 ${fmt(s.metricP50Ms)} ms · p99 ${fmt(s.metricP99Ms)} ms`, reference: "the proxy's own metric (trigger time → end of sync)" },
        { what: 'proxy sync duration during the samples', value: `p50 ${fmt(s.syncP50Ms)} ms · p99 ${fmt(s.syncP99Ms)} ms` },
      );
      log(`programming latency: pod Ready p99 ${fmt(s.podReadyP99Ms)} ms, Service create p99 ${fmt(s.serviceCreateP99Ms)} ms`);
    });

    if (a.only.has('startup')) await part('start-up', async () => {
      log('start-up: kubeloop up -f config/ to the first curl through a ClusterIP');
      const s = await benchStartup(a.quick);
      raw.startup = s;
      kubeloopOnly.push({
        what: `start-up, \`kubeloop up -f config/\` to the first successful curl through a ClusterIP (median of ${s.rounds})`,
        value: `npm start cold ${fmt(s.npmStartColdMsMedian)} ms · node cold ${fmt(s.coldToFirstCurlMsMedian)} ms · warm ${fmt(s.warmToFirstCurlMsMedian)} ms (floor ${fmt(s.floorNodeHttpMsMedian)} ms)`,
        reference: 'goal ≤ 1 s',
      });
    });

    if (a.only.has('dns')) {
      log('DNS: dnsperf against a kubeloop daemon, dnsmasq, a naive dns2 server and a Node UDP echo (the ceiling of a Node server)');
      const tmp = mkdtempSync(join(os.tmpdir(), 'kubeloop-bench-dns-'));
      try {
        const seconds = a.quick ? 2 : Math.max(3, a.seconds);
        const dnsArgs = [...TSX, join(ROOT, 'bench', 'dns.ts'), '--seconds', String(seconds), '--rounds', String(a.rounds), '--out', join(tmp, 'dns.json')];
        const timeout = (a.rounds * 4 * (seconds + 5) + 60) * 1000;
        // one retry: its servers bind ports chosen just before (a race with other processes is possible)
        const out = await run(process.execPath, dnsArgs, timeout).catch((e: Error) => {
          const tail = e.message.trim().split('\n').filter((l) => !l.startsWith('{')).slice(-3).join(' / ');
          console.error(`DNS bench failed (${tail}); trying once more`);
          notes.push(`DNS: the first attempt failed (${tail}); this is the second`);
          return run(process.execPath, dnsArgs, timeout);
        });
        process.stdout.write(out);
        const d = JSON.parse(readFileSync(join(tmp, 'dns.json'), 'utf8')) as { medianQps: Record<string, number>; ratio: number; rounds: unknown[] };
        raw.dns = d;
        const m = d.medianQps;
        kubeloopOnly.push({
          what: `DNS queries/s (dnsperf, A record, ${seconds} s × ${a.rounds} interleaved rounds)`,
          value: `kubeloop ${fmt(m.kubeloop)} · dnsmasq ${fmt(m.dnsmasq)} · ratio ${fmt(d.ratio)}×`,
          reference: `goal ≥ 1.0× dnsmasq; naive dns2 ${fmt(m.naiveDns2)}; a Node UDP echo answering one constant reply (bench/udp-echo.mjs, the ceiling of a Node server) ${fmt(m.nodeEcho)}`,
        });
      } catch (e) {
        const msg = `DNS: ${(e as Error).message.split('\n')[0]}`;
        console.error(msg);
        notes.push(`error: ${msg}`);
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    }

    if (a.only.has('store')) {
      log('store: writes/s per backend beside its ceiling, list latency, paged lists, watchers, two daemons on one Redis (bench/store.ts)');
      const tmp = mkdtempSync(join(os.tmpdir(), 'kubeloop-bench-store-'));
      try {
        const out = await run(process.execPath, [...TSX, join(ROOT, 'bench', 'store.ts'), ...(a.quick ? ['--quick'] : []), '--out', tmp], 30 * 60_000);
        process.stdout.write(out);
        const s = JSON.parse(readFileSync(join(tmp, 'store.json'), 'utf8')) as { rows: Array<[string, string, string]>; errors: string[] };
        raw.store = s;
        for (const [what, value, reference] of s.rows) kubeloopOnly.push({ what, value, ...(reference ? { reference } : {}) });
        for (const e of s.errors) notes.push(`store: ${e}`);
      } catch (e) {
        const msg = `store: ${(e as Error).message.split('\n')[0]}`;
        console.error(msg);
        notes.push(`error: ${msg}`);
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    }
  } finally {
    await cleanup();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }

  figs.finish();
  const goals = evaluate(figs.list, raw, idle.count);
  notes.push(
    'kubeloop runs as `kubeloop up` with a Deployment of 3 pods (`command: [node, bench/backend.mjs]`: a plain Node HTTP server on :8080 and a raw TCP source on :9000) and a ClusterIP Service; HAProxy, nginx and direct are pointed at the same 3 pod processes.',
    'p50/p99 "at a fixed rate" come from an open-loop Node client (bench/load.ts: requests due on a fixed schedule, latency counted from the due time, so a stall shows); wrk2 is not packaged in Debian. The wrk percentiles are closed-loop at saturation and listed for reference.',
    'bulk: the client reads from the backends\' TCP source for a fixed window; 8 streams spread over the 3 backends (round robin), direct puts all 8 on one backend.',
    'idle: connections are opened to the TCP source (each completes a round trip, so the whole path is up), held, and the proxy\'s RSS (all its processes) is read from /proc; per connection = (RSS held − RSS before the contender\'s first hold of the run) ÷ connections (memory taken for a hold stays mapped after it, so a later round\'s own "before" would hide it). kubeloop\'s RSS is the whole daemon\'s (store, controllers, API, DNS included).',
    'idle latency: the fixed-rate probe runs with none held, with them held through the proxy, and with as many held straight to the backends (the control; before or after the proxied hold, alternating by round). In "p99 with idle held ÷ p99 without", the direct column is the probe straight to a backend with as many held straight to the backends: no proxy anywhere. Holding thousands of idle connections raises p99 on a small machine whether or not a proxy holds them, so the goal is judged against the control: the part the proxy adds.',
  );
  const measured: Results = {
    date,
    mode,
    durationSeconds: (performance.now() - t0) / 1000,
    machine: { ...machine(), loadAtEnd: os.loadavg().map((x) => x.toFixed(2)).join(' ') },
    versions: versions(),
    config: cfg,
    figures: figs.list,
    kubeloopOnly,
    goals,
    skipped,
    notes,
    raw,
  };
  // results are committed: no path of this machine in them (tool errors quote command lines)
  const results = JSON.parse(portable(JSON.stringify(measured), ROOT)) as Results;
  mkdirSync(a.out, { recursive: true });
  const base = `${date}${mode === 'full' ? '' : `-${mode}`}`;
  writeFileSync(join(a.out, `${base}.json`), JSON.stringify(results, null, 2) + '\n');
  const md = markdown(results, `${base}.svg`);
  writeFileSync(join(a.out, `${base}.md`), md);
  writeFileSync(join(a.out, `${base}.svg`), svg(results));
  const isDefaultOut = a.out === join(ROOT, 'bench', 'results');
  if (mode === 'full' && isDefaultOut) {
    writeFileSync(join(a.out, 'latest.md'), markdown({ ...results }, 'latest.svg').replace(`\`${date}.json\``, `\`${date}.json\` (next to this file)`));
    writeFileSync(join(a.out, 'latest.svg'), svg(results));
  }
  console.log('\n' + md);
  console.log(`written: ${join(a.out, base)}.{json,md,svg}${mode === 'full' && isDefaultOut ? ' and latest.md/latest.svg' : ''}`);
  if (profDir) {
    console.log('\nkubeloop daemon CPU profile, top self time:');
    for (const l of profileSummary(profDir)) console.log(`  ${l}`);
    console.log(`(profile: ${profDir})`);
  }
}

function evaluate(figs: Figure[], raw: Record<string, unknown>, idleCount: number): Goal[] {
  const goals: Goal[] = [];
  const f = (k: string) => figs.find((x) => x.key === k);
  // judged on the default (one process); the --proxy-processes 2 figure is shown beside it
  const ratioGoal = (key: string, what: string, min: number | undefined, max: number | undefined) => {
    const x = f(key)?.vsHaproxy.kubeloop;
    if (x === undefined || !Number.isFinite(x)) return goals.push({ what, target: '', value: 'not measured', met: null });
    const ok = (v: number) => (min === undefined || v >= min) && (max === undefined || v <= max);
    const met = ok(x);
    const target = min !== undefined ? `≥ ${min}× HAProxy` : `≤ ${max}× HAProxy`;
    const by = min !== undefined ? `${fmt((1 - x / min) * 100, 2)}% short` : `${fmt((x / max! - 1) * 100, 2)}% over`;
    const x2 = f(key)?.vsHaproxy.kubeloop2;
    const two = x2 !== undefined && Number.isFinite(x2) ? `--proxy-processes 2: ${fmt(x2)}×${ok(x2) ? ' (met)' : ''}` : '';
    // the per-round ratios, so that a median carried by one contender's noisy round shows
    const k = f(key)!.raw.kubeloop ?? [];
    const h = f(key)!.raw.haproxy ?? [];
    const perRound = k.length > 1 && k.length === h.length ? `rounds ${k.map((v, i) => `${fmt(v / h[i]!)}×`).join(', ')}` : '';
    const note = [met ? '' : by, perRound, two].filter(Boolean).join('; ');
    goals.push({ what, target, value: `${fmt(x)}×`, met, note: note || undefined });
  };
  ratioGoal('http_rps', 'keep-alive requests/s', 1, undefined);
  ratioGoal('conn_rps', 'new connections/s', 1, undefined);
  ratioGoal('bulk_1', 'bulk throughput, 1 stream', 1, undefined);
  ratioGoal('bulk_8', 'bulk throughput, 8 streams', 1, undefined);
  ratioGoal('rate_p99', 'p99 latency at the fixed rate', undefined, 1.2);
  const per = f('idle_max')?.median.kubeloop;
  const rssWhat = `idle connections: proxy RSS each (${idleCount.toLocaleString('en-US')} held)`;
  if (per === undefined) goals.push({ what: rssWhat, target: '≤ 4 KiB', value: 'not measured', met: null });
  // ≤ 0: the process's RSS fell while it held them (its GC gave back more than they took)
  else if (per <= 0) goals.push({ what: rssWhat, target: '≤ 4 KiB', value: `${fmt(per)} KiB: not measurable (RSS fell during the hold; GC noise)`, met: null });
  else goals.push({ what: rssWhat, target: '≤ 4 KiB', value: `${fmt(per)} KiB`, met: per <= 4, note: per <= 4 ? undefined : `${fmt(per - 4)} KiB over` });
  // judged against the control (as many held straight to the backends): holding them anywhere
  // raises every p99 on a 2-core machine, a probe that bypasses the proxy included
  const latWhat = "idle connections: no effect on the others' latency";
  const latTarget = 'p99 with them held through the proxy ≤ 1.2× p99 with as many held direct to the backends';
  const effF = f('idle_p99_proxy_effect');
  const eff = effF?.median.kubeloop;
  const plain = f('idle_p99_effect')?.median;
  if (eff === undefined) {
    if (plain?.kubeloop !== undefined) goals.push({ what: latWhat, target: latTarget, value: 'not measured (the control failed: see the notes)', met: null });
  } else {
    const also =
      plain?.kubeloop === undefined
        ? ''
        : `; ÷ p99 with none held: ${fmt(plain.kubeloop)}×, HAProxy ${fmt(plain.haproxy ?? NaN)}×, no proxy at all (direct) ${fmt(plain.direct ?? NaN)}×`;
    goals.push({ what: latWhat, target: latTarget, value: `${fmt(eff)}× (HAProxy ${fmt(effF?.median.haproxy ?? NaN)}×${also})`, met: eff <= 1.2 });
  }
  const p = raw.programming as Record<string, number> | undefined;
  if (p) {
    const worst = Math.max(p.podReadyP99Ms!, p.serviceCreateP99Ms!);
    goals.push({ what: 'programming latency p99 at 1,000 Services', target: '≤ 50 ms', value: `pod Ready ${fmt(p.podReadyP99Ms)} ms, Service created ${fmt(p.serviceCreateP99Ms)} ms`, met: worst <= 50 });
  } else goals.push({ what: 'programming latency p99 at 1,000 Services', target: '≤ 50 ms', value: 'not measured', met: null });
  const s = raw.startup as Record<string, number> | undefined;
  goals.push(
    s
      ? { what: 'start-up to first curl (npm start, cold)', target: '≤ 1 s', value: `npm start cold ${fmt(s.npmStartColdMsMedian)} ms, node cold ${fmt(s.coldToFirstCurlMsMedian)} ms, warm ${fmt(s.warmToFirstCurlMsMedian)} ms`, met: s.npmStartColdMsMedian! <= 1000 }
      : { what: 'start-up to first curl', target: '≤ 1 s', value: 'not measured', met: null },
  );
  const d = raw.dns as { ratio: number } | undefined;
  goals.push(
    d
      ? { what: 'DNS queries/s', target: '≥ 1.0× dnsmasq', value: `${fmt(d.ratio)}×`, met: d.ratio >= 1 }
      : { what: 'DNS queries/s', target: '≥ 1.0× dnsmasq', value: 'not measured', met: null },
  );
  return goals;
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exitCode = 1;
});
