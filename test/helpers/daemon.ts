import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { podProcesses } from './procs.js';

export const ROOT = resolve(import.meta.dirname, '..', '..');

export interface RunningDaemon {
  proc: ChildProcess;
  stateDir: string;
  stdout: () => string;
  stderr: () => string;
  /**
   * Stops the daemon with `signal` (SIGINT, as Ctrl-C), SIGKILL if it is still running after
   * 20 s, then ends any pod process of its pod range that outlived it (a test must not leak
   * even when the daemon misbehaves; tests that check for leftovers look before this sweep).
   * Resolves to the exit code.
   */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts `kubeloop up` as a user would (bin/kubeloop.mjs), with its own state dir and the
 * given flags, and resolves once it prints that it is running.
 */
export async function startDaemon(args: string[], opts: { timeoutMs?: number; stateDir?: string } = {}): Promise<RunningDaemon> {
  const stateDir = opts.stateDir ?? (await mkdtemp(join(tmpdir(), 'kubeloop-e2e-')));
  const podCidr = args[args.indexOf('--pod-cidr') + 1];
  if (!args.includes('--pod-cidr') || !podCidr) throw new Error('startDaemon: pass a --pod-cidr of its own (tests run in parallel)');
  // the /16 prefix ("127.231.") identifies this daemon's pods
  const podPrefix = podCidr.split('.').slice(0, 2).join('.') + '.';
  // every daemon of the suite gets its own metrics port unless the test chooses
  const metrics = args.some((a) => a.startsWith('--metrics-addr')) ? [] : ['--metrics-addr', '127.0.0.1:0'];
  const proc = spawn(process.execPath, [join(ROOT, 'bin', 'kubeloop.mjs'), 'up', '--state-dir', stateDir, ...metrics, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const d: RunningDaemon = {
    proc,
    stateDir,
    stdout: () => out,
    stderr: () => err,
    async stop(signal = 'SIGINT') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      const code = await exited;
      clearTimeout(timer);
      for (const p of podProcesses(podPrefix)) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      }
      await rm(stateDir, { recursive: true, force: true });
      return code;
    },
  };
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  while (!out.includes('kubeloop is running')) {
    if (proc.exitCode !== null) {
      await rm(stateDir, { recursive: true, force: true });
      throw new Error(`kubeloop exited ${proc.exitCode}:\n${err}\n${out}`);
    }
    if (Date.now() > deadline) {
      await d.stop('SIGKILL');
      throw new Error(`kubeloop did not come up:\n${err}\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return d;
}

/** The addresses of one Service in the table `up` printed. */
export function tableAddresses(stdout: string, service: string): string[] {
  const lines = stdout.split('\n');
  const start = lines.findIndex((l) => l.startsWith(`${service} `));
  if (start < 0) return [];
  const header = lines.find((l) => l.startsWith('SERVICE'))!;
  const col = header.indexOf('ADDRESS');
  const addrs: string[] = [];
  for (let i = start; i < lines.length; i++) {
    if (i > start && lines[i].slice(0, col).trim() !== '') break;
    const a = lines[i].slice(col).trim().split(/\s+/)[0];
    if (!a) break;
    addrs.push(a);
  }
  return addrs;
}

/** a one-replica Deployment `web` of the echo image (port 8080) behind a Service `web` on port 80 */
export const WEB_ECHO_MANIFEST = `
apiVersion: apps/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 1
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
        - name: echo
          image: echo
          ports: [{ containerPort: 8080 }]
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec:
  selector: { app: web }
  ports: [{ port: 80, targetPort: 8080 }]
`;
