/**
 * When each part of a container's log was written: the side index `<n>.log.times` next to
 * `<n>.log`, for `kubectl logs --timestamps / --since / --since-time` (the kubelet's CRI log
 * format stamps every line; here the container writes its file directly, so the runtime records
 * the time instead).
 *
 * The runtime watches the log file (inotify through fs.watch, a 250 ms poll where no watch can
 * be had) and, each time it has grown, appends `<new size> <ms since the epoch>\n`: the bytes
 * between the previous size and the new one were written at (within a few ms before) that time.
 * Observations are serialized and coalesced — one stat in flight, one more if the file changed
 * meanwhile — so a chatty container costs at most one record per event-loop turn, and nothing
 * here blocks the event loop.
 */
import { type FSWatcher, watch } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';
import type { Logger } from 'pino';

/** the index of a log file */
export const timesFileOf = (logFile: string): string => `${logFile}.times`;

const POLL_MS = 250;

export class LogTimes {
  readonly #file: string;
  readonly #log: Logger | undefined;
  #out: Promise<FileHandle | undefined>;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #size = 0;
  #busy: Promise<void> | undefined;
  #again = false;
  #stopped = false;

  private constructor(file: string, log: Logger | undefined) {
    this.#file = file;
    this.#log = log;
    this.#out = open(timesFileOf(file), 'a', 0o600).catch((err: unknown) => {
      log?.warn({ err, file }, 'cannot write the log time index: kubectl logs --timestamps/--since fall back to the file time');
      return undefined;
    });
  }

  /** Starts recording for `logFile` (which exists: the runtime opened it for the container). */
  static start(logFile: string, log?: Logger): LogTimes {
    const t = new LogTimes(logFile, log);
    try {
      t.#watcher = watch(logFile, { persistent: false }, () => t.#poke());
      t.#watcher.on('error', () => t.#poll());
    } catch {
      t.#poll(); // no inotify watch to be had (the per-user limit)
    }
    t.#poke();
    return t;
  }

  #poll(): void {
    this.#timer ??= setInterval(() => this.#poke(), POLL_MS).unref();
  }

  #poke(): void {
    if (this.#busy) {
      this.#again = true;
      return;
    }
    this.#busy = this.#observe().finally(() => (this.#busy = undefined));
  }

  async #observe(): Promise<void> {
    do {
      this.#again = false;
      let size: number;
      try {
        size = (await stat(this.#file)).size;
      } catch {
        return; // the pod's directory is gone
      }
      const at = Date.now();
      if (size > this.#size) {
        this.#size = size;
        const fh = await this.#out;
        await fh?.appendFile(`${size} ${at}\n`).catch(() => undefined);
      }
    } while (this.#again && !this.#stopped);
  }

  /** A last observation (the container has exited), then stop; idempotent. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#watcher?.close();
    if (this.#timer) clearInterval(this.#timer);
    await this.#busy;
    this.#stopped = false;
    await this.#observe();
    this.#stopped = true;
    await (await this.#out)?.close().catch(() => undefined);
  }
}

/** The index of a log file as written by LogTimes, for readers; undefined when there is none. */
export interface LogTimeIndex {
  /** the byte offset where each observed part ends, ascending */
  ends: number[];
  /** when each part was observed (ms since the epoch) */
  ms: number[];
}

/** Reads the index (a torn last record is ignored); undefined when the file is missing. */
export async function readLogTimes(logFile: string): Promise<LogTimeIndex | undefined> {
  let text: string;
  try {
    const fh = await open(timesFileOf(logFile), 'r');
    try {
      text = await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch {
    return undefined;
  }
  const ends: number[] = [];
  const ms: number[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+) (\d+)$/.exec(line);
    if (!m) continue;
    const end = Number(m[1]);
    if (ends.length && end <= ends[ends.length - 1]) continue;
    ends.push(end);
    ms.push(Number(m[2]));
  }
  return { ends, ms };
}

/** When the byte at `offset` was written, or undefined when it was not observed yet. */
export function timeAt(ix: LogTimeIndex, offset: number): number | undefined {
  let lo = 0;
  let hi = ix.ends.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ix.ends[mid] > offset) hi = mid;
    else lo = mid + 1;
  }
  return lo < ix.ends.length ? ix.ms[lo] : undefined;
}

/** The first byte written at or after `sinceMs`: the start of the first part observed then; `Infinity` when none was. */
export function offsetSince(ix: LogTimeIndex, sinceMs: number): number {
  const i = ix.ms.findIndex((t) => t >= sinceMs);
  if (i < 0) return Infinity;
  return i === 0 ? 0 : ix.ends[i - 1];
}
