/**
 * Does reading a big pod log stall the data plane? A `kubeloop up` daemon runs a pod whose log
 * file is grown to --mb MiB, and a Service in front of an echo pod. While `kubectl logs big
 * --tail=1` and then a full `kubectl logs big` run, two probes poll the daemon every 10 ms:
 * a UDP DNS query for the Service's name and an HTTP GET to its ClusterIP (a new connection
 * each). Printed per phase: probe latency p50/p99/max, the kubectl run time, the daemon's RSS
 * (before, max during), and its own event-loop delay (p99/max of prom-client's
 * monitorEventLoopDelay from /metrics, reset by each scrape): the probes include the machine's
 * CPU contention, the loop delay says whether the daemon itself stalled. The goal is a max
 * probe latency under 50 ms in every phase.
 *
 *   node --import tsx bench/log-tail.ts [--mb 300] [--tails 3] [--out file.json]
 *
 * Loopback only; every phase is bounded in time; the daemon is stopped at the end.
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { closeSync, openSync, readFileSync, readdirSync, writeFileSync, writeSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { WEB_ECHO_MANIFEST, startDaemon } from '../test/helpers/daemon.js';
import { fmt, percentile } from './stats.js';

interface Args {
  mb: number;
  tails: number;
  out?: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { mb: 300, tails: 3 };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    switch (argv[i]) {
      case '--mb': a.mb = Math.min(2048, Math.max(1, Number(v))); i++; break;
      case '--tails': a.tails = Math.min(20, Math.max(1, Number(v))); i++; break;
      case '--out': a.out = v; i++; break;
      default: throw new Error(`unknown argument ${argv[i]} (expected --mb, --tails, --out)`);
    }
  }
  return a;
}

const MANIFEST = `${WEB_ECHO_MANIFEST}---
apiVersion: v1
kind: Pod
metadata: { name: big }
spec:
  containers:
    - name: big
      image: sleeper
      command: ["sleep", "3600"]
`;

/** a DNS query for `name` A with id `id` */
function dnsQuery(id: number, name: string): Buffer {
  const labels = name.split('.').flatMap((l) => [Buffer.from([l.length]), Buffer.from(l)]);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2); // RD
  header.writeUInt16BE(1, 4);
  return Buffer.concat([header, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

interface Probe {
  /** latencies (ms) of probes that started since the last `take()` */
  take(): number[];
  stop(): Promise<void>;
}

/** Sends one probe at a time, the next 10 ms after the last one started (or at once if it took longer). */
function probeLoop(once: () => Promise<number>): Probe {
  let samples: number[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const start = performance.now();
      samples.push(await once());
      const wait = 10 - (performance.now() - start);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  })();
  return {
    take: () => {
      const s = samples;
      samples = [];
      return s;
    },
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

function dnsProbe(port: number, name: string): Probe {
  const sock = dgram.createSocket('udp4');
  let id = 0;
  let pending: { id: number; done: (ms: number) => void; start: number } | undefined;
  sock.on('message', (m) => {
    if (pending && m.readUInt16BE(0) === pending.id) pending.done(performance.now() - pending.start);
  });
  const p = probeLoop(
    () =>
      new Promise<number>((resolve) => {
        id = (id + 1) & 0xffff;
        const start = performance.now();
        const timer = setTimeout(() => done(5000), 5000);
        const done = (ms: number): void => {
          clearTimeout(timer);
          pending = undefined;
          resolve(ms);
        };
        pending = { id, done, start };
        sock.send(dnsQuery(id, name), port, '127.0.0.1');
      }),
  );
  return {
    take: p.take,
    stop: async () => {
      await p.stop();
      sock.close();
    },
  };
}

function httpProbe(host: string, port: number): Probe {
  return probeLoop(
    () =>
      new Promise<number>((resolve) => {
        const start = performance.now();
        const req = http.get({ host, port, path: '/', agent: false, timeout: 5000 }, (res) => {
          res.resume();
          res.on('end', () => resolve(performance.now() - start));
        });
        req.on('timeout', () => req.destroy());
        req.on('error', () => resolve(performance.now() - start));
      }),
  );
}

/** the daemon's RSS in MiB; 0 once it is gone */
function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return Number(m?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

/** Runs a shell command (kubectl output piped to wc, so the bytes never pass through this process). */
function sh(cmd: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ out: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const p = spawn('sh', ['-c', cmd], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    p.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve({ out, ms: performance.now() - start });
      else reject(new Error(`${cmd}: exit ${code}\n${err}`));
    });
  });
}

async function waitFor<T>(fn: () => T | undefined | Promise<T | undefined>, what: string, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** the daemon's event-loop delay since the last scrape (ms): prom-client resets it at each collection */
async function loopDelay(metricsUrl: string): Promise<{ p99: number; max: number }> {
  const text = await new Promise<string>((resolve, reject) => {
    http
      .get(metricsUrl, { agent: false }, (res) => {
        let b = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (b += c));
        res.on('end', () => resolve(b));
      })
      .on('error', reject);
  });
  const get = (name: string): number => Number(text.split('\n').find((l) => l.startsWith(`${name} `))?.split(' ')[1] ?? NaN) * 1000;
  return { p99: get('nodejs_eventloop_lag_p99_seconds'), max: get('nodejs_eventloop_lag_max_seconds') };
}

interface PhaseResult {
  phase: string;
  runs: number;
  kubectlMs: number[];
  dns: { p50: number; p99: number; max: number; n: number };
  http: { p50: number; p99: number; max: number; n: number };
  rssBeforeMiB: number;
  rssMaxMiB: number;
  loopDelayMs: { p99: number; max: number };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const d = await startDaemon(
    [
      '--pod-cidr', '127.163.0.0/16', '--service-cidr', '127.162.0.0/16', '--node-ip', '127.0.162.1', '--nodeport-addresses', '127.0.162.1',
      '--lb-pool', '127.164.0.0/16', '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--log-level', 'warn', '--ready-timeout', '20s',
    ],
    { timeoutMs: 60_000 },
  );
  const probes: Probe[] = [];
  try {
    const env = { ...process.env, KUBECONFIG: join(d.stateDir, 'kubeconfig') };
    writeFileSync(join(d.stateDir, 'bench.yaml'), MANIFEST);
    await sh(`kubectl apply -f ${join(d.stateDir, 'bench.yaml')}`, env, 30_000);
    const dnsPort = Number(/dig @\S+ -p (\d+)/.exec(d.stdout())?.[1]);
    const metricsUrl = /Metrics: (\S+)/.exec(d.stdout())?.[1];
    if (!metricsUrl) throw new Error(`no metrics URL in:\n${d.stdout()}`);
    const clusterIP = (await sh(`kubectl get svc web -o jsonpath='{.spec.clusterIP}'`, env, 10_000)).out.trim();
    // the echo pod answers through the ClusterIP
    await waitFor(
      () =>
        new Promise<true | undefined>((resolve) => {
          http.get({ host: clusterIP, port: 80, agent: false, timeout: 1000 }, (res) => (res.resume(), resolve(res.statusCode === 200 ? true : undefined))).on('error', () => resolve(undefined));
        }),
      'the web Service to answer',
    );
    const podsDir = join(d.stateDir, 'pods');
    const logFile = await waitFor(() => {
      const dir = readdirSync(podsDir).find((e) => e.startsWith('default_big_'));
      if (!dir) return undefined;
      try {
        return readdirSync(join(podsDir, dir, 'big')).includes('0.log') ? join(podsDir, dir, 'big', '0.log') : undefined;
      } catch {
        return undefined;
      }
    }, 'the big pod to start');

    // grow the log to --mb MiB of 100-byte lines in 8 MiB writes
    const line = (i: number): string => `line ${String(i).padStart(10, '0')} ${'x'.repeat(83)}\n`;
    const perChunk = Math.floor((8 << 20) / 100);
    const fd = openSync(logFile, 'a');
    let lines = 0;
    const total = Math.floor((args.mb << 20) / 100);
    while (lines < total) {
      const n = Math.min(perChunk, total - lines);
      let s = '';
      for (let i = 0; i < n; i++) s += line(lines + i);
      writeSync(fd, s);
      lines += n;
    }
    closeSync(fd);
    const lastLine = line(lines - 1);
    console.log(`log: ${fmt(args.mb)} MiB, ${fmt(lines)} lines; DNS port ${dnsPort}; ClusterIP ${clusterIP}; daemon pid ${d.proc.pid}`);

    const pid = d.proc.pid!;
    const dns = dnsProbe(dnsPort, 'web.default.svc.cluster.local');
    const web = httpProbe(clusterIP, 80);
    probes.push(dns, web);
    const results: PhaseResult[] = [];
    const phase = async (name: string, runs: number, body: () => Promise<number>): Promise<void> => {
      dns.take();
      web.take();
      await loopDelay(metricsUrl);
      const rssBefore = rssMiB(pid);
      let rssMax = rssBefore;
      const sampler = setInterval(() => (rssMax = Math.max(rssMax, rssMiB(pid))), 20);
      const kubectlMs: number[] = [];
      try {
        for (let i = 0; i < runs; i++) kubectlMs.push(await body());
      } finally {
        clearInterval(sampler);
      }
      rssMax = Math.max(rssMax, rssMiB(pid));
      const loop = await loopDelay(metricsUrl);
      const sum = (xs: number[]) => ({ p50: percentile(xs, 50), p99: percentile(xs, 99), max: Math.max(...xs), n: xs.length });
      const r: PhaseResult = { phase: name, runs, kubectlMs, dns: sum(dns.take()), http: sum(web.take()), rssBeforeMiB: rssBefore, rssMaxMiB: rssMax, loopDelayMs: loop };
      results.push(r);
      console.log(
        `${name.padEnd(22)} kubectl ${kubectlMs.map((x) => fmt(x)).join('/')} ms | DNS p50 ${fmt(r.dns.p50)} p99 ${fmt(r.dns.p99)} max ${fmt(r.dns.max)} ms (${r.dns.n}) | ` +
          `ClusterIP p50 ${fmt(r.http.p50)} p99 ${fmt(r.http.p99)} max ${fmt(r.http.max)} ms (${r.http.n}) | RSS ${fmt(rssBefore)} → max ${fmt(rssMax)} MiB | daemon loop delay p99 ${fmt(loop.p99)} max ${fmt(loop.max)} ms`,
      );
    };
    await phase('idle (2 s)', 1, async () => (await new Promise((r) => setTimeout(r, 2000)), 2000));
    await phase('logs --tail=1', args.tails, async () => {
      const r = await sh('kubectl logs big --tail=1', env, 120_000);
      if (r.out !== lastLine) throw new Error(`--tail=1 gave ${JSON.stringify(r.out.slice(0, 200))}, want ${JSON.stringify(lastLine)}`);
      return r.ms;
    });
    await phase('logs (full, streamed)', 1, async () => {
      const r = await sh('kubectl logs big | wc -c', env, 300_000);
      if (Number(r.out.trim()) !== lines * 100) throw new Error(`full read gave ${r.out.trim()} bytes, want ${lines * 100}`);
      return r.ms;
    });
    await phase('logs --limit-bytes=1M', 1, async () => {
      const r = await sh('kubectl logs big --limit-bytes=1048576 | wc -c', env, 60_000);
      if (Number(r.out.trim()) !== 1 << 20) throw new Error(`--limit-bytes gave ${r.out.trim()} bytes`);
      return r.ms;
    });
    const worst = Math.max(...results.flatMap((r) => [r.dns.max, r.http.max]));
    const worstLoop = Math.max(...results.map((r) => r.loopDelayMs.max));
    const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    console.log(`worst probe latency over all phases: ${fmt(worst)} ms (goal < 50 ms: ${worst < 50 ? 'met' : 'NOT met'}); worst daemon loop delay ${fmt(worstLoop)} ms; load average ${load}`);
    if (args.out) writeFileSync(args.out, JSON.stringify({ mb: args.mb, lines, results, worstMs: worst, worstLoopDelayMs: worstLoop, loadavg: load }, null, 2) + '\n');
  } catch (e) {
    if (d.proc.exitCode !== null || d.proc.signalCode !== null) {
      console.error(`the daemon died (${d.proc.exitCode ?? d.proc.signalCode}); its last output:\n${d.stderr().slice(-3000)}`);
    }
    throw e;
  } finally {
    for (const p of probes) await p.stop();
    await d.stop();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
