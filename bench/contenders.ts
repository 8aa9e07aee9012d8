/**
 * The contenders of bench/run.ts, all in front of the same 3 backend processes:
 * - kubeloop: the real daemon (`kubeloop up`) with a Deployment of 3 pods running
 *   bench/backend.mjs and a Service selecting them; traffic goes to the ClusterIP;
 * - haproxy: `mode tcp`, `balance roundrobin`, default threads, pointed at the 3 pod IPs;
 * - nginx: `stream` with an upstream of the 3 pod IPs (round robin is its default);
 * - direct: the first pod, no proxy (the physical limit).
 * Each listens on its own loopback address. A missing tool is reported and its contender
 * skipped; every process started here is ended by `stop()`.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { daemonApi } from '../test/helpers/api.js';
import { childPids } from '../test/helpers/procs.js';

export const ROOT = resolve(import.meta.dirname, '..');

export interface Addr {
  host: string;
  port: number;
}

export interface Contender {
  name: 'kubeloop' | 'kubeloop2' | 'haproxy' | 'nginx' | 'direct';
  /** where HTTP goes */
  http: Addr;
  /** where the raw TCP source (bulk, idle) is */
  tcp: Addr;
  /** the proxy's processes, for RSS and CPU (kubeloop: the daemon alone, not its pods; empty for direct) */
  pids(): number[];
  stop(): Promise<void>;
}

export interface Backends {
  ips: string[];
  httpPort: number;
  tcpPort: number;
}

/** whether `cmd` can be run (PATH lookup, or an absolute path) */
export function have(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** a tool's version: its own words (`re` over stdout+stderr of `cmd args`), else the Debian package's, else 'missing' */
export function versionOf(cmd: string, args: string[], re: RegExp, debPackage = cmd): string {
  if (!have(cmd)) return 'missing';
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 });
  const m = re.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`);
  if (m) return m[1]!;
  const d = spawnSync('dpkg-query', ['-W', '-f', '${Version}', debPackage], { encoding: 'utf8', timeout: 5000 });
  return d.status === 0 && d.stdout ? `${d.stdout} (Debian)` : 'unknown';
}

/** `pid` and its descendants */
export function withDescendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(d));
      children.set(ppid, list);
    } catch {
      // gone
    }
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    if (out.includes(p)) return;
    out.push(p);
    for (const c of children.get(p) ?? []) walk(c);
  };
  walk(pid);
  return out;
}

/** summed RSS in KiB of exactly these processes */
export function rssKiB(pids: number[]): number {
  let total = 0;
  for (const pid of pids) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      total += Number(m?.[1] ?? 0);
    } catch {
      // gone
    }
  }
  return total;
}

/** summed user+system CPU seconds of exactly these processes (all their threads) */
export function cpuSeconds(pids: number[]): number {
  const { user, system } = cpuTimes(pids);
  return user + system;
}

/** user and system CPU seconds of exactly these processes (all their threads) */
export function cpuTimes(pids: number[]): { user: number; system: number } {
  let user = 0;
  let system = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      user += Number(f[11]); // utime (field 14)
      system += Number(f[12]); // stime (field 15)
    } catch {
      // gone
    }
  }
  return { user: user / 100, system: system / 100 }; // USER_HZ is 100 on Linux
}

function exited(p: ChildProcess): Promise<void> {
  return new Promise((r) => {
    if (p.exitCode !== null || p.signalCode !== null) return r();
    p.once('exit', () => r());
  });
}

export async function kill(p: ChildProcess, sig: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  p.kill(sig);
  const t = setTimeout(() => p.kill('SIGKILL'), graceMs);
  await exited(p);
  clearTimeout(t);
}

/** Resolves once `host:port` accepts a TCP connection (bounded). */
export async function waitListening(a: Addr, timeoutMs = 10_000): Promise<void> {
  const net = await import('node:net');
  const end = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(a);
      s.once('connect', () => {
        s.destroy();
        r(true);
      });
      s.once('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listens on ${a.host}:${a.port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** the body of a plain HTTP GET (no agent; fails when the socket is idle for 5 s) */
export function getText(url: string): Promise<string> {
  return new Promise((res, rej) => {
    const req = http
      .get(url, { agent: false, timeout: 5000 }, (r) => {
        let body = '';
        r.setEncoding('utf8').on('data', (c: string) => (body += c));
        r.on('end', () => res(body));
        r.on('error', rej);
      })
      .on('error', rej);
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no data for 5 s`)));
  });
}

const MANIFEST = (node: string) => `apiVersion: apps/v1
kind: Deployment
metadata: { name: bench, namespace: default }
spec:
  replicas: 3
  selector: { matchLabels: { app: bench } }
  template:
    metadata: { labels: { app: bench } }
    spec:
      containers:
        - name: backend
          image: kubeloop/bench-backend
          command: [${JSON.stringify(node)}, ${JSON.stringify(join(ROOT, 'bench', 'backend.mjs'))}]
          ports:
            - { name: http, containerPort: 8080 }
            - { name: raw, containerPort: 9000 }
          readinessProbe: { tcpSocket: { port: http }, periodSeconds: 1 }
---
apiVersion: v1
kind: Service
metadata: { name: bench, namespace: default }
spec:
  selector: { app: bench }
  ports:
    - { name: http, port: 80, targetPort: http }
    - { name: raw, port: 9000, targetPort: raw }
`;

/** a selector-less Service \`bench\` in front of backends that already run (another daemon's pods) */
const FORWARD_MANIFEST = (b: Backends) => `apiVersion: v1
kind: Service
metadata: { name: bench, namespace: default }
spec:
  ports:
    - { name: http, port: 80, targetPort: ${b.httpPort} }
    - { name: raw, port: 9000, targetPort: ${b.tcpPort} }
---
apiVersion: v1
kind: Endpoints
metadata: { name: bench, namespace: default }
subsets:
  - addresses: [${b.ips.map((ip) => `{ ip: ${ip} }`).join(', ')}]
    ports: [{ name: http, port: ${b.httpPort} }, { name: raw, port: ${b.tcpPort} }]
`;

/**
 * Until every TCP listener of Service `bench` has `processes` processes accepting on it (the
 * proxy workers start beside the daemon and take the portals once up), bounded by 20 s.
 */
async function waitWorkers(metricsUrl: string | undefined, processes: number): Promise<void> {
  if (!metricsUrl) throw new Error('no /metrics address printed: cannot tell when the proxy workers are up');
  const end = Date.now() + 20_000;
  let seen: number[] = [];
  while (Date.now() < end) {
    seen = (await getText(metricsUrl))
      .split('\n')
      .filter((l) => l.startsWith('kubeloop_proxy_listener_processes{service="default/bench"') && l.includes('protocol="TCP"'))
      .map((l) => Number(l.slice(l.lastIndexOf(' ') + 1)));
    if (seen.length && seen.every((n) => n === processes)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the proxy workers did not take every portal in 20 s (processes per listener: ${seen.join(', ') || 'none'})`);
}

export interface KubeloopRun {
  contender: Contender;
  backends: Backends;
  /** the daemon's /metrics URL */
  metricsUrl?: string;
}

/** A `kubeloop up` started by `launchKubeloop`. */
export interface KubeloopDaemon {
  proc: ChildProcess;
  /** what it printed so far (the table, the API/DNS/metrics addresses) */
  out(): string;
  /** its state dir (the kubeconfig is in it) */
  stateDir: string;
  /** SIGINT, SIGKILL after 15 s; then its state dir is removed */
  stop(): Promise<void>;
}

/**
 * Starts `kubeloop up -f` with `manifest`, in a state dir of its own, with the API, DNS and
 * metrics on ports of its choosing and `flags` added (its CIDRs, node address, …; `nodeFlags` go
 * to node itself), and resolves once it prints that it is running (60 s at most).
 */
export async function launchKubeloop(manifest: string, flags: string[], nodeFlags: string[] = []): Promise<KubeloopDaemon> {
  const dir = mkdtempSync(join(tmpdir(), 'kubeloop-bench-run-'));
  writeFileSync(join(dir, 'manifest.yaml'), manifest);
  const args = [
    ...nodeFlags,
    join(ROOT, 'bin', 'kubeloop.mjs'), 'up', '-f', join(dir, 'manifest.yaml'), '--state-dir', join(dir, 'state'),
    '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--metrics-addr', '127.0.0.1:0', '--log-level', 'warn',
    ...flags,
  ];
  const proc = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (err += err.length < 100_000 ? c : ''));
  const stop = async (): Promise<void> => {
    await kill(proc, 'SIGINT', 15_000);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const end = Date.now() + 60_000;
    while (!out.includes('kubeloop is running')) {
      if (proc.exitCode !== null) throw new Error(`kubeloop exited ${proc.exitCode}:\n${err}\n${out}`);
      if (Date.now() > end) throw new Error(`kubeloop did not come up in 60 s:\n${err}\n${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { proc, out: () => out, stateDir: join(dir, 'state'), stop };
}

/**
 * Starts `kubeloop up` with the bench Deployment + Service (its own CIDRs and node address), and
 * reads the ClusterIP and the 3 pod IPs from its API.
 *
 * With `forward`, the daemon runs no pods: its Service `bench` is selector-less, with Endpoints
 * naming those backends (another daemon's pods), and it proxies with `--proxy-processes
 * processes`; its pids are the daemon and its proxy workers.
 */
export async function startKubeloop(o: { profileDir?: string; forward?: Backends; processes?: number } = {}): Promise<KubeloopRun> {
  const net = o.forward ? 152 : 150;
  const d = await launchKubeloop(
    o.forward ? FORWARD_MANIFEST(o.forward) : MANIFEST(process.execPath),
    [
      '--service-cidr', `127.${net}.0.0/16`, '--pod-cidr', `127.${net + 1}.0.0/16`,
      '--node-ip', `127.0.${net}.1`, '--nodeport-addresses', `127.0.${net}.1`,
      ...(o.forward ? ['--allow-loopback-endpoints', '--lb-pool', '127.154.0.0/16'] : []),
      ...(o.processes ? ['--proxy-processes', String(o.processes)] : []),
      '--ready-timeout', '30s', '--stop-grace', '2s',
    ],
    o.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${o.profileDir}`] : [],
  );
  const { proc, stop } = d;
  try {
    const out = d.out();
    // the API over HTTPS with the kubeconfig's CA and client certificate, as kubectl uses it
    const api = await daemonApi(d);
    const getJson = async (path: string): Promise<unknown> => (await api.request('GET', path, { timeoutMs: 5000 })).json();
    const svc = (await getJson('/api/v1/namespaces/default/services/bench')) as { spec: { clusterIP: string } };
    const clusterIP = svc.spec.clusterIP;
    let ips: string[] = [];
    for (let i = 0; i < 200 && ips.length < 3; i++) {
      const ep = (await getJson('/api/v1/namespaces/default/endpoints/bench')) as { subsets?: Array<{ addresses?: Array<{ ip: string }> }> };
      ips = (ep.subsets ?? []).flatMap((s) => (s.addresses ?? []).map((a) => a.ip)).sort();
      if (ips.length < 3) await new Promise((r) => setTimeout(r, 100));
    }
    if (ips.length !== 3) throw new Error(`wanted 3 ready bench pods, have ${ips.length}`);
    const metricsUrl = /metrics:\s+(http:\/\/\S+)/i.exec(out)?.[1];
    const contender: Contender = {
      name: o.forward ? 'kubeloop2' : 'kubeloop',
      http: { host: clusterIP, port: 80 },
      tcp: { host: clusterIP, port: 9000 },
      pids: () => (o.forward ? [proc.pid!, ...childPids(proc.pid!)] : [proc.pid!]),
      stop,
    };
    await waitListening(contender.http);
    for (const ip of ips) await waitListening({ host: ip, port: 9000 });
    if (o.processes && o.processes > 1) await waitWorkers(metricsUrl, o.processes);
    return { contender, backends: { ips, httpPort: 8080, tcpPort: 9000 }, metricsUrl };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** the largest count of idle proxied connections a proxy can hold here (2 fds each) */
export function maxIdleConnections(want: number): { count: number; fdLimit: number } {
  let fdLimit = 20_000;
  try {
    fdLimit = Number(execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim()) || fdLimit;
  } catch {
    // keep the guess
  }
  if (!Number.isFinite(fdLimit)) fdLimit = 1 << 20; // "unlimited"
  const fit = Math.floor((fdLimit - 500) / 2 / 500) * 500;
  return { count: Math.min(want, fit), fdLimit };
}

/**
 * Runs the proxy `name args` (configured in `dir`, listening on `host` :8080 for HTTP and :9000 for
 * the raw source) once it accepts on :9000; its `stop()` ends it (SIGTERM) and removes `dir`. If it
 * exits first, or never listens, it is stopped and the error (with its stderr) thrown.
 */
async function startProxy(
  name: 'haproxy' | 'nginx',
  args: string[],
  dir: string,
  host: string,
  pids: (pid: number) => number[],
): Promise<Contender> {
  const proc = spawn(name, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const stop = async (): Promise<void> => {
    await kill(proc, 'SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await Promise.race([
      waitListening({ host, port: 9000 }),
      exited(proc).then(() => {
        throw new Error(`${name} exited: ${err}`);
      }),
    ]);
  } catch (e) {
    await stop();
    throw e;
  }
  return { name, http: { host, port: 8080 }, tcp: { host, port: 9000 }, pids: () => pids(proc.pid!), stop };
}

export async function startHaproxy(b: Backends, maxconn: number): Promise<Contender> {
  const dir = mkdtempSync(join(tmpdir(), 'kubeloop-bench-haproxy-'));
  const host = '127.0.190.1';
  const servers = (port: number) => b.ips.map((ip, i) => `  server b${i} ${ip}:${port}`).join('\n');
  const cfg = `global
  maxconn ${maxconn}
defaults
  mode tcp
  balance roundrobin
  maxconn ${maxconn}
  timeout connect 5s
  timeout client 1h
  timeout server 1h
listen http
  bind ${host}:8080
${servers(b.httpPort)}
listen raw
  bind ${host}:9000
${servers(b.tcpPort)}
`;
  writeFileSync(join(dir, 'haproxy.cfg'), cfg);
  return startProxy('haproxy', ['-f', join(dir, 'haproxy.cfg'), '-db'], dir, host, (pid) => [pid]);
}

export async function startNginx(b: Backends, fdLimit: number): Promise<Contender> {
  const dir = mkdtempSync(join(tmpdir(), 'kubeloop-bench-nginx-'));
  const host = '127.0.191.1';
  const servers = (port: number) => b.ips.map((ip) => `    server ${ip}:${port};`).join('\n');
  const modules = ['/usr/lib/nginx/modules/ngx_stream_module.so', '/usr/share/nginx/modules/ngx_stream_module.so'];
  const mod = modules.find((m) => {
    try {
      readFileSync(m, { flag: 'r' }).length;
      return true;
    } catch {
      return false;
    }
  });
  const cfg = `${mod ? `load_module ${mod};\n` : ''}worker_processes auto;
worker_rlimit_nofile ${fdLimit};
pid ${join(dir, 'nginx.pid')};
error_log stderr warn;
events { worker_connections ${fdLimit}; }
stream {
  upstream http_be {
${servers(b.httpPort)}
  }
  upstream raw_be {
${servers(b.tcpPort)}
  }
  server { listen ${host}:8080; proxy_pass http_be; proxy_timeout 1h; }
  server { listen ${host}:9000; proxy_pass raw_be; proxy_timeout 1h; }
}
`;
  writeFileSync(join(dir, 'nginx.conf'), cfg);
  return startProxy('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', 'stderr', '-g', 'daemon off;'], dir, host, withDescendants);
}

export function direct(b: Backends): Contender {
  return {
    name: 'direct',
    http: { host: b.ips[0]!, port: b.httpPort },
    tcp: { host: b.ips[0]!, port: b.tcpPort },
    pids: () => [],
    stop: async () => undefined,
  };
}
