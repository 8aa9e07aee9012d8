/**
 * DNS throughput, side by side in one run, each server loaded by dnsperf over loopback UDP:
 * - kubeloop: a `kubeloop up` daemon, as users run it, serving the names of a manifest;
 * - dnsmasq serving the same names;
 * - a naive dns2 server (a handler building dns2 Packets, no caching): the baseline the issue
 *   measured;
 * - bench/udp-echo.mjs, a Node process answering one constant reply on the socket's libuv
 *   handle: the ceiling of any Node server.
 * Rounds alternate between the servers so that machine noise hits all alike; medians and ratios
 * are printed.
 *
 *   node --import tsx bench/dns.ts [--seconds 10] [--rounds 3] [--outstanding 100] [--mix a|mixed] [--out file.json]
 *
 * Needs Debian's `dnsperf` and `dnsmasq` (apt-get install -y dnsperf dnsmasq). Loopback only;
 * every run is bounded by --seconds; every server is stopped at the end.
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dns2 from 'dns2';
import { ROOT, kill, launchKubeloop } from './contenders.js';
import { run } from './tools.js';

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

/**
 * A port free for both UDP and TCP on 127.0.0.1 (dnsmasq binds both), picked below Linux's
 * ephemeral range: after the bench's idle stage thousands of ephemeral TCP ports sit in
 * TIME_WAIT, and a port free for UDP there was often taken for TCP.
 */
async function freePort(): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const udp = dgram.createSocket('udp4');
    const tcp = net.createServer();
    const ok = await new Promise<boolean>((r) => {
      udp.once('error', () => r(false));
      udp.bind(port, '127.0.0.1', () => {
        tcp.once('error', () => r(false));
        tcp.listen({ port, host: '127.0.0.1', exclusive: true }, () => r(true));
      });
    });
    await new Promise<void>((r) => udp.close(() => r())).catch(() => {});
    if (tcp.listening) await new Promise<void>((r) => tcp.close(() => r()));
    if (ok) return port;
    if (attempt >= 50) throw new Error('no port free for both UDP and TCP on 127.0.0.1 in 20000–31999');
  }
}

async function dnsperf(port: number, queryFile: string, a: Args): Promise<{ qps: number; lost: number; latencyMs: number }> {
  const out = await run('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', queryFile, '-l', String(a.seconds), '-q', String(a.outstanding)], (a.seconds + 20) * 1000);
  const qps = Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const lost = Number(/Queries lost:\s+(\d+)/.exec(out)?.[1] ?? NaN);
  const latencyMs = Number(/Average Latency \(s\):\s+([\d.]+)/.exec(out)?.[1] ?? NaN) * 1000;
  return { qps, lost, latencyMs };
}

const MANIFEST = `apiVersion: v1
kind: Namespace
metadata: { name: testns }
---
apiVersion: v1
kind: Service
metadata: { name: svc1, namespace: testns }
spec:
  ports: [{ name: http, port: 80, targetPort: 80 }]
---
apiVersion: v1
kind: Service
metadata: { name: hdls, namespace: testns }
spec:
  clusterIP: None
  ports: [{ name: http, port: 80, targetPort: 80 }]
---
apiVersion: v1
kind: Endpoints
metadata: { name: hdls, namespace: testns }
subsets:
  - addresses: [{ ip: 127.244.0.1 }, { ip: 127.244.0.2 }, { ip: 127.244.0.3 }]
    ports: [{ name: http, port: 80 }]
`;

/**
 * `kubeloop up` with MANIFEST; resolves once its DNS answers svc1's ClusterIP (bounded), with
 * its DNS port and `stop`.
 */
async function startDaemon(): Promise<{ port: number; clusterIP: string; stop(): Promise<void> }> {
  const d = await launchKubeloop(MANIFEST, [
    '--service-cidr', '127.156.0.0/16', '--pod-cidr', '127.157.0.0/16', '--node-ip', '127.0.156.1',
    '--nodeport-addresses', '127.0.156.1', '--allow-loopback-endpoints',
  ]);
  try {
    const port = Number(/DNS:\s+dig @127\.0\.0\.1 -p (\d+)/.exec(d.out())?.[1] ?? 0);
    if (!port) throw new Error(`no DNS address in:\n${d.out()}`);
    // SERVFAIL until its informers have synced
    for (let i = 0; i < 100; i++) {
      const ip = (await run('dig', ['@127.0.0.1', '-p', String(port), '+short', '+time=1', '+tries=1', 'svc1.testns.svc.cluster.local'], 3000).catch(() => '')).trim();
      if (/^127\.156\.\d+\.\d+$/.test(ip)) return { port, clusterIP: ip, stop: d.stop };
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error("kubeloop's DNS did not answer svc1's ClusterIP");
  } catch (e) {
    await d.stop();
    throw e;
  }
}

const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-dnsbench-'));
  const cleanups: Array<() => Promise<void> | void> = [() => rm(dir, { recursive: true, force: true })];
  try {
    // kubeloop: the daemon, serving the benchmark's names
    const kl = await startDaemon();
    cleanups.unshift(() => kl.stop());
    const clusterIP = kl.clusterIP;

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
    cleanups.unshift(() => kill(dnsmasq));
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

    // the naive baseline: dns2's own server and encoder, answering the A query per request
    const naive = dns2.createServer({
      udp: true,
      handle(request, send) {
        const response = dns2.Packet.createResponseFromRequest(request);
        response.header.aa = 1;
        const q = request.questions[0];
        if (q && q.type === dns2.Packet.TYPE.A && q.name.toLowerCase() === 'svc1.testns.svc.cluster.local') {
          response.answers.push(new dns2.Packet.Resource({ name: q.name, type: dns2.Packet.TYPE.A, class: dns2.Packet.CLASS.IN, ttl: 5, address: clusterIP }));
        } else {
          response.header.rcode = 3;
        }
        void Promise.resolve(send(response)).catch(() => {});
      },
    });
    naive.on('error', () => {});
    naive.on('requestError', () => {});
    const nport = await freePort();
    await naive.listen({ udp: { port: nport, address: '127.0.0.1' } });
    cleanups.unshift(() => naive.close());

    // the ceiling: a Node UDP socket replying with one fixed answer, only the ID patched
    const canned = await new Promise<Buffer>((resolve, reject) => {
      const c = dgram.createSocket('udp4');
      const q = Buffer.from('00000000000100000000000004737663310674657374' + '6e730373766307636c7573746572056c6f63616c0000010001', 'hex');
      c.once('message', (b) => {
        c.close();
        resolve(b);
      });
      c.once('error', reject);
      c.send(q, kl.port, '127.0.0.1');
    });
    const eport = await freePort();
    const echo = spawn(process.execPath, [join(ROOT, 'bench', 'udp-echo.mjs'), String(eport), canned.toString('hex')], { stdio: ['ignore', 'pipe', 'pipe'] });
    cleanups.unshift(() => kill(echo));
    await new Promise<void>((resolve, reject) => {
      let err = '';
      echo.stderr!.on('data', (c: Buffer) => (err += c.toString()));
      echo.stdout!.once('data', () => resolve());
      echo.once('exit', (code) => reject(new Error(`bench/udp-echo.mjs exited ${code}: ${err}`)));
    });

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
    await dnsperf(kl.port, queryFile, { ...a, seconds: 2 });
    const servers = { kubeloop: kl.port, dnsmasq: mport, ...(a.mix === 'a' ? { naiveDns2: nport, nodeEcho: eport } : {}) } as Record<string, number>;
    const qps: Record<string, number[]> = {};
    const rounds: Array<Record<string, { qps: number; lost: number; latencyMs: number }>> = [];
    for (let r = 0; r < a.rounds; r++) {
      const round: Record<string, { qps: number; lost: number; latencyMs: number }> = {};
      for (const [name, port] of Object.entries(servers)) {
        round[name] = await dnsperf(port, queryFile, a);
        (qps[name] ??= []).push(round[name].qps);
      }
      rounds.push(round);
      console.log(`round ${r + 1}: ` + Object.entries(round).map(([n, x]) => `${n} ${x.qps.toFixed(0)} qps (${x.latencyMs.toFixed(2)} ms avg, lost ${x.lost})`).join(' · '));
    }
    const med = Object.fromEntries(Object.entries(qps).map(([n, xs]) => [n, median(xs)]));
    console.log(
      `median over ${a.rounds} × ${a.seconds}s, mix=${a.mix}, ${a.outstanding} outstanding: ` +
        Object.entries(med).map(([n, x]) => `${n} ${x.toFixed(0)} qps`).join(', ') +
        ` — kubeloop/dnsmasq ${(med.kubeloop / med.dnsmasq).toFixed(2)}` +
        (med.naiveDns2 ? `, kubeloop/naive dns2 ${(med.kubeloop / med.naiveDns2).toFixed(1)}` : '') +
        (med.nodeEcho ? `, kubeloop/node echo ${(med.kubeloop / med.nodeEcho).toFixed(2)}, node echo/dnsmasq ${(med.nodeEcho / med.dnsmasq).toFixed(2)}` : ''),
    );
    if (a.out) {
      await writeFile(a.out, JSON.stringify({ date: new Date().toISOString(), args: a, medianQps: med, ratio: med.kubeloop / med.dnsmasq, rounds }, null, 2) + '\n');
    }
  } finally {
    for (const c of cleanups) await c();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
