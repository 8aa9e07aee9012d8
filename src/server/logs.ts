/**
 * `pods/log`: a container's output from the node agent's files,
 * `<stateDir>/pods/<ns>_<name>_<uid>/<container>/<restartCount>.log` (the newest is the running
 * container, `previous` the one before), with `container`, `tailLines`, `limitBytes`,
 * `sinceSeconds`, `timestamps` and `follow` as kubectl sends them.
 *
 * The files hold raw output without per-line times: `timestamps=true` stamps lines with the
 * time they are read while following, and older lines with the file's modification time.
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, readdirSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { ApiError, badRequest } from '../api/errors.js';
import type { Pod, Stored } from '../api/types.js';
import type { Store } from '../store/types.js';

export interface LogQuery {
  container?: string;
  follow: boolean;
  previous: boolean;
  tailLines?: number;
  limitBytes?: number;
  sinceSeconds?: number;
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
  return {
    container: q.get('container') || undefined,
    follow: q.get('follow') === 'true',
    previous: q.get('previous') === 'true',
    tailLines: int('tailLines'),
    limitBytes: int('limitBytes'),
    sinceSeconds: int('sinceSeconds'),
    timestamps: q.get('timestamps') === 'true',
  };
}

function pickContainer(pod: Stored<Pod>, wanted: string | undefined): string {
  const all = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].map((c) => c.name);
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
function logFiles(dir: string): { file: string; n: number }[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((f) => /^(\d+)\.log$/.exec(f))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ file: join(dir, m[0]), n: Number(m[1]) }))
    .sort((a, b) => a.n - b.n);
}

const stamp = (ms: number): string => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z');

function tail(text: string, lines: number | undefined): string {
  if (lines === undefined || lines < 0) return text;
  if (lines === 0) return '';
  const parts = text.split('\n');
  const trailing = parts[parts.length - 1] === '';
  if (trailing) parts.pop();
  return parts.slice(-lines).join('\n') + (trailing ? '\n' : '');
}

function withTimestamps(text: string, ms: number): string {
  if (!text) return text;
  const trailing = text.endsWith('\n');
  const lines = (trailing ? text.slice(0, -1) : text).split('\n');
  return lines.map((l) => `${stamp(ms)} ${l}`).join('\n') + (trailing ? '\n' : '');
}

export interface LogDeps {
  store: Store;
  stateDir: string;
}

export async function serveLogs(req: IncomingMessage, res: ServerResponse, deps: LogDeps, namespace: string, name: string, q: LogQuery): Promise<void> {
  const pod = await deps.store.get<Pod>('Pod', namespace, name);
  const container = pickContainer(pod, q.container);
  const dir = join(deps.stateDir, 'pods', `${namespace}_${name}_${pod.metadata.uid}`, container);
  const files = logFiles(dir);
  let target: { file: string; n: number } | undefined;
  if (q.previous) {
    target = files.length >= 2 ? files[files.length - 2] : undefined;
    if (!target) throw badRequest(`previous terminated container "${container}" in pod "${name}" not found`);
  } else {
    target = files[files.length - 1];
    if (!target) {
      const waiting = [...(pod.status?.containerStatuses ?? []), ...(pod.status?.initContainerStatuses ?? [])].find((c) => c.name === container)?.state?.waiting;
      throw badRequest(`container "${container}" in pod "${name}" is waiting to start: ${waiting?.reason ?? 'ContainerCreating'}`);
    }
  }
  const st = statSync(target.file);
  let text = readFileSync(target.file, 'utf8');
  let offset = Buffer.byteLength(text);
  if (q.sinceSeconds !== undefined && st.mtimeMs < Date.now() - q.sinceSeconds * 1000) text = '';
  text = tail(text, q.tailLines);
  if (q.timestamps) text = withTimestamps(text, st.mtimeMs);
  let budget = q.limitBytes ?? Infinity;
  const write = (s: string): boolean => {
    if (budget <= 0) return false;
    let b = Buffer.from(s);
    if (b.length > budget) b = b.subarray(0, budget);
    budget -= b.length;
    res.write(b);
    return budget > 0;
  };
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Cache-Control': 'no-cache, private', ...(q.follow ? { 'Transfer-Encoding': 'chunked' } : {}) });
  if (!q.follow || q.previous) {
    write(text);
    res.end();
    return;
  }
  if (!write(text)) {
    res.end();
    return;
  }
  res.flushHeaders?.();
  await followFile(req, res, deps, pod, target, offset, q, write, (o) => (offset = o));
}

/**
 * Streams what is appended to the file until the container is replaced (a newer file), the pod
 * is gone or finished, or the client leaves. Polls: the files are written by other processes.
 */
function followFile(
  req: IncomingMessage,
  res: ServerResponse,
  deps: LogDeps,
  pod: Stored<Pod>,
  target: { file: string; n: number },
  start: number,
  q: LogQuery,
  write: (s: string) => boolean,
  setOffset: (o: number) => void,
): Promise<void> {
  return new Promise((resolve) => {
    let offset = start;
    let done = false;
    let partial = '';
    let timer: NodeJS.Timeout | undefined;
    const stop = () => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      if (partial) write(q.timestamps ? withTimestamps(partial, Date.now()) : partial);
      if (!res.writableEnded) res.end();
      resolve();
    };
    req.on('close', stop);
    res.on('close', stop);
    const readMore = (): boolean => {
      let size: number;
      try {
        size = statSync(target.file).size;
      } catch {
        return false;
      }
      if (size <= offset) return false;
      const fd = openSync(target.file, 'r');
      try {
        const buf = Buffer.alloc(size - offset);
        const n = readSync(fd, buf, 0, buf.length, offset);
        offset += n;
        setOffset(offset);
        let chunk = buf.subarray(0, n).toString('utf8');
        if (q.timestamps) {
          chunk = partial + chunk;
          const cut = chunk.lastIndexOf('\n');
          partial = chunk.slice(cut + 1);
          chunk = cut >= 0 ? withTimestamps(chunk.slice(0, cut + 1), Date.now()) : '';
        }
        if (chunk && !write(chunk)) stop();
      } finally {
        closeSync(fd);
      }
      return true;
    };
    const dir = join(target.file, '..');
    const tick = async () => {
      if (done) return;
      readMore();
      const cur = await deps.store.tryGet<Pod>('Pod', pod.metadata.namespace, pod.metadata.name).catch(() => undefined);
      const replaced = logFiles(dir).some((f) => f.n > target.n);
      const finished = !cur || cur.metadata.uid !== pod.metadata.uid || cur.status?.phase === 'Succeeded' || cur.status?.phase === 'Failed';
      if (replaced || finished) {
        readMore();
        stop();
        return;
      }
      timer = setTimeout(() => void tick(), 100);
    };
    void tick();
  });
}

export const isLogNotFound = (e: unknown): boolean => e instanceof ApiError && e.reason === 'NotFound';
