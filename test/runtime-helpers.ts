// Helpers shared by the test/runtime*.test.ts files (not a test file itself).
import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import type { Container, Pod, Probe, Stored } from '../src/api/types.js';
import { createEmbeddedStore } from '../src/store/embedded.js';
import { InformerFactory } from '../src/store/informer.js';
import { DEFAULT_IMAGE_TABLE, PodRuntime, type RuntimeOptions, loadImageTable } from '../src/agent/runtime/index.js';

export const NODE = 'node-1';
export const POD_CIDR = '127.244.0.0/16';

export type TapT = { teardown(fn: () => unknown): void };

/** Polls `fn` until it returns a truthy value; fails after `ms`. */
export async function waitFor<T>(fn: () => T | Promise<T>, ms = 5000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A process exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return process.platform !== 'linux';
  }
}

/** Probe fields the API server defaults (the tests write pods as kubectl would after defaulting). */
const probe = (p: Probe | undefined): Probe | undefined =>
  p && { timeoutSeconds: 1, periodSeconds: 1, successThreshold: 1, failureThreshold: 3, ...p };

/** A defaulted Pod bound to NODE. */
export function pod(name: string, containers: Container[], spec: Partial<NonNullable<Pod['spec']>> = {}, labels?: Record<string, string>): Pod {
  const full = (c: Container): Container => ({
    imagePullPolicy: 'IfNotPresent',
    terminationMessagePolicy: 'File',
    terminationMessagePath: '/dev/termination-log',
    ...c,
    ports: c.ports?.map((p) => ({ protocol: 'TCP', ...p })),
    livenessProbe: probe(c.livenessProbe),
    readinessProbe: probe(c.readinessProbe),
    startupProbe: probe(c.startupProbe),
  });
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default', ...(labels ? { labels } : {}) },
    spec: {
      nodeName: NODE,
      restartPolicy: 'Always',
      dnsPolicy: 'ClusterFirst',
      terminationGracePeriodSeconds: 30,
      schedulerName: 'default-scheduler',
      ...spec,
      containers: containers.map(full),
      ...(spec.initContainers ? { initContainers: spec.initContainers.map(full) } : {}),
    },
  };
}

export interface Env {
  store: Awaited<ReturnType<typeof createEmbeddedStore>>;
  informers: InformerFactory;
  runtime: PodRuntime;
  stateDir: string;
  log: Logger;
  /** a second runtime on the same store and state dir */
  newRuntime(extra?: Partial<RuntimeOptions>): PodRuntime;
  get(name: string): Promise<Stored<Pod> | undefined>;
  /** waits until the pod satisfies `pred` and returns it */
  until(name: string, pred: (p: Stored<Pod>) => boolean, ms?: number, what?: string): Promise<Stored<Pod>>;
  logOf(p: Stored<Pod>, container: string, restart?: number): string;
}

/** A store, informers and a started PodRuntime, all torn down with the test. */
export async function setup(t: TapT, extra: Partial<RuntimeOptions> = {}): Promise<Env> {
  const stateDir = await mkdtemp(join(tmpdir(), 'kubeloop-runtime-'));
  const log = pino({ level: process.env.KUBELOOP_TEST_LOG ?? 'silent' });
  const store = await createEmbeddedStore({ log, podCidr: POD_CIDR });
  const informers = new InformerFactory(store);
  const images = loadImageTable(DEFAULT_IMAGE_TABLE);
  const runtimes: PodRuntime[] = [];
  const newRuntime = (more: Partial<RuntimeOptions> = {}): PodRuntime => {
    const r = new PodRuntime({
      store,
      informers,
      log,
      nodeName: NODE,
      nodeIP: '127.0.0.1',
      podCidr: POD_CIDR,
      stateDir,
      images,
      backoff: { initialMs: 200, maxMs: 800, resetAfterMs: 60_000 },
      stopGraceMs: 1000,
      extraEnv: { KUBELOOP_DNS: '127.0.0.1:1053' },
      ...extra,
      ...more,
    });
    runtimes.push(r);
    return r;
  };
  const runtime = newRuntime();
  t.teardown(async () => {
    await Promise.all(runtimes.map((r) => r.stop()));
    informers.stop();
    await store.close();
    await rm(stateDir, { recursive: true, force: true });
  });
  await runtime.start();
  const get = (name: string) => store.tryGet<Pod>('Pod', 'default', name);
  return {
    store,
    informers,
    runtime,
    stateDir,
    log,
    newRuntime,
    get,
    async until(name, pred, ms = 5000, what = `pod ${name}`) {
      return waitFor(async () => {
        const p = await get(name);
        return p && pred(p) ? p : undefined;
      }, ms, what);
    },
    logOf(p, container, restart = 0) {
      const dir = join(stateDir, 'pods', `${p.metadata.namespace}_${p.metadata.name}_${p.metadata.uid}`, container);
      try {
        return readFileSync(join(dir, `${restart}.log`), 'utf8');
      } catch {
        return '';
      }
    },
  };
}

export const isReady = (p: Pod): boolean => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

export const cstatus = (p: Pod, name?: string) =>
  name ? p.status?.containerStatuses?.find((c) => c.name === name) : p.status?.containerStatuses?.[0];

/** pid from `kubeloop://<pid>` */
export const pidOf = (p: Pod, name?: string): number | undefined => {
  const id = cstatus(p, name)?.containerID;
  return id ? Number(id.slice('kubeloop://'.length)) : undefined;
};
