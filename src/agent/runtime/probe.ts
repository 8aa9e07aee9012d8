import { spawn } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import http2 from 'node:http2';
import net from 'node:net';
import type { Container, Probe } from '../../api/types.js';
import type { LifecycleHandler } from 'kubernetes-types/core/v1.js';
import { isLoopback } from '../../util/cidr.js';
import { killGroup } from './process.js';
import { type Sandbox, commandProblem } from './sandbox.js';

export interface ProbeResult {
  ok: boolean;
  /** why it failed (for the log and the container's status) */
  message?: string;
}

export interface ProbeTarget {
  podIP: string;
  container: Container;
  /** the container's environment and working dir, for exec probes */
  env: Readonly<Record<string, string>>;
  cwd: string;
  /**
   * exec probes and hooks run in the container's sandbox mechanism (a PID namespace of their
   * own, tied to the daemon's life), with `lockDir` as the sandbox's lock dir; without it they
   * are only a process group of their own (gone at the timeout, not when the daemon is killed)
   */
  sandbox?: Sandbox;
  lockDir?: string;
}

const DEFAULTS = { initialDelaySeconds: 0, periodSeconds: 10, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3 };

/** A probe with every number filled in with the upstream defaults. */
export function probeTiming(p: Probe): typeof DEFAULTS {
  const pos = (v: number | undefined, d: number): number => (typeof v === 'number' && v > 0 ? v : d);
  return {
    initialDelaySeconds: Math.max(0, p.initialDelaySeconds ?? 0),
    periodSeconds: pos(p.periodSeconds, DEFAULTS.periodSeconds),
    timeoutSeconds: pos(p.timeoutSeconds, DEFAULTS.timeoutSeconds),
    successThreshold: pos(p.successThreshold, DEFAULTS.successThreshold),
    failureThreshold: pos(p.failureThreshold, DEFAULTS.failureThreshold),
  };
}

/** Runs one probe once. Never rejects. Aborting it kills what it started. */
export async function runProbe(p: Probe, t: ProbeTarget, signal: AbortSignal): Promise<ProbeResult> {
  const timeoutMs = probeTiming(p).timeoutSeconds * 1000;
  try {
    if (p.exec) return await execProbe(p.exec.command ?? [], t, timeoutMs, signal);
    if (p.httpGet) {
      const port = resolvePort(p.httpGet.port, t.container);
      const host = probeHost(p.httpGet.host, t.podIP);
      const headers: Record<string, string> = { 'User-Agent': 'kube-probe/1.30', Accept: '*/*', Connection: 'close' };
      for (const h of p.httpGet.httpHeaders ?? []) headers[h.name] = h.value;
      const scheme = (p.httpGet.scheme ?? 'HTTP').toUpperCase();
      return await httpProbe(scheme === 'HTTPS', host, port, p.httpGet.path || '/', headers, timeoutMs, signal);
    }
    if (p.tcpSocket) {
      return await tcpProbe(probeHost(p.tcpSocket.host, t.podIP), resolvePort(p.tcpSocket.port, t.container), timeoutMs, signal);
    }
    if (p.grpc) return await grpcProbe(t.podIP, p.grpc.port, p.grpc.service ?? '', timeoutMs, signal);
    return { ok: false, message: 'probe has no handler (exec, httpGet, tcpSocket or grpc)' };
  } catch (e) {
    return { ok: false, message: (e as Error).message };
  }
}

/** A named port is looked up in the container's ports, as upstream does. */
export function resolvePort(port: number | string, c: Container): number {
  if (typeof port === 'number') return port;
  if (/^\d+$/.test(port)) return Number(port);
  const found = c.ports?.find((p) => p.name === port);
  if (!found) throw new Error(`unable to find port "${port}" in container "${c.name}"`);
  return found.containerPort;
}

function probeHost(host: string | undefined, podIP: string): string {
  if (!host) return podIP;
  if (host === 'localhost') return '127.0.0.1';
  if (!isLoopback(host)) throw new Error(`probe host ${host} is not a loopback address: kubeloop only dials 127.0.0.0/8 and ::1`);
  return host;
}

function httpProbe(
  tls: boolean,
  host: string,
  port: number,
  path: string,
  headers: Record<string, string>,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const url = `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}${path}`;
    const opts = { method: 'GET', headers, agent: false as const, signal, rejectUnauthorized: false };
    const req = (tls ? https : http).request(url, opts, (res) => {
      res.resume();
      const code = res.statusCode ?? 0;
      clearTimeout(timer);
      req.destroy();
      resolve(code >= 200 && code < 400 ? { ok: true } : { ok: false, message: `HTTP probe failed with statuscode: ${code}` });
    });
    const timer = setTimeout(() => {
      req.destroy();
      resolve({ ok: false, message: `Get "${url}": context deadline exceeded (timeout ${timeoutMs}ms)` });
    }, timeoutMs);
    req.on('error', (e) => {
      clearTimeout(timer);
      resolve({ ok: false, message: `Get "${url}": ${e.message}` });
    });
    req.end();
  });
}

function tcpProbe(host: string, port: number, timeoutMs: number, signal: AbortSignal): Promise<ProbeResult> {
  return new Promise((resolve) => {
    // not net.connect's own `signal` option: Node 20 removes that listener only on an abort, so
    // every probe left one on the prober's signal (a leak, and MaxListenersExceededWarning on
    // the terminal after 11 probes of one container)
    const sock = net.connect({ host, port });
    const finish = (r: ProbeResult): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      sock.destroy();
      resolve(r);
    };
    const onAbort = (): void => finish({ ok: false, message: 'probe cancelled' });
    const timer = setTimeout(() => finish({ ok: false, message: `dial tcp ${host}:${port}: i/o timeout` }), timeoutMs);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    sock.once('connect', () => finish({ ok: true }));
    sock.once('error', (e) => finish({ ok: false, message: `dial tcp ${host}:${port}: ${e.message}` }));
  });
}

function execProbe(
  command: readonly string[],
  t: ProbeTarget,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<ProbeResult> {
  if (!command.length) return Promise.resolve({ ok: false, message: 'exec probe has no command' });
  const sandboxed = t.sandbox && t.sandbox.kind !== 'none' && t.lockDir !== undefined;
  if (sandboxed) {
    // the wrapper always starts: find out now what execvp would have said
    const problem = commandProblem(command[0], t.env.PATH, t.cwd);
    if (problem === 'ENOENT') return Promise.resolve({ ok: false, message: `exec: "${command[0]}": executable file not found in $PATH` });
    if (problem === 'EACCES') return Promise.resolve({ ok: false, message: `exec: "${command[0]}": permission denied` });
  }
  // killing the group at the timeout ends the whole probe: in a PID namespace its leader's death
  // takes every process of the namespace with it (setsid'd ones too)
  const [file, ...args] = sandboxed ? t.sandbox!.wrap(command, t.lockDir!) : command;
  return new Promise((resolve) => {
    let out = '';
    const child = spawn(file, args, {
      detached: true,
      cwd: t.cwd,
      env: t.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const pid = child.pid;
    const collect = (b: Buffer): void => {
      if (out.length < 1024) out += b.toString('utf8');
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    let settled = false;
    const finish = (r: ProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      if (pid !== undefined) killGroup(pid, 'SIGKILL');
      resolve(r);
    };
    const onAbort = (): void => finish({ ok: false, message: 'probe cancelled' });
    signal.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(
      () => finish({ ok: false, message: `command ${JSON.stringify(command)} timed out after ${timeoutMs}ms` }),
      timeoutMs,
    );
    child.once('error', (e: NodeJS.ErrnoException) =>
      finish({ ok: false, message: e.code === 'ENOENT' ? `exec: "${command[0]}": executable file not found in $PATH` : e.message }),
    );
    child.once('close', (code, sig) => {
      const text = out.trim().slice(0, 512);
      if (code === 0) finish({ ok: true });
      else finish({ ok: false, message: `command ${JSON.stringify(command)} exited with ${code ?? sig}${text ? `: ${text}` : ''}` });
    });
  });
}

/** grpc.health.v1.Health/Check over h2c: SERVING (1) is success. */
function grpcProbe(host: string, port: number, service: string, timeoutMs: number, signal: AbortSignal): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const target = `${host}:${port}`;
    let settled = false;
    const client = http2.connect(`http://${target}`);
    const finish = (r: ProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      client.destroy();
      resolve(r);
    };
    const onAbort = (): void => finish({ ok: false, message: 'probe cancelled' });
    signal.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => finish({ ok: false, message: `timeout: health rpc did not complete within ${timeoutMs}ms` }), timeoutMs);
    client.on('error', (e) => finish({ ok: false, message: `failed to connect service "${target}": ${e.message}` }));
    const name = Buffer.from(service, 'utf8');
    const msg = name.length ? Buffer.concat([Buffer.from([0x0a, name.length]), name]) : Buffer.alloc(0);
    const frame = Buffer.alloc(5 + msg.length);
    frame.writeUInt32BE(msg.length, 1);
    msg.copy(frame, 5);
    const req = client.request({
      ':method': 'POST',
      ':path': '/grpc.health.v1.Health/Check',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('trailers', (tr) => {
      const st = tr['grpc-status'];
      if (st !== undefined && String(st) !== '0') finish({ ok: false, message: `health rpc failed: grpc-status ${st} ${tr['grpc-message'] ?? ''}`.trim() });
    });
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      // one length-prefixed HealthCheckResponse { status = 1 (varint) }
      const m = body.subarray(5);
      const status = m.length >= 2 && m[0] === 0x08 ? m[1] : 0;
      finish(status === 1 ? { ok: true } : { ok: false, message: `service unhealthy (responded with ${status === 2 ? 'NOT_SERVING' : status === 3 ? 'SERVICE_UNKNOWN' : 'UNKNOWN'})` });
    });
    req.on('error', (e) => finish({ ok: false, message: `health rpc failed: ${e.message}` }));
    req.end(frame);
  });
}

/**
 * Runs a lifecycle hook (`preStop`/`postStart`: exec, httpGet, tcpSocket or sleep) within
 * `timeoutMs`, with the same mechanics as a probe.
 */
export async function runHook(h: LifecycleHandler, t: ProbeTarget, timeoutMs: number, signal: AbortSignal): Promise<ProbeResult> {
  if (h.sleep) {
    const ms = Math.min(Math.max(0, h.sleep.seconds) * 1000, timeoutMs);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
    });
    return { ok: true };
  }
  const timeoutSeconds = Math.max(1, Math.ceil(timeoutMs / 1000));
  return runProbe({ exec: h.exec, httpGet: h.httpGet, tcpSocket: h.tcpSocket, timeoutSeconds }, t, signal);
}

export type ProbeKind = 'startup' | 'liveness' | 'readiness';

export interface ProberEvents {
  /** readiness changed (true only after the startup probe, if any, succeeded) */
  onReady(ready: boolean): void;
  /** the startup probe succeeded (called at once when there is none) */
  onStarted(): void;
  /** liveness or startup failed failureThreshold times in a row: the container must be restarted */
  onFailed(kind: 'liveness' | 'startup', message: string): void;
  /** one probe run failed (the kubelet's `Unhealthy` event) */
  onProbeFailure?(kind: ProbeKind, message: string): void;
}

/**
 * The probes of one container run (from its start to its exit), as the kubelet's prober
 * workers: each probe ticks every periodSeconds after initialDelaySeconds; a result changes
 * after successThreshold/failureThreshold equal results in a row; readiness starts as failed,
 * liveness as passed; liveness and readiness wait for the startup probe. Unlike the kubelet,
 * readiness is also peeked at a growing short interval until its first success (see #worker).
 */
export class ContainerProber {
  readonly #target: ProbeTarget;
  readonly #events: ProberEvents;
  readonly #abort = new AbortController();
  readonly #timers = new Set<NodeJS.Timeout>();
  #started = false;
  #stopped = false;

  constructor(target: ProbeTarget, events: ProberEvents) {
    this.#target = target;
    this.#events = events;
  }

  start(): void {
    const c = this.#target.container;
    if (c.startupProbe) this.#worker('startup', c.startupProbe);
    else this.#markStarted();
    if (c.livenessProbe) this.#worker('liveness', c.livenessProbe);
    if (c.readinessProbe) this.#worker('readiness', c.readinessProbe);
    else if (this.#started) this.#events.onReady(true);
  }

  stop(): void {
    this.#stopped = true;
    this.#abort.abort();
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
  }

  #markStarted(): void {
    this.#started = true;
    this.#events.onStarted();
  }

  #after(ms: number, fn: () => void): void {
    if (this.#stopped) return;
    const t = setTimeout(() => {
      this.#timers.delete(t);
      if (!this.#stopped) fn();
    }, ms);
    this.#timers.add(t);
  }

  #worker(kind: ProbeKind, probe: Probe): void {
    const timing = probeTiming(probe);
    let result = kind !== 'readiness'; // liveness starts passed, readiness failed; startup: not yet
    if (kind === 'startup') result = false;
    let lastRaw: boolean | undefined;
    let run = 0;
    const tick = async (): Promise<void> => {
      if (kind !== 'startup' && !this.#started) return this.#after(timing.periodSeconds * 1000, () => void tick());
      const r = await runProbe(probe, this.#target, this.#abort.signal);
      if (this.#stopped) return;
      if (!r.ok) this.#events.onProbeFailure?.(kind, r.message ?? `${kind} probe failed`);
      run = r.ok === lastRaw ? run + 1 : 1;
      lastRaw = r.ok;
      const threshold = r.ok ? timing.successThreshold : timing.failureThreshold;
      // liveness and startup must succeed only once to count; upstream forces successThreshold 1 for them
      const enough = run >= (r.ok && kind !== 'readiness' ? 1 : threshold);
      if (enough && r.ok !== result) {
        result = r.ok;
        if (kind === 'readiness') this.#events.onReady(result);
        else if (kind === 'startup' && result) {
          this.#markStarted();
          if (!this.#target.container.readinessProbe) this.#events.onReady(true);
          return; // the startup probe stops once it succeeded
        }
      }
      if (enough && !r.ok && kind !== 'readiness') {
        this.#events.onFailed(kind, r.message ?? `${kind} probe failed`);
        return; // the container is being restarted; a new run gets new workers
      }
      this.#after(timing.periodSeconds * 1000, () => void tick());
    };
    this.#after(timing.initialDelaySeconds * 1000, () => void tick());
    if (kind === 'readiness' && timing.successThreshold === 1) {
      // Until the first success, readiness is also peeked at 50 ms, then every 100 ms for the
      // first 3 s (where a program's start-up usually ends), then at doubling intervals (below
      // periodSeconds), so a pod joins its Endpoints as soon as it serves instead of a whole
      // period later. Peek failures are neither counted nor reported: the regular ticks do that.
      let delay = 50;
      let elapsed = 0;
      const peek = async (): Promise<void> => {
        if (result || this.#stopped) return;
        if (this.#started) {
          const r = await runProbe(probe, this.#target, this.#abort.signal);
          if (this.#stopped || result) return;
          if (r.ok) {
            result = true;
            lastRaw = true;
            run = 1;
            this.#events.onReady(true);
            return;
          }
        }
        elapsed += delay;
        delay = elapsed < 3000 ? 100 : delay * 2;
        if (elapsed + delay < timing.periodSeconds * 1000) this.#after(delay, () => void peek());
      };
      this.#after(timing.initialDelaySeconds * 1000 + delay, () => void peek());
    }
  }
}
