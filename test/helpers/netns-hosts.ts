/**
 * Hosts for multi-machine tests: N network namespaces joined by a bridge, as N machines on one
 * LAN. The bridge lives in a namespace of its own; each host has one veth (`eth0`) whose peer is
 * a port of that bridge, an address 198.18.0.<i>/24 (i = 1..N) and its own loopback (so each host
 * has its own 127/8: pod IPs of one host are unreachable from another, as on real machines).
 * Nothing is created in the test runner's namespace: veths are made inside the namespaces.
 *
 *   const lan = await startNetnsHosts(t, { hosts: 2, redis: true });
 *   lan.hosts[1].ip                                   // '198.18.0.2'
 *   await lan.hosts[0].run(['curl', '-s', 'http://198.18.0.2:30008/'])  // { code, stdout, stderr }
 *   const p = lan.hosts[1].spawn(['node', 'x.mjs'])   // a ChildProcess inside host 2
 *   lan.redisUrl                                      // 'redis://198.18.0.1:6379' (host 1)
 *
 * Names are `kl<pid>n<k>-…` (one test file is one process, so parallel files never collide);
 * `close()` (registered on `t.teardown`, also run synchronously at process exit) kills every
 * process still inside the namespaces and deletes them, which removes the veths and the bridge.
 * A namespace left by a runner that died (its pid gone) is swept at the next start.
 */
import { type ChildProcess, type SpawnOptions, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from './wait.js';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface NetnsHost {
  /** the namespace's name (for `ip netns exec <ns> …` or `ip -n <ns> …`) */
  ns: string;
  /** 198.18.0.<index+1> */
  ip: string;
  /** runs `argv` inside this host and resolves when it exits (never rejects; killed after timeoutMs, default 30 s) */
  run(argv: string[], opts?: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv }): Promise<RunResult>;
  /** starts `argv` inside this host; the process is killed by `close()` if still running */
  spawn(argv: string[], opts?: SpawnOptions): ChildProcess;
  /** `ip netns exec <ns>` + argv: to hand to another spawner (e.g. startDaemon's `prefix`) */
  wrap(argv: string[]): string[];
}

export interface NetnsHosts {
  hosts: NetnsHost[];
  /** the bridge's namespace */
  bridgeNs: string;
  /** `redis://198.18.0.1:6379` when started with `redis: true` */
  redisUrl?: string;
  /** kills what runs inside, deletes the namespaces; idempotent */
  close(): Promise<void>;
}

export interface NetnsHostsOptions {
  hosts: number;
  /** start a real redis-server in host 1 bound to 198.18.0.1:6379 */
  redis?: boolean;
}

let counter = 0;
const PREFIX_RE = /^kl(\d+)n\d+-/;

function ip(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('ip', args, { timeout: 10_000 }, (err, _out, stderr) => (err ? reject(new Error(`ip ${args.join(' ')}: ${stderr || err.message}`)) : resolve()));
  });
}

function listNamespaces(): string[] {
  try {
    return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[0])
      .filter(Boolean);
  } catch {
    return [];
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** kills everything inside `ns` and deletes it, synchronously (teardown and exit paths) */
function destroyNamespaceSync(ns: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  } catch {
    // namespace already gone
  }
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  } catch {
    // already gone
  }
}

/** namespaces of runners that died without tearing down */
function sweepStale(): void {
  for (const ns of listNamespaces()) {
    const m = PREFIX_RE.exec(ns);
    if (m && !pidAlive(Number(m[1]))) destroyNamespaceSync(ns);
  }
}

function runIn(ns: string, argv: string[], opts: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const p = execFile('ip', ['netns', 'exec', ns, ...argv], { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 << 20, env: opts.env ?? process.env, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) || (err && code === 1 && !stderr ? err.message : '') });
    });
    if (opts.input !== undefined) p.stdin?.on('error', () => undefined).end(opts.input);
  });
}

export async function startNetnsHosts(t: { teardown(fn: () => unknown): void }, o: NetnsHostsOptions): Promise<NetnsHosts> {
  if (o.hosts < 1 || o.hosts > 250) throw new Error('startNetnsHosts: 1..250 hosts');
  sweepStale();
  const base = `kl${process.pid}n${counter++}`;
  const bridgeNs = `${base}-br`;
  const created: string[] = [];
  const spawned = new Set<ChildProcess>();
  let redisDir: string | undefined;
  let closed = false;

  const closeSync = (): void => {
    if (closed) return;
    closed = true;
    for (const p of spawned) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    // hosts first (their processes hold the veths), the bridge last
    for (const ns of [...created].reverse()) destroyNamespaceSync(ns);
  };
  const onExit = (): void => closeSync();
  process.once('exit', onExit);

  const close = async (): Promise<void> => {
    if (closed) return;
    // a gentle stop first: SIGTERM what we spawned and give it a moment to exit on its own
    const waits: Promise<void>[] = [];
    for (const p of spawned) {
      if (p.exitCode !== null || p.signalCode !== null) continue;
      waits.push(new Promise<void>((r) => p.once('exit', () => r())));
      p.kill('SIGTERM');
    }
    await Promise.race([Promise.all(waits), new Promise((r) => setTimeout(r, 3000))]);
    closeSync();
    process.removeListener('exit', onExit);
    if (redisDir) await rm(redisDir, { recursive: true, force: true });
  };
  t.teardown(close);

  const makeHost = (ns: string, addr: string): NetnsHost => {
    const wrap = (argv: string[]): string[] => ['ip', 'netns', 'exec', ns, ...argv];
    return {
      ns,
      ip: addr,
      wrap,
      run: (argv, opts) => runIn(ns, argv, opts),
      spawn: (argv, opts) => {
        const [cmd, ...args] = wrap(argv);
        const p = spawn(cmd, args, opts ?? { stdio: 'ignore' });
        spawned.add(p);
        p.once('exit', () => spawned.delete(p));
        return p;
      },
    };
  };

  try {
    await ip(['netns', 'add', bridgeNs]);
    created.push(bridgeNs);
    await ip(['-n', bridgeNs, 'link', 'add', 'br0', 'type', 'bridge']);
    await ip(['-n', bridgeNs, 'link', 'set', 'lo', 'up']);
    await ip(['-n', bridgeNs, 'link', 'set', 'br0', 'up']);
    const hosts: NetnsHost[] = [];
    for (let i = 1; i <= o.hosts; i++) {
      const ns = `${base}-h${i}`;
      await ip(['netns', 'add', ns]);
      created.push(ns);
      await ip(['-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', `p${i}`, 'netns', bridgeNs]);
      await ip(['-n', bridgeNs, 'link', 'set', `p${i}`, 'master', 'br0']);
      await ip(['-n', bridgeNs, 'link', 'set', `p${i}`, 'up']);
      await ip(['-n', ns, 'addr', 'add', `198.18.0.${i}/24`, 'dev', 'eth0']);
      await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      await ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
      hosts.push(makeHost(ns, `198.18.0.${i}`));
    }
    const lan: NetnsHosts = { hosts, bridgeNs, close };
    if (o.redis) {
      redisDir = await mkdtemp(join(tmpdir(), 'kubeloop-netns-redis-'));
      const h1 = hosts[0];
      const p = h1.spawn(['redis-server', '--bind', h1.ip, '--port', '6379', '--dir', redisDir, '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], { stdio: 'ignore' });
      let exited = false;
      p.once('exit', () => (exited = true));
      // reachable from the last host: the bridge forwards too
      const from = hosts[hosts.length - 1];
      await waitFor(async () => {
        if (exited) throw new Error('redis-server exited at start');
        const r = await from.run(['redis-cli', '-h', h1.ip, '-p', '6379', 'ping'], { timeoutMs: 2000 });
        return r.stdout.includes('PONG');
      }, { what: `redis-server on ${h1.ip}:6379 from ${from.ip}`, timeoutMs: 15_000, intervalMs: 50 });
      lan.redisUrl = `redis://${h1.ip}:6379`;
    }
    return lan;
  } catch (err) {
    await close();
    throw err;
  }
}
