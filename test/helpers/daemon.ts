import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pino from 'pino';
import type { Pod, Stored } from '../../src/api/types.js';
import { DEFAULT_IMAGE_TABLE, PodRuntime, type RuntimeOptions, loadImageTable } from '../../src/agent/runtime/index.js';
import { ControllerManager } from '../../src/controllers/index.js';
import { type ClosableStore, createEmbeddedStore } from '../../src/store/embedded.js';
import { InformerFactory } from '../../src/store/informer.js';
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
export async function startDaemon(
  args: string[],
  opts: { timeoutMs?: number; stateDir?: string; /** argv run before node, e.g. `host.wrap([])` of netns-hosts */ prefix?: string[]; /** added to the daemon's environment */ env?: NodeJS.ProcessEnv } = {},
): Promise<RunningDaemon> {
  const stateDir = opts.stateDir ?? (await mkdtemp(join(tmpdir(), 'kubeloop-e2e-')));
  const podCidr = args[args.indexOf('--pod-cidr') + 1];
  if (!args.includes('--pod-cidr') || !podCidr) throw new Error('startDaemon: pass a --pod-cidr of its own (tests run in parallel)');
  // the /16 prefix ("127.231.") identifies this daemon's pods
  const podPrefix = podCidr.split('.').slice(0, 2).join('.') + '.';
  // every daemon of the suite gets its own metrics port unless the test chooses
  const metrics = args.some((a) => a.startsWith('--metrics-addr')) ? [] : ['--metrics-addr', '127.0.0.1:0'];
  const argv = [...(opts.prefix ?? []), process.execPath, join(ROOT, 'bin', 'kubeloop.mjs'), 'up', '--state-dir', stateDir, ...metrics, ...args];
  const proc = spawn(argv[0], argv.slice(1), {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '', ...opts.env },
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

export interface InProcessNode {
  store: ClosableStore;
  runtime: PodRuntime;
  /** the pods of namespace `default` */
  pods(): Promise<Stored<Pod>[]>;
}

/**
 * The daemon's store, controllers and node agent (`node-1`, built-in image table, 500 ms stop
 * grace, plus `runtime`) in this process, pods as real processes; all ended by `t`'s teardown.
 */
export async function inProcessNode(
  t: { teardown(fn: () => unknown): void },
  o: { dirPrefix: string; podCidr: string; nodeIP: string; runtime?: Partial<RuntimeOptions> },
): Promise<InProcessNode> {
  const log = pino({ level: process.env.KUBELOOP_TEST_LOG ?? 'silent' });
  const { podCidr, nodeIP } = o;
  const stateDir = await mkdtemp(join(tmpdir(), o.dirPrefix));
  const store = await createEmbeddedStore({ log, podCidr });
  const informers = new InformerFactory(store);
  const controllers = new ControllerManager({ store, informers, log, podCidr });
  const runtime = new PodRuntime({
    store,
    informers,
    log,
    nodeName: 'node-1',
    nodeIP,
    podCidr,
    stateDir,
    images: loadImageTable(DEFAULT_IMAGE_TABLE),
    stopGraceMs: 500,
    ...o.runtime,
  });
  t.teardown(async () => {
    await runtime.stop();
    await controllers.stop();
    informers.stop();
    await store.close();
    await rm(stateDir, { recursive: true, force: true });
  });
  await controllers.start();
  await runtime.start();
  return { store, runtime, pods: async () => (await store.list<Pod>('Pod', { namespace: 'default' })).items };
}
