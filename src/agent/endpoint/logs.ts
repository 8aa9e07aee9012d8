/**
 * `pods/log`: a container's output from the node agent's files,
 * `<stateDir>/pods/<ns>_<name>_<uid>/<container>/<restartCount>.log` (the newest is the running
 * container, `previous` the one before), with `container`, `tailLines`, `limitBytes`,
 * `sinceSeconds`, `timestamps` and `follow` as kubectl sends them.
 *
 * The files hold raw output; when each part of it was written is in the runtime's side index
 * (`<n>.log.times`, agent/runtime/log-times.ts): `timestamps` stamps each line with the time its
 * first byte was written, `sinceSeconds`/`sinceTime` start at the first line written at or after
 * that time. A file without an index (written before it existed) falls back to the file's
 * modification time.
 *
 * Nothing here reads synchronously: the API shares its event loop with DNS and the proxy.
 */
import { type FSWatcher, watch } from 'node:fs';
import { type FileHandle, open, readdir } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { ApiError, badRequest, invalidObject } from '../../api/errors.js';
import { type FieldError, invalid } from '../../api/field.js';
import type { Pod, Stored } from '../../api/types.js';
import type { Store } from '../../store/types.js';
import { offsetSince, readLogTimes, timeAt } from '../runtime/log-times.js';
import { parseGoBool } from '../../util/parse-bool.js';
import { BufferPool, type ChunkSink, LineStamper, copyRange, stamp, tailOffset } from './log-file.js';

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

export interface LogQuery {
  container?: string;
  follow: boolean;
  previous: boolean;
  tailLines?: number;
  limitBytes?: number;
  sinceSeconds?: number;
  /** `sinceTime`, as ms since the epoch */
  sinceTime?: number;
  timestamps: boolean;
}

export function parseLogQuery(q: URLSearchParams): LogQuery {
  const int = (k: string): number | undefined => {
    const v = q.get(k);
    if (v === null || v === '') return undefined;
    const n = Number(v);
    if (!Number.isInteger(n)) throw badRequest(`invalid ${k}: "${v}" is not an integer`);
    return n;
  };
  // booleans as Go's strconv.ParseBool reads them (the kubelet's decoder), a 400 naming the parameter otherwise
  const bool = (k: string): boolean => {
    const v = q.get(k);
    if (v === null || v === '') return false;
    const b = parseGoBool(v);
    if (b === undefined) throw badRequest(`invalid ${k}: "${v}" is not a boolean (true, false, 1, 0, t, f)`);
    return b;
  };
  const since = q.get('sinceTime');
  let sinceTime: number | undefined;
  if (since) {
    sinceTime = RFC3339.test(since) ? Date.parse(since) : NaN;
    if (Number.isNaN(sinceTime)) throw badRequest(`invalid sinceTime: "${since}" is not an RFC 3339 time, e.g. 2006-01-02T15:04:05Z`);
  }
  return {
    container: q.get('container') || undefined,
    follow: bool('follow'),
    previous: bool('previous'),
    tailLines: int('tailLines'),
    limitBytes: int('limitBytes'),
    sinceSeconds: int('sinceSeconds'),
    ...(sinceTime !== undefined ? { sinceTime } : {}),
    timestamps: bool('timestamps'),
  };
}

/** apimachinery's ValidatePodLogOptions: a 422 naming the field, before any file is opened */
function validateLogQuery(q: LogQuery, name: string): void {
  const causes: FieldError[] = [];
  if (q.tailLines !== undefined && q.tailLines < 0) causes.push(invalid('tailLines', q.tailLines, 'must be greater than or equal to 0'));
  if (q.limitBytes !== undefined && q.limitBytes < 1) causes.push(invalid('limitBytes', q.limitBytes, 'must be greater than 0'));
  if (q.sinceSeconds !== undefined && q.sinceSeconds < 1) causes.push(invalid('sinceSeconds', q.sinceSeconds, 'must be greater than 0'));
  if (q.sinceSeconds !== undefined && q.sinceTime !== undefined) causes.push(invalid('sinceSeconds', q.sinceSeconds, 'at most one of sinceTime or sinceSeconds may be specified'));
  if (causes.length) throw invalidObject('PodLogOptions', name, causes);
}

export function pickContainer(pod: Stored<Pod>, wanted: string | undefined): string {
  const all = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? []), ...(pod.spec?.ephemeralContainers ?? [])].map((c) => c.name);
  if (wanted) {
    if (!all.includes(wanted)) throw badRequest(`container ${wanted} is not valid for pod ${pod.metadata.name}`);
    return wanted;
  }
  const def = pod.metadata.annotations?.['kubectl.kubernetes.io/default-container'];
  if (def && all.includes(def)) return def;
  const main = (pod.spec?.containers ?? []).map((c) => c.name);
  if (main.length === 1) return main[0];
  throw badRequest(`a container name must be specified for pod ${pod.metadata.name}, choose one of: [${main.join(' ')}]`);
}

/** The log files of a container, oldest first (by restart count). */
async function logFiles(dir: string): Promise<{ file: string; n: number }[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return names
    .map((f) => /^(\d+)\.log$/.exec(f))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ file: join(dir, m[0]), n: Number(m[1]) }))
    .sort((a, b) => a.n - b.n);
}

/** how often a follow looks for a replaced container or a finished pod (appends wake it at once) */
const FOLLOW_CHECK_MS = 250;

export interface LogDeps {
  store: Store;
  stateDir: string;
}

/**
 * Streams the log: every read is async and chunked (log-file.ts) and the reply is written
 * with backpressure, so a 300 MB log neither blocks the event loop nor sits in memory.
 */
export async function serveLogs(req: IncomingMessage, res: ServerResponse, deps: LogDeps, namespace: string, name: string, q: LogQuery): Promise<void> {
  validateLogQuery(q, name);
  const pod = await deps.store.get<Pod>('Pod', namespace, name);
  const container = pickContainer(pod, q.container);
  const dir = join(deps.stateDir, 'pods', `${namespace}_${name}_${pod.metadata.uid}`, container);
  const files = await logFiles(dir);
  const waiting = (): ApiError => {
    const w = [...(pod.status?.containerStatuses ?? []), ...(pod.status?.initContainerStatuses ?? [])].find((c) => c.name === container)?.state?.waiting;
    return badRequest(`container "${container}" in pod "${name}" is waiting to start: ${w?.reason ?? 'ContainerCreating'}`);
  };
  let target: { file: string; n: number } | undefined;
  if (q.previous) {
    target = files.length >= 2 ? files[files.length - 2] : undefined;
    if (!target) throw badRequest(`previous terminated container "${container}" in pod "${name}" not found`);
  } else {
    target = files[files.length - 1];
    if (!target) throw waiting();
  }
  let fh: FileHandle;
  try {
    fh = await open(target.file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw waiting();
    throw err;
  }
  try {
    const st = await fh.stat();
    const size = st.size;
    const times = q.timestamps || q.sinceSeconds !== undefined || q.sinceTime !== undefined ? await readLogTimes(target.file) : undefined;
    const sinceMs = q.sinceTime ?? (q.sinceSeconds !== undefined ? Date.now() - q.sinceSeconds * 1000 : undefined);
    // since: the first part written at or after it (without an index: all or nothing by the file's time)
    const sinceFrom = sinceMs === undefined ? 0 : times ? Math.min(offsetSince(times, sinceMs), size) : st.mtimeMs < sinceMs ? size : 0;
    const tailFrom = q.tailLines === undefined ? 0 : await tailOffset(fh, size, q.tailLines);
    const from = Math.max(sinceFrom, tailFrom);
    // each line: when its first byte was written (without an index, or not yet indexed: the file's time)
    const stampAt = (offset: number): string => stamp((times && timeAt(times, offset)) ?? st.mtimeMs);
    const stamper = q.timestamps ? new LineStamper(stampAt, from) : undefined;
    const out = new Output(res, q.limitBytes, stamper);
    // no Content-Length: the body is chunked for HTTP/1.1 clients, and ends with the connection for
    // HTTP/1.0 ones (the API server's relay, server/agent-relay.ts: chunking costs a copy per write)
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Cache-Control': 'no-cache, private' });
    await copyRange(fh, from, size, out);
    if (!q.follow || q.previous || !out.open) {
      res.end();
      return;
    }
    // appended while following: read as soon as written, so now is when (the index lags a little)
    stamper?.setClock(() => stamp(Date.now()));
    res.flushHeaders?.();
    await follow(req, res, deps, pod, target, fh, size, out);
  } finally {
    await fh.close().catch(() => {});
  }
}

/**
 * The reply body: the `limitBytes` budget, optional line stamps, backpressure, and a small
 * pool of read buffers, each back in the pool once the socket has taken its bytes.
 */
class Output implements ChunkSink {
  readonly #res: ServerResponse;
  readonly #stamper: LineStamper | undefined;
  readonly #pool = new BufferPool();
  readonly #closed: Promise<void>;
  #budget: number;

  constructor(res: ServerResponse, limitBytes: number | undefined, stamper: LineStamper | undefined) {
    this.#res = res;
    this.#budget = limitBytes ?? Infinity;
    this.#stamper = stamper;
    this.#closed = new Promise((resolve) => res.once('close', resolve));
  }

  /** false once the budget is spent or the client is gone */
  get open(): boolean {
    return this.#budget > 0 && !this.#res.destroyed && !this.#res.writableEnded;
  }

  take(): Promise<Buffer> {
    // a closed response may never call back for its pending writes: do not wait for their buffers
    if (!this.open) return Promise.resolve(Buffer.allocUnsafe(1));
    return Promise.race([this.#pool.take(), this.#closed.then(() => Buffer.allocUnsafe(1))]);
  }

  give(b: Buffer): void {
    if (b.length > 1) this.#pool.give(b);
  }

  async put(chunk: Buffer, release: () => void): Promise<boolean> {
    if (!this.open) {
      release();
      return false;
    }
    let out = chunk;
    if (this.#stamper) {
      out = this.#stamper.transform(chunk); // a copy: the read buffer is free at once
      release();
    }
    if (out.length > this.#budget) out = out.subarray(0, this.#budget);
    this.#budget -= out.length;
    const more = this.#res.write(out, this.#stamper ? undefined : () => release());
    if (!more) await drained(this.#res);
    return this.open;
  }
}

/** resolves once `res` may take more, or is closed */
function drained(res: ServerResponse): Promise<void> {
  if (res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/**
 * Streams what is appended to the file until the container is replaced (a newer file), the pod
 * is gone or finished, or the client leaves. The files are written by other processes: an
 * fs.watch on the file wakes it at once, and a FOLLOW_CHECK_MS timer covers the rest.
 */
async function follow(
  req: IncomingMessage,
  res: ServerResponse,
  deps: LogDeps,
  pod: Stored<Pod>,
  target: { file: string; n: number },
  fh: FileHandle,
  start: number,
  out: Output,
): Promise<void> {
  let wake: (() => void) | undefined;
  const poke = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(target.file, { persistent: false }, poke);
    watcher.on('error', () => {}); // the timer still covers it
  } catch {
    // no inotify watch to be had (the per-user limit): the timer alone
  }
  req.once('close', poke);
  res.once('close', poke);
  const dir = join(target.file, '..');
  let offset = start;
  let nextCheck = 0;
  try {
    while (out.open) {
      offset = await copyRange(fh, offset, (await fh.stat()).size, out);
      if (!out.open) break;
      if (Date.now() >= nextCheck) {
        nextCheck = Date.now() + FOLLOW_CHECK_MS;
        const cur = await deps.store.tryGet<Pod>('Pod', pod.metadata.namespace, pod.metadata.name).catch(() => undefined);
        const replaced = (await logFiles(dir)).some((f) => f.n > target.n);
        const finished = !cur || cur.metadata.uid !== pod.metadata.uid || cur.status?.phase === 'Succeeded' || cur.status?.phase === 'Failed';
        if (replaced || finished) {
          await copyRange(fh, offset, (await fh.stat()).size, out);
          break;
        }
      }
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        wake = resolve;
        timer = setTimeout(poke, FOLLOW_CHECK_MS);
      });
      clearTimeout(timer);
    }
  } finally {
    watcher?.close();
    req.off('close', poke);
    res.off('close', poke);
    if (!res.writableEnded) res.end();
  }
}

export const isLogNotFound = (e: unknown): boolean => e instanceof ApiError && e.reason === 'NotFound';
