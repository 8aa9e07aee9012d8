/**
 * What a pod's resolver pays for reaching the cluster DNS on port 53 of the kube-dns ClusterIP
 * (the proxy's UDP/TCP portal in front of the server) instead of the server's own --dns-addr,
 * side by side in one run of one daemon:
 * - latency: one query at a time (a resolver's getaddrinfo), UDP, medians and p99 per path;
 * - TCP: one query per fresh connection (what a truncated answer costs), medians.
 * Rounds alternate the two paths so that machine noise hits both alike.
 *
 *   node --import tsx bench/dns-port53.ts [--queries 2000] [--rounds 3] [--out file.json]
 *
 * Needs the privilege to bind port 53 (root, or net.ipv4.ip_unprivileged_port_start=0).
 * Loopback only; bounded by --queries × --rounds; the daemon is stopped at the end.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { writeFile } from 'node:fs/promises';
import { launchKubeloop } from './contenders.js';

interface Args {
  queries: number;
  rounds: number;
  out?: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { queries: 2000, rounds: 3 };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    switch (argv[i]) {
      case '--queries': a.queries = Math.min(100_000, Math.max(10, Number(v))); i++; break;
      case '--rounds': a.rounds = Math.min(10, Math.max(1, Number(v))); i++; break;
      case '--out': a.out = v; i++; break;
      default: throw new Error(`unknown argument ${argv[i]} (expected --queries, --rounds, --out)`);
    }
  }
  return a;
}

/** an A query for `name` with id `id` */
function query(name: string, id: number): Buffer {
  const labels = name.split('.').flatMap((l) => [Buffer.from([l.length]), Buffer.from(l)]);
  const head = Buffer.alloc(12);
  head.writeUInt16BE(id, 0);
  head.writeUInt16BE(0x0100, 2); // RD
  head.writeUInt16BE(1, 4);
  return Buffer.concat([head, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

const NAME = 'kubernetes.default.svc.cluster.local';

/** `n` sequential UDP queries; per-query latencies in ms */
async function udpLatencies(host: string, port: number, n: number): Promise<number[]> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const out: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const id = i & 0xffff;
      const t0 = process.hrtime.bigint();
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no answer from ${host}:${port} in 2 s`)), 2000);
        const onMsg = (m: Buffer) => {
          if (m.readUInt16BE(0) !== id) return;
          clearTimeout(timer);
          s.off('message', onMsg);
          resolve();
        };
        s.on('message', onMsg);
        s.send(query(NAME, id), port, host);
      });
      out.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  } finally {
    s.close();
  }
  return out;
}

/** `n` queries, each on a fresh TCP connection; latencies (connect + answer) in ms */
async function tcpLatencies(host: string, port: number, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const q = query(NAME, i & 0xffff);
    const framed = Buffer.concat([Buffer.from([q.length >> 8, q.length & 0xff]), q]);
    const t0 = process.hrtime.bigint();
    await new Promise<void>((resolve, reject) => {
      const c = net.connect({ host, port }, () => c.write(framed));
      let got = Buffer.alloc(0);
      const timer = setTimeout(() => c.destroy(new Error(`no answer from ${host}:${port} in 2 s`)), 2000);
      c.on('data', (b: Buffer) => {
        got = Buffer.concat([got, b]);
        if (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) {
          clearTimeout(timer);
          c.end();
          resolve();
        }
      });
      c.on('error', (e) => (clearTimeout(timer), reject(e)));
    });
    out.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return out;
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const median = (xs: number[]): number => pct(xs, 50);

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const d = await launchKubeloop('', ['--pod-cidr', '127.87.0.0/16', '--service-cidr', '127.88.0.0/16', '--lb-pool', '127.89.0.0/16', '--node-ip', '127.0.87.1', '--nodeport-addresses', '127.0.87.1']);
  try {
    const direct = /dig @127\.0\.0\.1 -p (\d+)/.exec(d.out())?.[1];
    if (!direct) throw new Error(`no DNS line in:\n${d.out()}`);
    if (!d.out().includes('127.88.0.10:53')) throw new Error(`kube-dns is not on 127.88.0.10:53 (no privilege for port 53?):\n${d.out()}`);
    const paths = { direct: ['127.0.0.1', Number(direct)], port53: ['127.88.0.10', 53] } as const;
    const udp: Record<string, number[]> = { direct: [], port53: [] };
    const tcp: Record<string, number[]> = { direct: [], port53: [] };
    await udpLatencies('127.88.0.10', 53, 200); // warm both paths
    await udpLatencies('127.0.0.1', Number(direct), 200);
    for (let r = 0; r < a.rounds; r++) {
      const order = r % 2 === 0 ? (['direct', 'port53'] as const) : (['port53', 'direct'] as const);
      for (const k of order) {
        udp[k].push(...(await udpLatencies(paths[k][0], paths[k][1], a.queries)));
        tcp[k].push(...(await tcpLatencies(paths[k][0], paths[k][1], Math.ceil(a.queries / 10))));
      }
    }
    const result = {
      date: new Date().toISOString(),
      queries: a.queries,
      rounds: a.rounds,
      udp: Object.fromEntries(Object.entries(udp).map(([k, v]) => [k, { p50Ms: median(v), p99Ms: pct(v, 99), n: v.length }])),
      tcp: Object.fromEntries(Object.entries(tcp).map(([k, v]) => [k, { p50Ms: median(v), p99Ms: pct(v, 99), n: v.length }])),
      ratio: { udpP50: median(udp.port53) / median(udp.direct), tcpP50: median(tcp.port53) / median(tcp.direct) },
    };
    console.log(JSON.stringify(result, null, 2));
    if (a.out) await writeFile(a.out, JSON.stringify(result, null, 2) + '\n');
  } finally {
    await d.stop();
  }
}

await main();
