/**
 * Several machines (issue 19), in the namespace topology of test/multinode: two network
 * namespaces as hosts on one bridge (198.18.0.1, 198.18.0.2), redis in host 1, a daemon in each.
 * From host 1, with wrk:
 *  - req/s (keep-alive) and new connections/s (`Connection: close`) through a ClusterIP whose pods
 *    run on the same host, and through one whose pods run on the other host (every connection
 *    then goes proxy → remote pod listener → HTTP/2 tunnel → the other daemon → pod); the ratio
 *    other/same per round;
 *  - bulk MiB/s of one TCP stream from a pod on host 2 (through the tunnel, to its pod IP as
 *    answered on host 1) against the same source process listening directly on host 2's veth.
 * Rounds interleave the contenders (same, other, same, other …); cells are medians, ratios the
 * medians of per-round ratios.
 *
 *   node --import tsx bench/multinode.ts [--rounds 3] [--seconds 5] [--mb 256] [--out bench/results/multinode]
 *
 * Addresses: 198.18.0.0/24 inside the namespaces it creates, loopback inside them; every loop is
 * bounded (rounds ≤ 10, seconds ≤ 30, MiB ≤ 2048) and everything is torn down at the end.
 */
import { writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { join, relative } from 'node:path';
import { type RunningDaemon, ROOT, startDaemon } from '../test/helpers/daemon.js';
import { type NetnsHost, type NetnsHosts, startNetnsHosts } from '../test/helpers/netns-hosts.js';
import { waitFor } from '../test/helpers/wait.js';
import { fmt, median, pairedRatio } from './stats.js';
import { TRANSFER_DEFAULTS, takeTransferFlag } from './transfer-args.js';

interface Args {
  rounds: number;
  seconds: number;
  mb: number;
  out: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { ...TRANSFER_DEFAULTS, out: join(ROOT, 'bench', 'results', 'multinode') };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    if (takeTransferFlag(a, argv[i], v)) {
      i++;
      continue;
    }
    switch (argv[i]) {
      case '--out': a.out = v; i++; break;
      default: throw new Error(`unknown argument ${argv[i]} (expected --rounds, --seconds, --mb, --out)`);
    }
  }
  return a;
}

const SOURCE = join(ROOT, 'bench', 'bulk-source.mjs');

const manifest = (): string => {
  const deploy = (name: string, node: string, replicas: number, container: string) => `
apiVersion: apps/v1
kind: Deployment
metadata: { name: ${name} }
spec:
  replicas: ${replicas}
  selector: { matchLabels: { app: ${name} } }
  template:
    metadata: { labels: { app: ${name} } }
    spec:
      nodeSelector: { kubernetes.io/hostname: ${node} }
      containers:
${container}
---`;
  const echo = '        - { name: echo, image: echo, ports: [{ containerPort: 8080 }] }';
  const bulk = `        - name: source
          image: bulk-source
          command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(SOURCE)}, serve]
          ports: [{ containerPort: 9000 }]`;
  const svc = (name: string) => `
apiVersion: v1
kind: Service
metadata: { name: ${name} }
spec:
  selector: { app: ${name} }
  ports: [{ port: 80, targetPort: 8080 }]
---`;
  return [deploy('same', 'host-1', 2, echo), deploy('other', 'host-2', 2, echo), deploy('bulk', 'host-2', 1, bulk), svc('same'), svc('other')].join('\n');
};

interface WrkFigures {
  rps: number;
  errors: number;
  non2xx: number;
}

async function wrkIn(h: NetnsHost, url: string, seconds: number, close: boolean): Promise<WrkFigures> {
  const r = await h.run(['wrk', '-t', '1', '-c', '32', '-d', `${seconds}s`, '--timeout', '5s', ...(close ? ['-H', 'Connection: close'] : []), url], { timeoutMs: (seconds + 20) * 1000 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? NaN);
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(r.stdout);
  if (!Number.isFinite(rps)) throw new Error(`wrk in ${h.ns}: ${r.stderr || r.stdout}`);
  return { rps, errors: se ? se.slice(1).reduce((s, x) => s + Number(x), 0) : 0, non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1] ?? 0) };
}

async function fetchIn(h: NetnsHost, host: string, port: number, mb: number): Promise<number> {
  const r = await h.run([process.execPath, SOURCE, 'fetch', host, String(port), String(mb)], { timeoutMs: 70_000 });
  const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { mbps?: number; mb?: number; error?: string };
  if (!out.mbps || (out.mb ?? 0) < mb) throw new Error(`bulk fetch ${host}:${port}: ${out.error ?? r.stderr ?? 'short'} (${out.mb} MiB)`);
  return out.mbps;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const cleanups: Array<() => unknown> = [];
  const shim = { teardown: (fn: () => unknown) => void cleanups.push(fn) };
  const daemons: RunningDaemon[] = [];
  let lan: NetnsHosts | undefined;
  try {
    lan = await startNetnsHosts(shim, { hosts: 2, redis: true });
    const [h1, h2] = lan.hosts;
    const common = ['--store', lan.redisUrl!, '--service-cidr', '127.211.0.0/16', '--lb-pool', '127.212.0.0/16', '--api-addr', '127.0.0.1:6443', '--dns-addr', '127.0.0.1:1053', '--log-level', 'warn', '--pod-cidr', '127.210.0.0/16'];
    for (const [i, h] of [h1, h2].entries()) {
      // the second joins with the token the first made (kept in its state dir)
      const join_ = i === 0 ? [] : ['--join', (await readFile(join(daemons[0].stateDir, 'join-token'), 'utf8')).trim()];
      daemons.push(await startDaemon([...common, '--node-name', `host-${i + 1}`, '--node-ip', h.ip, ...join_], { prefix: h.wrap([]), timeoutMs: 60_000 }));
    }
    const kubeconfig = join(daemons[0].stateDir, 'kubeconfig');
    const applied = await h1.run(['kubectl', '--kubeconfig', kubeconfig, 'apply', '-f', '-'], { input: manifest() });
    if (applied.code !== 0) throw new Error(`apply: ${applied.stderr}`);
    const ready = await waitFor(async () => {
      const r = await h1.run(['kubectl', '--kubeconfig', kubeconfig, 'get', 'pods', '-o', 'json']);
      const items = (JSON.parse(r.stdout || '{"items":[]}') as { items: Array<{ metadata: { labels?: Record<string, string> }; status: { podIP?: string; conditions?: Array<{ type: string; status: string }> } }> }).items;
      const ok = items.filter((p) => p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
      return ok.length === 5 ? ok : undefined;
    }, { what: '5 ready pods', timeoutMs: 90_000, intervalMs: 500 });
    const bulkIP = ready.find((p) => p.metadata.labels?.app === 'bulk')!.status.podIP!;
    const ip = async (svc: string): Promise<string> => (await h1.run(['kubectl', '--kubeconfig', kubeconfig, 'get', 'svc', svc, '-o', 'jsonpath={.spec.clusterIP}'])).stdout.trim();
    const targets = { same: `http://${await ip('same')}/`, other: `http://${await ip('other')}/` };
    for (const url of Object.values(targets)) {
      await waitFor(async () => (await h1.run(['curl', '-s', '--max-time', '2', url])).stdout.includes('pod='), { what: url, timeoutMs: 30_000, intervalMs: 200 });
    }
    // the same source process, straight over the veth (host 2's address)
    h2.spawn([process.execPath, SOURCE, 'serve', h2.ip, '9001']);
    await waitFor(async () => (await fetchIn(h1, h2.ip, 9001, 1).catch(() => 0)) > 0, { what: 'the direct source', timeoutMs: 10_000, intervalMs: 100 });
    await waitFor(async () => (await fetchIn(h1, bulkIP, 9000, 1).catch(() => 0)) > 0, { what: 'the bulk pod through the tunnel', timeoutMs: 20_000, intervalMs: 200 });
    // warm-up: sessions, JIT
    for (const url of Object.values(targets)) await wrkIn(h1, url, 1, false);

    const raw = { keepalive: { same: [] as number[], other: [] as number[] }, close: { same: [] as number[], other: [] as number[] }, bulk: { tunnel: [] as number[], direct: [] as number[] } };
    const errors: string[] = [];
    for (let r = 0; r < args.rounds; r++) {
      for (const mode of ['keepalive', 'close'] as const) {
        for (const where of ['same', 'other'] as const) {
          const f = await wrkIn(h1, targets[where], args.seconds, mode === 'close');
          raw[mode][where].push(f.rps);
          if (f.errors || f.non2xx) errors.push(`round ${r + 1} ${mode} ${where}: ${f.errors} socket errors, ${f.non2xx} non-2xx`);
          process.stderr.write(`round ${r + 1} ${mode} ${where}: ${fmt(f.rps)} req/s\n`);
        }
      }
      raw.bulk.tunnel.push(await fetchIn(h1, bulkIP, 9000, args.mb));
      raw.bulk.direct.push(await fetchIn(h1, h2.ip, 9001, args.mb));
      process.stderr.write(`round ${r + 1} bulk: tunnel ${fmt(raw.bulk.tunnel.at(-1))} MiB/s, direct ${fmt(raw.bulk.direct.at(-1))} MiB/s\n`);
    }
    const rows = [
      ['req/s, keep-alive (wrk -c 32)', raw.keepalive.same, raw.keepalive.other, 'other/same'],
      ['new connections/s (Connection: close)', raw.close.same, raw.close.other, 'other/same'],
      ['bulk MiB/s, one stream from a host-2 pod', raw.bulk.direct, raw.bulk.tunnel, 'tunnel/direct'],
    ] as const;
    const load = os.loadavg().map((x) => x.toFixed(1)).join(' ');
    const md = [
      '# bench/multinode.ts — ClusterIP to pods on the same host vs the other host, and the tunnel\'s bulk rate',
      '',
      `\`node --import tsx bench/multinode.ts --rounds ${args.rounds} --seconds ${args.seconds} --mb ${args.mb}\`: two network namespaces as hosts on one bridge`,
      `(veth, 198.18.0.1/.2), redis in host 1, a kubeloop daemon in each; load from host 1 with wrk (1 thread, 32 connections).`,
      `${os.cpus().length} cores shared by wrk, both daemons, the pods and redis; load average at the end: ${load}.`,
      '',
      '| figure | same host / direct | other host / tunnel | ratio |',
      '|---|---|---|---|',
      ...rows.map(([what, a, b, label]) => `| ${what} | ${fmt(median(a))} | ${fmt(median(b))} | ${label} ${fmt(pairedRatio(b, a))} |`),
      '',
      'Rows 1–2: "same host" is a ClusterIP whose 2 echo pods run on host 1 (proxy → pod, all on host 1); "other host" one whose',
      '2 pods run on host 2 (host 1\'s proxy → the pod IP answered on host 1 → HTTP/2 CONNECT tunnel over TLS → host 2\'s daemon → pod).',
      'Row 3: one TCP stream of the same source process, from the pod through the tunnel (its pod IP on host 1) vs listening on host 2\'s',
      'veth address and fetched directly.',
      '',
      `Raw per round: ${JSON.stringify(raw)}`,
      ...(errors.length ? ['', 'Errors:', ...errors.map((e) => `- ${e}`)] : []),
      '',
    ].join('\n');
    writeFileSync(`${args.out}.md`, md);
    writeFileSync(`${args.out}.json`, `${JSON.stringify({ args: { ...args, out: relative(ROOT, args.out) }, raw, errors, loadavg: os.loadavg(), cpus: os.cpus().length }, null, 2)}\n`);
    process.stdout.write(md);
  } finally {
    for (const d of daemons.reverse()) await d.stop().catch(() => undefined);
    for (const fn of cleanups.reverse()) await fn();
  }
}

await main();
