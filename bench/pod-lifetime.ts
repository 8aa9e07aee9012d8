/**
 * Orphans after SIGKILLs of a daemon running 20 `command:` pods (plain, setsid'd child,
 * double-forked orphan, `env -i`): `node --import tsx bench/pod-lifetime.ts [rounds]`.
 * Each round starts `up` on the same state dir, waits for every marked process, SIGKILLs the
 * daemon and polls until none is left (5 s at most); prints the time from the SIGKILL to the
 * last one gone (p50/max) and the processes left after each round (must be 0).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { startDaemon } from '../test/helpers/daemon.js';
import { waitFor } from '../test/helpers/wait.js';

const rounds = Number(process.argv[2] ?? 10);
const tag = randomBytes(4).readUInt32BE(0).toString();
const kinds = [
  (m: string) => ['sleep', m],
  (m: string) => ['sh', '-c', `setsid sleep ${m} & exec sleep ${m}`],
  (m: string) => ['sh', '-c', `(setsid sh -c 'sleep ${m}' &); exec sleep ${m}`],
  (m: string) => ['env', '-i', 'sleep', m],
];
const perKind = [1, 2, 2, 1];
const pods = Array.from({ length: 20 }, (_, i) => ({ name: `p${i}`, mark: `37${String(i).padStart(2, '0')}.${tag}`, kind: i % 4 }));
const expected = pods.reduce((n, p) => n + perKind[p.kind], 0);
const marks = new Set(pods.map((p) => p.mark));

function live(): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (basename(argv[0]) === 'sleep' && marks.has(argv[1]) && stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z') out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

const stateDir = await mkdtemp(join(tmpdir(), 'kubeloop-bench-lifetime-'));
const manifest = `${stateDir}.yaml`;
writeFileSync(manifest, pods.map((p) => JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: p.name }, spec: { containers: [{ name: 'c', image: 'busybox', command: kinds[p.kind](p.mark) }] } })).join('\n---\n'));
const args = ['-f', manifest, '--service-cidr', '127.134.0.0/16', '--pod-cidr', '127.234.0.0/16', '--lb-pool', '127.144.0.0/16', '--nodeport-addresses', '127.0.34.8', '--node-ip', '127.0.34.8', '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--log-level', 'warn'];
const gone: number[] = [];
const left: number[] = [];
const copies: number[] = [];
try {
  for (let r = 0; r < rounds; r++) {
    const d = await startDaemon(args, { stateDir });
    await waitFor(() => live().length >= expected, { timeoutMs: 60_000, what: `${expected} pod processes` });
    await new Promise((res) => setTimeout(res, 500));
    copies.push(live().length);
    const exited = new Promise((res) => d.proc.once('exit', res));
    d.proc.kill('SIGKILL');
    const t0 = Date.now();
    await exited;
    const at = await waitFor(() => (live().length === 0 ? Date.now() : 0), { timeoutMs: 5000 }).catch(() => 0);
    gone.push(at ? at - t0 : NaN);
    left.push(live().length);
    for (const pid of live()) process.kill(pid, 'SIGKILL');
  }
} finally {
  for (const pid of live()) process.kill(pid, 'SIGKILL');
  await rm(stateDir, { recursive: true, force: true });
  await rm(manifest, { force: true });
}
const sorted = gone.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
console.log(JSON.stringify({
  rounds,
  podProcessesPerRound: expected,
  processesSeenPerRound: copies,
  leftAfterEachRound: left,
  orphansTotal: left.reduce((a, b) => a + b, 0),
  msToLastGone: { p50: sorted[sorted.length >> 1], max: sorted.at(-1), all: gone },
}));
