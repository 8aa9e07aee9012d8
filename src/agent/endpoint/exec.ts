/**
 * Runs a command as a container runs (`kubectl exec`): the container's environment, its
 * working dir, and — where the container runs in namespaces (sandbox.ts) — inside its PID and
 * mount namespaces (and user namespace), entered with util-linux `nsenter`:
 *
 *   nsenter --user=/proc/L/ns/user --mount=/proc/L/ns/mnt --pid=/proc/P1/ns/pid -t P1 -w -- [execPrefix] argv
 *
 * L is the container's group leader (the sandbox's `unshare`, which holds the user and mount
 * namespaces), P1 its child, pid 1 of the container's PID namespace (its cwd is the container's
 * working dir as the container sees it: `-w`). Only namespaces that differ from the daemon's
 * are entered. Entering a user namespace made by `--map-root-user` makes the command root in
 * it: the sandbox's `execPrefix` maps it back to the daemon's uid, as the container's program
 * was; one made by `--map-current-user` keeps the uid (`--preserve-credentials`).
 *
 * With a tty the command gets a pseudo-terminal from a small Python helper (Node has no pty):
 * `os.openpty()`, the command started on its slave side through `setsid -c` (its controlling tty), and window sizes arrive on fd 3 as
 * `cols rows` lines, set with TIOCSWINSZ — so resizes work, which `script(1)` cannot do (it
 * copies the size of a terminal it does not have here).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile, readlink } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import type { ExecTarget } from '../runtime/index.js';

const NSENTER = '/usr/bin/nsenter';
const PYTHON = '/usr/bin/python3';
const SETSID = '/usr/bin/setsid';

/**
 * The pty helper: argv = cols rows command…; copies 0 → pty and pty → 1, applies `cols rows`
 * lines from fd 3, exits with the command's exit code (128 + n for a signal, as a shell reports).
 */
const PTY_HELPER = String.raw`
import fcntl, os, select, signal, struct, subprocess, sys, termios
cols, rows, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
fd, slave = os.openpty()
try:
    child = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
except OSError as e:
    sys.stderr.write('exec: "%s": %s\n' % (argv[0], e.strerror))
    sys.exit(127)
os.close(slave)
pid = child.pid
def size(c, r):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', r, c, 0, 0))
size(cols, rows)
src = [fd, 0, 3]
buf = b''
status = None
while True:
    try:
        ready, _, _ = select.select(src, [], [], 0.2 if status is not None else None)
    except InterruptedError:
        continue
    if not ready and status is not None:
        break
    if fd in ready:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b''
        if not data:
            src.remove(fd)
            if status is None:
                status = child.wait()
            break
        os.write(1, data)
    if 0 in ready:
        data = os.read(0, 65536)
        if data:
            os.write(fd, data)
        else:
            src.remove(0)
    if 3 in ready:
        data = os.read(3, 4096)
        if not data:
            src.remove(3)
        buf += data
        while b'\n' in buf:
            line, buf = buf.split(b'\n', 1)
            try:
                c, r = (int(x) for x in line.split())
                size(c, r)
                os.kill(pid, signal.SIGWINCH)
            except (ValueError, OSError):
                pass
if status is None:
    status = child.wait()
sys.exit(status if status >= 0 else 128 - status)
`;

const nsId = async (file: string): Promise<string | undefined> => readlink(file).catch(() => undefined);

/** pid 1 of the container's PID namespace: the leader's first child */
async function firstChild(leader: number): Promise<number | undefined> {
  const text = await readFile(`/proc/${leader}/task/${leader}/children`, 'utf8').catch(() => '');
  const pid = Number(text.trim().split(/\s+/)[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** the nsenter prefix for `t` (empty: run on the host as is) and whether it sets the cwd itself */
export async function enterPrefix(t: ExecTarget): Promise<{ prefix: string[]; setsCwd: boolean }> {
  if (t.sandbox.kind !== 'pidns') return { prefix: [], setsCwd: false };
  const leader = t.pid;
  const p1 = await firstChild(leader);
  if (p1 === undefined) throw new Error(`container process ${leader} has no pid 1 in its namespace (it is starting or ending): try again`);
  const differs = async (ns: string, pid: number): Promise<boolean> => {
    const theirs = await nsId(`/proc/${pid}/ns/${ns}`);
    return theirs !== undefined && theirs !== (await nsId(`/proc/self/ns/${ns}`));
  };
  const args = [NSENTER];
  const user = await differs('user', leader);
  const mnt = await differs('mnt', leader);
  if (user) args.push(`--user=/proc/${leader}/ns/user`);
  if (mnt) args.push(`--mount=/proc/${leader}/ns/mnt`);
  args.push(`--pid=/proc/${p1}/ns/pid`);
  if (mnt) args.push('-t', String(p1), '-w');
  const mapBack = user && t.sandbox.execPrefix.length > 0;
  if (user && !mapBack) args.push('--preserve-credentials');
  args.push('--', ...(mapBack ? t.sandbox.execPrefix : []));
  return { prefix: args, setsCwd: mnt };
}

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
  const cmd = [...prefix, ...(o.tty ? [SETSID, '-c', '--'] : []), ...argv];
  const [file, args] = o.tty
    ? [PYTHON, ['-I', '-c', PTY_HELPER, String(o.size?.width ?? 80), String(o.size?.height ?? 24), ...cmd]]
    : [cmd[0], cmd.slice(1)];
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
