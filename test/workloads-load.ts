// A fixed-rate HTTP load client for the rollout test and bench (not a test file). Run as a
// script it is a separate process, as a real client would be: the cluster's event loop (store,
// controllers, proxy, node agent all live in the test process) never delays the client's view of
// its own sockets.
//   node --import tsx test/workloads-load.ts '{"host":"127.96.0.10","port":80,"rps":500,"count":3000,"keepAlive":true}'
// prints one JSON LoadResult line.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Deployment, Service } from '../src/api/types.js';

export interface LoadResult {
  total: number;
  ok: number;
  failed: number;
  /**
   * requests sent again after their kept-alive connection failed before any response (the
   * HTTP/1.1 close race; RFC 9112 §9.3.1 lets a client retry a GET then, as Go's client does)
   */
  retried: number;
  /** failure message → count */
  errors: Record<string, number>;
  /** answering pod (the echo image's `pod=` line) → count */
  byPod: Record<string, number>;
  seconds: number;
  /** failures per second of the run (index = second since the start) */
  failedPerSecond: number[];
  /** epoch ms of the first and last request sent */
  startedAt: number;
  endedAt: number;
}

/**
 * Open-loop HTTP GET load at a fixed rate: request k is sent at t0 + k/rps whether or not the
 * earlier ones were answered; a request fails on any error, a non-200 status, or no answer
 * within `timeoutMs`. `keepAlive` reuses connections (Node's default LIFO agent); otherwise every
 * request has a connection of its own. Bounded by `count`; loopback addresses only.
 */
export async function fixedRateLoad(
  o: { host: string; port: number; rps: number; count: number; keepAlive: boolean; timeoutMs?: number; maxSockets?: number },
  onStarted?: () => void,
): Promise<LoadResult> {
  if (!o.host.startsWith('127.')) throw new Error(`load goes to loopback only, not ${o.host}`);
  const { request, Agent } = await import('node:http');
  const agent = o.keepAlive ? new Agent({ keepAlive: true, maxSockets: o.maxSockets ?? 32 }) : false;
  const res: LoadResult = { total: 0, ok: 0, failed: 0, retried: 0, errors: {}, byPod: {}, seconds: 0, failedPerSecond: [], startedAt: Date.now(), endedAt: 0 };
  const fail = (why: string, sentAt: number) => {
    const sec = Math.floor((sentAt - res.startedAt) / 1000);
    while (res.failedPerSecond.length <= sec) res.failedPerSecond.push(0);
    res.failedPerSecond[sec]++;
    res.failed++;
    res.errors[why] = (res.errors[why] ?? 0) + 1;
  };
  const one = (attempt = 0, sentAt = Date.now()): Promise<void> =>
    new Promise<void>((resolve) => {
      let done = false;
      let answered = false;
      const finish = (err?: string, pod?: string) => {
        if (done) return;
        done = true;
        if (err) fail(err, sentAt);
        else {
          res.ok++;
          if (pod) res.byPod[pod] = (res.byPod[pod] ?? 0) + 1;
        }
        resolve();
      };
      const req = request({ host: o.host, port: o.port, path: '/', agent, timeout: o.timeoutMs ?? 5000 }, (r) => {
        answered = true;
        let body = '';
        r.setEncoding('utf8');
        r.on('data', (c: string) => {
          if (body.length < 256) body += c;
        });
        r.on('end', () => finish(r.statusCode === 200 ? undefined : `HTTP ${r.statusCode}`, /^pod=(\S+)/.exec(body)?.[1]));
        r.on('error', (e) => finish(`response: ${(e as NodeJS.ErrnoException).code ?? e.message}`));
      });
      req.on('timeout', () => {
        req.destroy();
        finish('timeout');
      });
      // `reused`: the request went out on a kept-alive connection the server was closing (the
      // HTTP/1.1 race Node's docs describe under `request.reusedSocket`): sent again, at most
      // twice, as long as nothing of a response came back
      req.on('error', (e) => {
        if (done) return;
        if (req.reusedSocket && !answered && attempt < 2) {
          done = true;
          res.retried++;
          resolve(one(attempt + 1, sentAt));
          return;
        }
        finish(`${req.reusedSocket ? 'reused ' : ''}${(e as NodeJS.ErrnoException).code ?? e.message}`);
      });
      req.end();
    });
  const t0 = performance.now();
  res.startedAt = Date.now();
  onStarted?.();
  const pending: Promise<void>[] = [];
  for (let k = 0; k < o.count; k++) {
    const due = t0 + (k * 1000) / o.rps;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    res.total++;
    pending.push(one());
  }
  res.endedAt = Date.now();
  await Promise.all(pending);
  res.seconds = (performance.now() - t0) / 1000;
  if (agent) agent.destroy();
  return res;
}

/** whether all of 3 requests (50/s, a connection each) to `host`:80 are answered: the echo Service is served */
export async function echoAnswers(host: string): Promise<boolean> {
  return (await fixedRateLoad({ host, port: 80, rps: 50, count: 3, keepAlive: false })).ok === 3;
}

export type LoadOptions = Parameters<typeof fixedRateLoad>[0];

/**
 * {@link fixedRateLoad} in a child process (bounded: killed after `count / rps` + 30 s);
 * `started` resolves once its first request is out.
 */
export function fixedRateLoadInChild(o: LoadOptions): { started: Promise<void>; result: Promise<LoadResult> } {
  let onStarted!: () => void;
  const started = new Promise<void>((r) => (onStarted = r));
  const result = new Promise<LoadResult>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), JSON.stringify(o)], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      if (out.includes('started\n')) onStarted();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), (o.count / o.rps) * 1000 + 30_000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1)!) as LoadResult);
      } catch {
        reject(new Error(`load client exited ${code} without a result: ${out.slice(0, 500)}`));
      }
    });
  });
  // a client that dies early must not leave `started` hanging
  void result.then(onStarted, onStarted);
  return { started, result };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const o = JSON.parse(process.argv[2] ?? '{}') as LoadOptions;
  fixedRateLoad(o, () => process.stdout.write('started\n')).then(
    (r) => process.stdout.write(`${JSON.stringify(r)}\n`),
    (err: unknown) => {
      process.stderr.write(`load client: ${(err as Error).message}\n`);
      process.exit(1);
    },
  );
}

/**
 * The Deployment the rollout test and bench/rollout.ts roll: 3 echo pods, surge 1, never below 3
 * ready; `version` goes into the template (changing it starts a rollout).
 */
export function echoDeployment(name: string, namespace: string, version: string, graceSeconds: number): Deployment {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace },
    spec: {
      replicas: 3,
      selector: { matchLabels: { app: name } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          terminationGracePeriodSeconds: graceSeconds,
          containers: [
            {
              name: 'web',
              image: 'kubeloop/echo',
              ports: [{ containerPort: 8080 }],
              env: [{ name: 'VERSION', value: version }],
              readinessProbe: { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 1, failureThreshold: 1, successThreshold: 1, timeoutSeconds: 1 },
            },
          ],
        },
      },
    },
  };
}

/** The Service in front of an {@link echoDeployment} `name`: port 80 to the pods' 8080. */
export function echoService(name: string, namespace: string): Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace },
    spec: { selector: { app: name }, ports: [{ port: 80, targetPort: 8080 }] },
  };
}
