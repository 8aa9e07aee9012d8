import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { constants } from 'node:os';
import path from 'node:path';

export interface ProcessSpec {
  argv: readonly string[];
  env: Readonly<Record<string, string>>;
  cwd: string;
  /** stdout and stderr are appended here */
  logFile: string;
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
 * whatever it left behind in its group is killed, as a container runtime would.
 */
export class GroupProcess {
  readonly pid: number | undefined;
  /** resolves once the leader has exited and the group has been swept; never rejects */
  readonly exited: Promise<Exit>;
  #done = false;

  private constructor(pid: number | undefined, exited: Promise<Exit>) {
    this.pid = pid;
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
      mkdirSync(path.dirname(spec.logFile), { recursive: true });
      fd = openSync(spec.logFile, 'a');
    } catch (e) {
      return new GroupProcess(undefined, Promise.resolve({ exitCode: 128, startError: `cannot open log file: ${(e as Error).message}` }));
    }
    const [cmd, ...args] = spec.argv;
    let child;
    try {
      child = spawn(cmd, args, { detached: true, cwd: spec.cwd, env: spec.env, stdio: ['ignore', fd, fd] });
    } catch (e) {
      closeSync(fd);
      return new GroupProcess(undefined, Promise.resolve({ exitCode: 128, startError: startMessage(cmd, e as NodeJS.ErrnoException) }));
    }
    closeSync(fd);
    const pid = child.pid;
    const exited = new Promise<Exit>((resolve) => {
      child.once('error', (e: NodeJS.ErrnoException) => {
        // spawn failures arrive here, with no 'exit'
        if (pid === undefined) resolve({ exitCode: 128, startError: startMessage(cmd, e) });
      });
      child.once('exit', (code, signal) => {
        if (pid !== undefined) killGroup(pid, 'SIGKILL');
        resolve(
          signal
            ? { exitCode: 128 + (constants.signals[signal] ?? 0), signal }
            : { exitCode: code ?? 0 },
        );
      });
    });
    return new GroupProcess(pid, exited);
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

export function killGroup(pgid: number, sig: NodeJS.Signals): boolean {
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
