import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { constants } from 'node:os';
import path from 'node:path';
import { SETSID_CTTY, ptyCommand } from './pty.js';
import { type Sandbox, commandProblem } from './sandbox.js';

export interface ProcessSpec {
  argv: readonly string[];
  env: Readonly<Record<string, string>>;
  cwd: string;
  /** stdout and stderr are appended here; its directory is also the sandbox's lock dir */
  logFile: string;
  /** how the process is tied to the daemon's life (sandbox.ts); default: not at all */
  sandbox?: Sandbox;
  /** a mount sandbox's setup script (mount-script.ts), run by pid 1 before the program */
  setup?: string;
  /**
   * the cwd to check `argv[0]` against before spawning a wrapper (default `cwd`); false: do not
   * check (the command is only where the setup script mounts it)
   */
  commandCwd?: string | false;
  /** `stdin: true`: the process reads a pipe the runtime keeps (`GroupProcess.stdin`); otherwise /dev/null */
  stdin?: boolean;
  /**
   * `tty: true`: the process runs on a pseudo-terminal (pty.ts) whose output is the log and
   * whose input is the stdin pipe (its end is typed as ^D); resizable (`GroupProcess.resize`)
   */
  tty?: boolean;
  /** with a tty: prefix argv with `setsid -c` (default); false when argv already makes its session */
  ctty?: boolean;
}

export interface Exit {
  /** the container's exit code: the status, or 128 + signal number */
  exitCode: number;
  signal?: NodeJS.Signals;
  /** set when the process could not be started at all */
  startError?: string;
}

/**
 * One container's process group. The group leader is the container's "PID 1": when it exits,
 * whatever it left behind in its group is killed, as a container runtime would. With a `pidns`
 * sandbox the leader is the sandbox's `unshare`, the container's processes live in its PID
 * namespace, and the kernel ends all of them when the container's process exits or the daemon
 * dies; the exit code is the same (128 + n for a signal), but a death by signal inside the
 * namespace shows as that code alone, without `signal`.
 */
export class GroupProcess {
  readonly pid: number | undefined;
  /** resolves once the leader has exited and the group has been swept; never rejects */
  readonly exited: Promise<Exit>;
  /** the process's stdin (`stdin` or `tty` specs), open until ended */
  readonly stdin: Writable | undefined;
  readonly #resize: Writable | undefined;
  #done = false;

  private constructor(pid: number | undefined, exited: Promise<Exit>, io: { stdin?: Writable; resize?: Writable } = {}) {
    this.pid = pid;
    this.stdin = io.stdin;
    this.#resize = io.resize;
    this.exited = exited.then((e) => {
      this.#done = true;
      return e;
    });
  }

  get running(): boolean {
    return !this.#done && this.pid !== undefined;
  }

  /** Starts the process; a failure to start shows as an `exited` with `startError`. */
  static start(spec: ProcessSpec): GroupProcess {
    const problem = checkCwd(spec.cwd);
    if (problem) return new GroupProcess(undefined, Promise.resolve({ exitCode: 128, startError: problem }));
    let fd: number;
    try {
      // owner-only: logs hold whatever pods print (the state dir's contract, cli/state-dir.ts)
      mkdirSync(path.dirname(spec.logFile), { recursive: true, mode: 0o700 });
      fd = openSync(spec.logFile, 'a', 0o600);
    } catch (e) {
      return new GroupProcess(undefined, Promise.resolve({ exitCode: 128, startError: `cannot open log file: ${(e as Error).message}` }));
    }
    const cmd = spec.argv[0];
    const sandbox = spec.sandbox;
    if (sandbox && sandbox.kind !== 'none' && cmd !== undefined && spec.commandCwd !== false) {
      // the wrapper always starts: find out now what execvp would have said
      const problem = commandProblem(cmd, spec.env.PATH, spec.commandCwd ?? spec.cwd);
      if (problem) {
        closeSync(fd);
        const e = Object.assign(new Error(problem), { code: problem });
        return new GroupProcess(undefined, Promise.resolve({ exitCode: 128, startError: startMessage(cmd, e) }));
      }
    }
    // on a tty the program makes itself a session leader on it, inside its PID namespace (pty.ts)
    const argv = spec.tty && spec.ctty !== false ? [...SETSID_CTTY, ...spec.argv] : spec.argv;
    const wrapped = sandbox ? sandbox.wrap(argv, path.dirname(spec.logFile), spec.setup) : argv;
    // the pty helper passes the lifeline (fd 3) on and reads sizes on fd 4
    const [file, ...fileArgs] = spec.tty ? ptyCommand(wrapped, { resizeFd: 4, onEof: 'eof-char', keepFds: [3] }).flat() : wrapped;
    let child;
    try {
      // fd 3 is a lifeline: its other end closes when the daemon dies, however it dies, so the
      // built-in images (src/images/lib.mjs) can exit instead of outliving a killed daemon
      child = spawn(file, fileArgs, {
        detached: true,
        cwd: spec.cwd,
        env: { ...spec.env, KUBELOOP_LIFELINE_FD: '3' },
        stdio: [spec.stdin || spec.tty ? 'pipe' : 'ignore', fd, fd, 'pipe', ...(spec.tty ? (['pipe'] as const) : [])],
      });
      (child.stdio[3] as Socket | null)?.unref();
      for (const s of [child.stdin, child.stdio[4]]) s?.on('error', () => undefined);
    } catch (e) {
      closeSync(fd);
      return new GroupProcess(undefined, Promise.resolve({ exitCode: 128, startError: startMessage(cmd ?? '', e as NodeJS.ErrnoException) }));
    }
    closeSync(fd);
    const pid = child.pid;
    const exited = new Promise<Exit>((resolve) => {
      child.once('error', (e: NodeJS.ErrnoException) => {
        // spawn failures arrive here, with no 'exit'
        if (pid === undefined) resolve({ exitCode: 128, startError: startMessage(file ?? '', e) });
      });
      child.once('exit', (code, signal) => {
        const exit: Exit = signal ? { exitCode: 128 + (constants.signals[signal] ?? 0), signal } : { exitCode: code ?? 0 };
        if (pid === undefined || !killGroup(pid, 'SIGKILL')) return resolve(exit);
        // something was left in the group: wait (bounded) until it is really gone
        void groupGone(pid, GROUP_SWEEP_MS).then(() => resolve(exit));
      });
    });
    return new GroupProcess(pid, exited, { stdin: child.stdin ?? undefined, resize: (child.stdio[4] as Writable | null) ?? undefined });
  }

  /** the terminal's new size (tty only) */
  resize(cols: number, rows: number): void {
    if (this.#resize?.writable) this.#resize.write(`${cols} ${rows}\n`);
  }

  /** Sends a signal to the whole group; false when it is gone. */
  signal(sig: NodeJS.Signals): boolean {
    if (this.pid === undefined || this.#done) return false;
    return killGroup(this.pid, sig);
  }

  /** SIGTERM, then SIGKILL after `graceMs` (0: SIGKILL at once); resolves on exit. */
  async stop(graceMs: number): Promise<Exit> {
    if (this.pid === undefined || this.#done) return this.exited;
    if (graceMs <= 0) {
      this.signal('SIGKILL');
      return this.exited;
    }
    this.signal('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((r) => {
      timer = setTimeout(r, graceMs);
    });
    await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (!this.#done) this.signal('SIGKILL');
    return this.exited;
  }
}

/** How long to wait for the rest of a group to die after its leader exited. */
const GROUP_SWEEP_MS = 2000;

/** Resolves once no live process is left in the group (or after `maxMs`). */
async function groupGone(pgid: number, maxMs: number): Promise<void> {
  const deadline = Date.now() + maxMs;
  while ((await groupAlive(pgid)) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** /proc reads in flight at once while scanning (libuv's thread pool has 4 threads by default) */
const SCAN_CONCURRENCY = 8;

/**
 * Whether a process group still has a live member. On Linux, zombies do not count: they are
 * dead, waiting for init to reap them (which some container inits do slowly). The /proc scan
 * is asynchronous, a few reads at a time: it runs on the daemon's event loop while pods stop,
 * and a machine may have thousands of processes.
 */
export async function groupAlive(pgid: number): Promise<boolean> {
  if (!killGroup(pgid, 0)) return false;
  if (process.platform !== 'linux') return true;
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return true;
  }
  const pids = entries.filter((e) => /^\d+$/.test(e));
  let next = 0;
  let found = false;
  const scan = async (): Promise<void> => {
    while (!found && next < pids.length) {
      const e = pids[next++];
      let stat: string;
      try {
        stat = await readFile(`/proc/${e}/stat`, 'utf8');
      } catch {
        continue;
      }
      // pid (comm) state ppid pgrp ...
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(f[2]) === pgid && f[0] !== 'Z' && f[0] !== 'X') found = true;
    }
  };
  await Promise.all(Array.from({ length: SCAN_CONCURRENCY }, scan));
  return found;
}

export function killGroup(pgid: number, sig: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, sig);
    return true;
  } catch {
    return false;
  }
}

function checkCwd(cwd: string): string | undefined {
  try {
    if (statSync(cwd).isDirectory()) return undefined;
    return `workingDir ${cwd} is not a directory`;
  } catch {
    // a container runtime would create it inside the image; here it would be the host's filesystem
    return `workingDir ${cwd} does not exist on this machine (pods are processes here): create it, or use an existing directory`;
  }
}

function startMessage(cmd: string, e: NodeJS.ErrnoException): string {
  if (e.code === 'ENOENT') return `exec: "${cmd}": executable file not found in $PATH`;
  if (e.code === 'EACCES') return `exec: "${cmd}": permission denied`;
  return `exec: "${cmd}": ${e.message}`;
}
