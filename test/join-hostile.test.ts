/**
 * A hostile pass over joining machines (issue 19), as a user would meet it with the real CLI on
 * one real redis-server (each cluster in its own Redis database): the store unreachable or dying
 * mid-join, SIGKILL at several points of a join and a restart, pod CIDR exhaustion, garbled
 * tokens, and two daemons racing for one --node-name. The bar: one `kubeloop:` line naming the
 * problem and the fix, exit code 1 (2 for a usage error the options catch), nothing half-done in
 * the store (no Node, Lease or `~cidr/…` record of the refused node), or a daemon that goes on.
 */
import t from 'tap';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { ROOT, type RunningDaemon, startDaemon } from './helpers/daemon.js';
import { startRedisServer } from './helpers/redis-server.js';
import { waitFor } from './helpers/wait.js';
import { writeFileSync } from 'node:fs';
import pino from 'pino';
import { takePidFile } from '../src/cli/pid-file.js';

const common = (url: string, podCidr = '127.234.0.0/16'): string[] => [
  '--store', url,
  '--service-cidr', '127.239.0.0/16',
  '--pod-cidr', podCidr,
  '--lb-pool', '127.242.0.0/16',
  '--api-addr', '127.0.0.1:0',
  '--dns-addr', '127.0.0.1:0',
  '--metrics-addr', '127.0.0.1:0',
  '--tunnel-port', '0',
  '--log-level', 'warn',
  '--ready-timeout', '1s',
];
const node = (name: string, ip: string): string[] => ['--node-name', name, '--node-ip', ip, '--nodeport-addresses', ip];

interface Up {
  proc: ChildProcess;
  out: () => string;
  err: () => string;
  exited: Promise<number | null>;
}

/** `kubeloop up` without waiting for anything: the test times its own kills */
function spawnUp(stateDir: string, args: string[], env: NodeJS.ProcessEnv = {}): Up {
  const proc = spawn(process.execPath, [join(ROOT, 'bin', 'kubeloop.mjs'), 'up', '--state-dir', stateDir, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '', ...env },
  });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const timer = setTimeout(() => proc.kill('SIGKILL'), 45_000);
  void exited.then(() => clearTimeout(timer));
  return { proc, out: () => out, err: () => err, exited };
}

/** the `kubeloop:` lines of stderr (log lines are JSON) */
const problemLines = (stderr: string): string[] => stderr.split('\n').filter((l) => l.startsWith('kubeloop:'));

t.test('joining machines, hostile cases', async (t) => {
  const redis = await startRedisServer({ appendonly: true });
  t.teardown(() => redis.close());
  const dirs: string[] = [];
  const procs: Up[] = [];
  const daemons: RunningDaemon[] = [];
  t.teardown(async () => {
    for (const p of procs) if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    for (const d of daemons.reverse()) await d.stop('SIGKILL');
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const newDir = async (): Promise<string> => {
    const d = await mkdtemp(join(tmpdir(), 'kubeloop-jh-'));
    dirs.push(d);
    return d;
  };
  const up = (stateDir: string, args: string[], env?: NodeJS.ProcessEnv): Up => {
    const u = spawnUp(stateDir, args, env);
    procs.push(u);
    return u;
  };
  const running = async (u: Up, what: string): Promise<void> => {
    await waitFor(() => {
      if (u.proc.exitCode !== null) throw new Error(`${what} exited ${u.proc.exitCode}: ${u.err()}`);
      return u.out().includes('kubeloop is running');
    }, { what, timeoutMs: 30_000, intervalMs: 25 });
  };
  /** what the store of Redis database `db` holds for nodes: Nodes, node Leases, slices (slice → owner Node) */
  const clients = new Map<number, Redis>();
  t.teardown(() => {
    for (const c of clients.values()) c.disconnect();
  });
  const storeOf = async (db: number): Promise<{ nodes: string[]; leases: string[]; cidrs: Record<string, string> }> => {
    let c = clients.get(db);
    if (!c) clients.set(db, (c = new Redis({ port: redis.port, host: '127.0.0.1', db, maxRetriesPerRequest: 1, lazyConnect: false })));
    const keys = await c.keys('kubeloop:r:*');
    const cidrs: Record<string, string> = {};
    for (const k of keys.filter((k) => k.startsWith('kubeloop:r:~cidr/'))) cidrs[k.slice('kubeloop:r:~cidr/'.length)] = ((await c.hget(k, 'v')) ?? '').replace(/^Node\/\//, '');
    return {
      nodes: keys.filter((k) => k.startsWith('kubeloop:r:Node//')).map((k) => k.slice('kubeloop:r:Node//'.length)).sort(),
      leases: keys.filter((k) => k.startsWith('kubeloop:r:Lease/kube-node-lease/')).map((k) => k.slice('kubeloop:r:Lease/kube-node-lease/'.length)).sort(),
      cidrs,
    };
  };
  const podCidrOf = async (db: number, name: string): Promise<string | undefined> => {
    const v = await clients.get(db)?.hget(`kubeloop:r:Node//${name}`, 'v');
    return v ? (JSON.parse(v) as { spec?: { podCIDR?: string } }).spec?.podCIDR : undefined;
  };
  /** every slice names a Node that exists, and no Node holds two */
  const noLeakedSlices = (s: { nodes: string[]; cidrs: Record<string, string> }): boolean =>
    Object.values(s.cidrs).every((n) => s.nodes.includes(n)) && new Set(Object.values(s.cidrs)).size === Object.values(s.cidrs).length;

  const url0 = `${redis.url}/0`;
  const first = await startDaemon([...common(url0), ...node('jh-a', '127.241.0.1')]);
  daemons.push(first);
  const token = (await readFile(join(first.stateDir, 'join-token'), 'utf8')).trim();

  await t.test('1a. the store is unreachable (wrong port): one line naming --store, exit 1', async (t) => {
    const u = up(await newDir(), [...common('redis://127.0.0.1:1'), ...node('jh-x', '127.241.0.9'), '--join', token]);
    t.equal(await u.exited, 1);
    const lines = problemLines(u.err());
    t.equal(lines.length, 1, u.err());
    t.match(lines[0], /^kubeloop: the store \(redis at redis:\/\/127\.0\.0\.1:1\) is unreachable: connect ECONNREFUSED .*check the host and port of --store/);
    t.notMatch(u.err(), /\n\s+at /, 'no stack trace');
  });

  await t.test('1b. the store dies while a daemon joins, and comes back: one line, nothing of the node left', async (t) => {
    const dir = await newDir();
    const u = up(dir, [...common(url0), ...node('jh-b', '127.241.0.2'), '--join', token]);
    await waitFor(async () => (await storeOf(0)).leases.includes('jh-b'), { what: 'the joining node lease', timeoutMs: 30_000, intervalMs: 5 });
    await redis.stop('SIGTERM');
    // the daemon says what happened at once; it cleans up once the store answers again
    await waitFor(() => problemLines(u.err()).length > 0, { what: 'the error line', timeoutMs: 20_000, intervalMs: 25 });
    await redis.restart();
    t.equal(await u.exited, 1);
    const lines = problemLines(u.err());
    t.equal(lines.length, 1, u.err());
    t.match(lines[0], /^kubeloop: the store \(redis at redis:\/\/127\.0\.0\.1:\d+\/0\) is unreachable: the connection is down.*start kubeloop again once the store answers/);
    const s = await storeOf(0);
    t.notOk(s.nodes.includes('jh-b'), 'no Node');
    t.notOk(s.leases.includes('jh-b'), 'no Lease');
    t.ok(noLeakedSlices(s), JSON.stringify(s));

    // 1c. it starts again (same state dir: the token is kept) and rides out an outage after its table
    const again = up(dir, [...common(url0), ...node('jh-b', '127.241.0.2'), '--node-lease-interval', '1s']);
    await running(again, 'jh-b again');
    await redis.stop('SIGTERM');
    await redis.restart();
    const back = Date.now();
    const renewed = async (): Promise<number> => {
      const v = await clients.get(0)?.hget('kubeloop:r:Lease/kube-node-lease/jh-b', 'v');
      return v ? Date.parse((JSON.parse(v) as { spec: { renewTime: string } }).spec.renewTime) : 0;
    };
    await waitFor(async () => (await renewed()) > back, { what: 'the node lease renewed after the outage', timeoutMs: 10_000, intervalMs: 100 });
    t.equal(again.proc.exitCode, null, 'the daemon goes on after the outage');
    again.proc.kill('SIGINT');
    t.equal(await again.exited, 0);
    const after = await storeOf(0);
    t.notOk(after.nodes.includes('jh-b'), 'left the cluster on Ctrl-C');
    t.ok(noLeakedSlices(after), JSON.stringify(after));
  });

  await t.test('2. SIGKILL during a join, then the same state dir again: the same node, its slice, nothing leaked', async (t) => {
    for (const [i, point] of (['lease', 'node', 'running'] as const).entries()) {
      const name = `jh-k${i}`;
      const dir = await newDir();
      const args = [...common(url0), ...node(name, `127.241.0.${20 + i}`)];
      const u = up(dir, [...args, '--join', token]);
      if (point === 'running') await running(u, name);
      else await waitFor(async () => (point === 'lease' ? (await storeOf(0)).leases : (await storeOf(0)).nodes).includes(name), { what: `${name}'s ${point}`, timeoutMs: 30_000, intervalMs: 2 });
      u.proc.kill('SIGKILL');
      await u.exited;
      const sliceAtKill = await podCidrOf(0, name);
      const again = up(dir, args);
      await running(again, `${name} again`);
      const s = await storeOf(0);
      t.ok(s.nodes.includes(name) && s.leases.includes(name), `${point}: ${name} is back`);
      if (sliceAtKill) t.equal(await podCidrOf(0, name), sliceAtKill, `${point}: the same slice ${sliceAtKill}`);
      t.equal(Object.values(s.cidrs).filter((n) => n === name).length, 1, `${point}: one slice`);
      t.ok(noLeakedSlices(s), JSON.stringify(s));
      if (point !== 'running') {
        again.proc.kill('SIGINT');
        t.equal(await again.exited, 0);
        continue;
      }
      // SIGKILL, then the same state dir with ANOTHER --node-name: the old node leaves, the new one joins
      again.proc.kill('SIGKILL');
      await again.exited;
      const renamed = up(dir, [...common(url0), ...node(`${name}-new`, `127.241.0.${20 + i}`)]);
      await running(renamed, 'the renamed node');
      const r = await storeOf(0);
      t.ok(r.nodes.includes(`${name}-new`), 'the new name joined');
      t.notOk(r.nodes.includes(name), 'the old Node of this state dir is gone');
      t.notOk(r.leases.includes(name), 'and its Lease');
      t.ok(noLeakedSlices(r), JSON.stringify(r));
      renamed.proc.kill('SIGINT');
      t.equal(await renamed.exited, 0);
    }
  });

  await t.test('3. pod CIDR exhaustion: the third node is refused in one line, and joins once the second left', async (t) => {
    const url1 = `${redis.url}/1`;
    const args = (n: string, ip: string): string[] => [...common(url1, '127.234.64.0/23'), ...node(n, ip)];
    const e1 = up(await newDir(), args('jh-e1', '127.241.1.1'));
    await running(e1, 'jh-e1');
    const e1Dir = e1.proc.spawnargs[e1.proc.spawnargs.indexOf('--state-dir') + 1];
    const tok = (await readFile(join(e1Dir, 'join-token'), 'utf8')).trim();
    const e2 = up(await newDir(), [...args('jh-e2', '127.241.1.2'), '--join', tok]);
    await running(e2, 'jh-e2');
    const e3Dir = await newDir();
    const e3 = up(e3Dir, [...args('jh-e3', '127.241.1.3'), '--join', tok]);
    t.equal(await e3.exited, 1);
    const lines = problemLines(e3.err());
    t.equal(lines.length, 1, e3.err());
    t.match(lines[0], /^kubeloop: no free \/24 pod CIDR slice for node jh-e3: the 2 slices of --pod-cidr 127\.234\.64\.0\/23 are held by nodes jh-e1, jh-e2: stop one of them with Ctrl-C \(it leaves and frees its slice\), or make the cluster with a larger --pod-cidr or --node-cidr-mask-size/);
    const s = await storeOf(1);
    t.same(s.nodes, ['jh-e1', 'jh-e2']);
    t.same(s.leases, ['jh-e1', 'jh-e2'], 'the refused node left no Lease');
    t.same(Object.keys(s.cidrs).sort(), ['127.234.64.0/24', '127.234.65.0/24']);
    e2.proc.kill('SIGINT');
    t.equal(await e2.exited, 0);
    const e3b = up(e3Dir, args('jh-e3', '127.241.1.3'));
    await running(e3b, 'jh-e3 after jh-e2 left');
    const s2 = await storeOf(1);
    t.same(s2.nodes, ['jh-e1', 'jh-e3']);
    t.ok(noLeakedSlices(s2), JSON.stringify(s2));
    e3b.proc.kill('SIGINT');
    t.equal(await e3b.exited, 0);
    e1.proc.kill('SIGINT');
    t.equal(await e1.exited, 0);

    // 4d (here: this cluster's token is a valid-looking token of ANOTHER cluster for db 0)
    const other = up(await newDir(), [...common(url0), ...node('jh-t4', '127.241.0.44'), '--join', tok]);
    t.equal(await other.exited, 1);
    t.same(problemLines(other.err()).length, 1, other.err());
    t.match(problemLines(other.err())[0], /the join token given is not this cluster's: pass --join with the token/);
  });

  await t.test('4. garbled tokens', async (t) => {
    const cases: Array<{ what: string; join?: string; env?: string; code: number; line: RegExp }> = [
      { what: 'empty', join: '', code: 1, line: /this store holds a cluster already: add --join TOKEN/ },
      { what: '10 KB long', join: 'x'.repeat(10_240), code: 1, line: /the join token given is not this cluster's: pass --join/ },
      { what: 'with a newline', join: `${token}\nmore`, code: 2, line: /^kubeloop: --join: the token is the word the first daemon printed/ },
      { what: '--join and $KUBELOOP_JOIN_TOKEN differ', join: token, env: `${token}x`, code: 2, line: /^kubeloop: --join and \$KUBELOOP_JOIN_TOKEN give different tokens: give one/ },
    ];
    const runs = await Promise.all(
      cases.map(async (c, i) => {
        const u = up(await newDir(), [...common(url0), ...node(`jh-t${i}`, `127.241.0.${40 + i}`), ...(c.join !== undefined ? ['--join', c.join] : [])], c.env ? { KUBELOOP_JOIN_TOKEN: c.env } : {});
        return { c, code: await u.exited, err: u.err() };
      }),
    );
    for (const { c, code, err } of runs) {
      t.equal(code, c.code, `${c.what}: exit code`);
      const lines = problemLines(err);
      t.equal(lines.length, 1, `${c.what}: ${err}`);
      t.match(lines[0], c.line, c.what);
      t.ok(lines[0].length < 600, `${c.what}: the line does not echo the 10 KB token`);
    }
    const s = await storeOf(0);
    t.notOk(s.nodes.some((n) => n.startsWith('jh-t')) || s.leases.some((n) => n.startsWith('jh-t')), 'no refused node registered anything');
  });

  await t.test('5. two daemons with one --node-name at the same instant: one runs it, the other is refused in one line', async (t) => {
    const args = (ip: string): string[] => [...common(url0), ...node('jh-r', ip), '--join', token];
    const [a, b] = [up(await newDir(), args('127.241.0.51')), up(await newDir(), args('127.241.0.52'))];
    const outcome = async (u: Up): Promise<'running' | 'refused'> => {
      await waitFor(() => u.proc.exitCode !== null || u.out().includes('kubeloop is running'), { what: 'a racer', timeoutMs: 30_000, intervalMs: 25 });
      return u.proc.exitCode === null ? 'running' : 'refused';
    };
    const res = await Promise.all([outcome(a), outcome(b)]);
    t.same([...res].sort(), ['refused', 'running']);
    const loser = res[0] === 'refused' ? a : b;
    const winner = res[0] === 'refused' ? b : a;
    t.equal(loser.proc.exitCode, 1);
    const lines = problemLines(loser.err());
    t.equal(lines.length, 1, loser.err());
    t.match(lines[0], /^kubeloop: node jh-r is run by another daemon .*give this one its own --node-name/);
    const s = await storeOf(0);
    t.equal(Object.values(s.cidrs).filter((n) => n === 'jh-r').length, 1, 'one slice');
    t.ok(noLeakedSlices(s), JSON.stringify(s));
    winner.proc.kill('SIGINT');
    t.equal(await winner.exited, 0);
  });
});

t.test('a SIGKILLed daemon its parent has not reaped yet (a zombie) does not hold the state dir', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-jh-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // a parent that forks a child, lets it die and does not wait for it: the child stays a zombie
  const parent = spawn('python3', ['-c', 'import os,sys,time\npid=os.fork()\nif pid==0: os._exit(0)\nprint(pid,flush=True)\ntime.sleep(30)'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => void parent.kill('SIGKILL'));
  let out = '';
  parent.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  const zombie = Number(await waitFor(() => out.trim(), { what: 'the child pid', timeoutMs: 10_000 }));
  await waitFor(async () => (await readFile(`/proc/${zombie}/stat`, 'utf8')).split(') ')[1]?.startsWith('Z'), { what: 'a zombie', timeoutMs: 5_000 });
  writeFileSync(join(dir, 'kubeloop.pid'), `${zombie}\n`);
  t.doesNotThrow(() => takePidFile(dir, pino({ level: 'silent' })), 'the dead daemon\'s pid file is taken over');
  t.equal((await readFile(join(dir, 'kubeloop.pid'), 'utf8')).split(' ')[0], String(process.pid));
});
