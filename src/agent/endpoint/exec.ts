/**
 * Runs a command as a container runs (`kubectl exec`): the container's environment, its
 * working dir, and — where the container runs in namespaces (sandbox.ts) — inside its PID and
 * mount namespaces (and user namespace), entered with nsenter (the runtime's `enterPrefix`,
 * runtime/enter.ts, which an ephemeral container with a `targetContainerName` uses too).
 *
 * With a tty the command gets a pseudo-terminal from the runtime's Python helper (runtime/pty.ts),
 * started through `setsid -c` (its controlling tty), with window sizes on fd 3 — so resizes
 * work, which `script(1)` cannot do (it copies the size of a terminal it does not have here).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { Writable } from 'node:stream';
import { type ExecTarget, SETSID_CTTY, enterPrefix, ptyCommand } from '../runtime/index.js';

export interface ExecProcess {
  child: ChildProcess;
  stdin: Writable;
  /** resizes the pty (tty only) */
  resize(cols: number, rows: number): void;
  /** the exit code (128 + n for a signal); rejects when it could not start */
  exited: Promise<number>;
  /** ends the command and what it started (its process group) */
  kill(): void;
}

/** Starts `argv` in `t`'s environment; with `tty`, on a pseudo-terminal of `size`. */
export async function startExec(t: ExecTarget, argv: readonly string[], o: { tty: boolean; size?: { width: number; height: number } }): Promise<ExecProcess> {
  if (!argv.length) throw new Error('command: Required value: give the command to run after --');
  const { prefix, setsCwd } = await enterPrefix(t);
  // with a tty, setsid -c makes the command a session leader with the pty as its controlling
  // terminal from inside the PID namespace (a session made outside it, by the helper, would have
  // a process group the shell cannot see: dash fails to hand the terminal back when it exits)
  const cmd = [...prefix, ...(o.tty ? SETSID_CTTY : []), ...argv];
  const [file, args] = o.tty ? ptyCommand(cmd, { cols: o.size?.width, rows: o.size?.height, resizeFd: 3 }) : [cmd[0], cmd.slice(1)];
  const child = spawn(file, args, {
    env: { ...t.env },
    ...(setsCwd ? {} : { cwd: t.cwd }),
    stdio: o.tty ? ['pipe', 'pipe', 'pipe', 'pipe'] : ['pipe', 'pipe', 'pipe'],
    detached: true,
  });
  const exited = new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, sig) => resolve(code ?? 128 + (sig ? signalNumber(sig) : 0)));
  });
  const side = o.tty ? (child.stdio[3] as Writable) : undefined;
  side?.on('error', () => {});
  child.stdin!.on('error', () => {});
  return {
    child,
    stdin: child.stdin!,
    resize: (cols, rows) => side?.writable && side.write(`${cols} ${rows}\n`),
    exited,
    kill: () => {
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    },
  };
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGPIPE: 13 };
const signalNumber = (s: NodeJS.Signals): number => SIGNALS[s] ?? 1;
