/**
 * DNS throughput, side by side in one run: kubeloop's DnsServer against dnsmasq serving the
 * same names, both loaded by dnsperf over loopback UDP. Rounds alternate between the two so
 * that machine noise hits both alike; the medians and their ratio are printed.
 *
 *   node --import tsx bench/dns.ts [--seconds 10] [--rounds 3] [--outstanding 100] [--mix a|mixed] [--out file.json]
 *
 * Needs Debian's `dnsperf` and `dnsmasq` (apt-get install -y dnsperf dnsmasq). Loopback only;
 * every run is bounded by --seconds; both servers are stopped at the end.
 */
import { spawn, execFile } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { Service } from '../src/api/types.js';
import { createEmbeddedStore } from '../src/store/embedded.js';
import { InformerFactory } from '../src/store/informer.js';
import { DnsServer } from '../src/dns/index.js';

interface Args {
  seconds: number;
  rounds: number;
  outstanding: number;
  mix: 'a' | 'mixed';
  out?: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { seconds: 10, rounds: 3, outstanding: 100, mix: 'a' };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    switch (argv[i]) {
      case '--seconds': a.seconds = Math.min(60, Math.max(1, Number(v))); i++; break;
      case '--rounds': a.rounds = Math.min(10, Math.max(1, Number(v))); i++; break;
      case '--outstanding': a.outstanding = Math.min(1000, Math.max(1, Number(v))); i++; break;
      case '--mix': a.mix = v === 'mixed' ? 'mixed' : 'a'; i++; break;
      case '--out': a.out = v; i++; break;
      default: throw new Error(`unknown argument ${argv[i]} (expected --seconds, --rounds, --outstanding, --mix a|mixed, --out)`);
    }
  }
  return a;
}

/** A free loopback port for both UDP and TCP (dnsmasq binds both). */
async function freePort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

async function dnsperf(port: number, queryFile: string, a: Args): Promise<{ qps: number; lost: number; latencyMs: number }> {
  const out = await run('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', queryFile, '-l', String(a.seconds), '-q', String(a.outstanding)], (a.seconds + 20) * 1000);
  const qps = Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const lost = Number(/Queries lost:\s+(\d+)/.exec(out)?.[1] ?? NaN);
  const latencyMs = Number(/Average Latency \(s\):\s+([\d.]+)/.exec(out)?.[1] ?? NaN) * 1000;
  return { qps, lost, latencyMs };
}

const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-dnsbench-'));
  const cleanups: Array<() => Promise<void> | void> = [() => rm(dir, { recursive: true, force: true })];
  try {
    // kubeloop: a store with the benchmark's names, informers, the DNS server
    const store = await createEmbeddedStore({ allowLoopbackEndpoints: true });
    const informers = new InformerFactory(store);
    const dns = new DnsServer({ informers, log: pino({ level: 'warn' }), address: '127.0.0.1', port: 0, zone: 'cluster.local', ttl: 5 });
    cleanups.unshift(async () => {
      await dns.stop();
      informers.stop();
      await store.close();
    });
    await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'testns' } });
    const svc = await store.create<Service>({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'svc1', namespace: 'testns' },
      spec: { type: 'ClusterIP', sessionAffinity: 'None', internalTrafficPolicy: 'Cluster', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 80 }] },
    });
    const clusterIP = svc.spec!.clusterIP!;
    await store.create<Service>({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'hdls', namespace: 'testns' },
      spec: { type: 'ClusterIP', sessionAffinity: 'None', internalTrafficPolicy: 'Cluster', clusterIP: 'None', clusterIPs: ['None'], ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 80 }] },
    });
    await store.create({
      apiVersion: 'v1',
      kind: 'Endpoints',
      metadata: { name: 'hdls', namespace: 'testns' },
      subsets: [{ addresses: [{ ip: '127.244.0.1' }, { ip: '127.244.0.2' }, { ip: '127.244.0.3' }], ports: [{ name: 'http', protocol: 'TCP', port: 80 }] }],
    });
    await dns.start();
    await dns.synced();

    // dnsmasq: the same names, authoritative-style local data, no upstream, no logging
    const mport = await freePort();
    const dnsmasq = spawn('dnsmasq', [
      '--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--no-poll', '--pid-file=',
      '--listen-address=127.0.0.1', '--bind-interfaces', `--port=${mport}`, '--local-ttl=5',
      `--host-record=svc1.testns.svc.cluster.local,${clusterIP}`,
      '--host-record=hdls.testns.svc.cluster.local,127.244.0.1',
      '--host-record=hdls.testns.svc.cluster.local,127.244.0.2',
      '--host-record=hdls.testns.svc.cluster.local,127.244.0.3',
      '--srv-host=_http._tcp.svc1.testns.svc.cluster.local,svc1.testns.svc.cluster.local,80,0,100',
      '--local=/cluster.local/',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    let dnsmasqErr = '';
    dnsmasq.stderr!.on('data', (c: Buffer) => (dnsmasqErr += c.toString()));
    cleanups.unshift(() => new Promise<void>((r) => {
      if (dnsmasq.exitCode !== null) return r();
      dnsmasq.once('exit', () => r());
      dnsmasq.kill('SIGTERM');
    }));
    // wait until dnsmasq answers (bounded)
    for (let i = 0; ; i++) {
      try {
        const out = await run('dig', ['@127.0.0.1', '-p', String(mport), '+short', '+time=1', '+tries=1', 'svc1.testns.svc.cluster.local'], 3000);
        if (out.trim() === clusterIP) break;
      } catch {
        // not up yet
      }
      if (i > 50 || dnsmasq.exitCode !== null) throw new Error(`dnsmasq did not come up: ${dnsmasqErr}`);
      await new Promise((r) => setTimeout(r, 100));
    }

    const queries =
      a.mix === 'a'
        ? ['svc1.testns.svc.cluster.local A']
        : [
            'svc1.testns.svc.cluster.local A',
            'hdls.testns.svc.cluster.local A',
            '_http._tcp.svc1.testns.svc.cluster.local SRV',
            'svc1.testns.svc.cluster.local AAAA',
            'nope.testns.svc.cluster.local A',
          ];
    const queryFile = join(dir, 'queries.txt');
    await writeFile(queryFile, queries.join('\n') + '\n');

    // warm-up (JIT, caches), then alternate rounds
    await dnsperf(dns.port, queryFile, { ...a, seconds: 2 });
    const results: { kubeloop: number[]; dnsmasq: number[]; lost: number[]; latency: { kubeloop: number[]; dnsmasq: number[] } } = {
      kubeloop: [], dnsmasq: [], lost: [], latency: { kubeloop: [], dnsmasq: [] },
    };
    for (let r = 0; r < a.rounds; r++) {
      const k = await dnsperf(dns.port, queryFile, a);
      const m = await dnsperf(mport, queryFile, a);
      results.kubeloop.push(k.qps);
      results.dnsmasq.push(m.qps);
      results.latency.kubeloop.push(k.latencyMs);
      results.latency.dnsmasq.push(m.latencyMs);
      results.lost.push(k.lost, m.lost);
      console.log(`round ${r + 1}: kubeloop ${k.qps.toFixed(0)} qps (${k.latencyMs.toFixed(2)} ms avg, lost ${k.lost}) · dnsmasq ${m.qps.toFixed(0)} qps (${m.latencyMs.toFixed(2)} ms avg, lost ${m.lost})`);
    }
    const kq = median(results.kubeloop);
    const mq = median(results.dnsmasq);
    console.log(`median over ${a.rounds} × ${a.seconds}s, mix=${a.mix}, ${a.outstanding} outstanding: kubeloop ${kq.toFixed(0)} qps, dnsmasq ${mq.toFixed(0)} qps, ratio ${(kq / mq).toFixed(2)}`);
    if (a.out) {
      await writeFile(a.out, JSON.stringify({ date: new Date().toISOString(), args: a, medianQps: { kubeloop: kq, dnsmasq: mq }, ratio: kq / mq, ...results }, null, 2) + '\n');
    }
  } finally {
    for (const c of cleanups) await c();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
