/**
 * A pseudo-terminal for a command (Node has none): a small Python helper makes one with
 * `os.openpty()`, starts the command on its slave side, copies fd 0 → pty and pty → fd 1, and
 * applies window sizes arriving as `cols rows` lines on another fd with TIOCSWINSZ (the kernel
 * then signals SIGWINCH to the terminal's foreground group). It exits with the command's exit
 * code (128 + n for a signal, as a shell reports). Used by `kubectl exec -it` (agent endpoint)
 * and by containers with `tty: true` (their output is the log, their input what attach sends).
 *
 * The command should make itself a session leader with the pty as its controlling terminal
 * (`setsid -c`, `SETSID_CTTY`) from inside its PID namespace, so a shell's job control sees
 * its own process groups. The helper dies with its parent (PR_SET_PDEATHSIG), and SIGTERM
 * sent to it goes to the terminal's session (the command), as a container's stop would.
 */

export const PYTHON = '/usr/bin/python3';
/** prefix making the command a session leader on its stdin's terminal */
export const SETSID_CTTY = ['/usr/bin/setsid', '-c', '--'] as const;

/** What the pty does when the helper's input ends. */
export type PtyEof = 'ignore' | 'eof-char';

const PTY_HELPER = String.raw`
import ctypes, fcntl, os, select, signal, struct, subprocess, sys, termios
try:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)
except Exception:
    pass
if os.getppid() == 1:
    sys.exit(137)
cols, rows, resize_fd, on_eof, keep = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
argv = sys.argv[6:]
pass_fds = tuple(int(x) for x in keep.split(',') if x)
fd, slave = os.openpty()
try:
    child = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True, pass_fds=pass_fds)
except OSError as e:
    sys.stderr.write('exec: "%s": %s\n' % (argv[0], e.strerror))
    sys.exit(127)
os.close(slave)
pid = child.pid
def size(c, r):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', r, c, 0, 0))
def term(signum, frame):
    try:
        sid = struct.unpack('i', fcntl.ioctl(fd, termios.TIOCGSID, b'\0\0\0\0'))[0]
        os.killpg(sid, signal.SIGTERM)
    except OSError:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
signal.signal(signal.SIGTERM, term)
size(cols, rows)
src = [fd, 0, resize_fd]
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
            if on_eof == 'eof-char':
                os.write(fd, termios.tcgetattr(fd)[6][termios.VEOF])
    if resize_fd in ready:
        data = os.read(resize_fd, 4096)
        if not data:
            src.remove(resize_fd)
        buf += data
        while b'\n' in buf:
            line, buf = buf.split(b'\n', 1)
            try:
                c, r = (int(x) for x in line.split())
                size(c, r)
            except (ValueError, OSError):
                pass
if status is None:
    status = child.wait()
sys.exit(status if status >= 0 else 128 - status)
`;

export interface PtyOptions {
  cols?: number;
  rows?: number;
  /** the helper's fd on which `cols rows` lines arrive */
  resizeFd: number;
  /** `eof-char`: the end of the helper's input is typed as the terminal's EOF character (^D), as a closed stdin ends a shell */
  onEof?: PtyEof;
  /** fds of the helper the command keeps (e.g. a lifeline) */
  keepFds?: readonly number[];
}

/** [file, args] running `argv` on a new pseudo-terminal through the helper */
export function ptyCommand(argv: readonly string[], o: PtyOptions): [string, string[]] {
  return [PYTHON, ['-I', '-c', PTY_HELPER, String(o.cols ?? 80), String(o.rows ?? 24), String(o.resizeFd), o.onEof ?? 'ignore', (o.keepFds ?? []).join(','), ...argv]];
}
