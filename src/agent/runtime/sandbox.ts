import { execFile } from 'node:child_process';
import { accessSync, constants as fsc, statSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';

/**
 * How a container's processes are tied to the daemon's life. `pidns` is the goal: each container
 * runs in a PID namespace of its own, so the kernel kills every process in it (setsid'd,
 * double-forked, `env -i`'d alike) when the namespace's first process dies:
 *
 *   daemon ─ setpriv --pdeathsig KILL ⇒ unshare --pid --fork --kill-child   (host side, group leader)
 *                                          └─ flock (pid 1: no signal handlers, waits, exits with the child's code)
 *                                               └─ the container's argv (pid 2), as execvp would run it
 *
 * The daemon dying (even SIGKILLed) kills `unshare` (parent-death signal), which kills pid 1
 * (`--kill-child`), which tears the namespace down. pid 1 is `flock` only because it is a small
 * util-linux program that forks, execvp's argv unchanged, passes the environment through
 * untouched and exits with the child's status (128 + n when it was signalled); a shell would
 * rewrite the environment (drop names with `.`/`-`, set PWD, OPTIND, IFS). As pid 1 it has no
 * handler for SIGTERM, so the kernel drops the group's SIGTERM for it and only the container's
 * processes see it: graceful stop works as without a namespace. Like a container whose app is
 * pid 1, orphans reparented inside are reaped only when the container ends.
 *
 * `pdeathsig` (no usable unshare): the container's own process gets SIGKILL when the daemon
 * dies; what it forked does not. `none`: nothing (the next `up` ends what it can find).
 */
export type SandboxKind = 'pidns' | 'pdeathsig' | 'none';

/**
 * With `mounts`, the `pidns` sandbox also unshares a mount namespace (propagation private, so
 * nothing mounted inside is seen outside) and pid 1 first runs a setup script
 * (`env -i /bin/sh <script> flock … argv`, see mount-script.ts) that mounts the pod's volumes
 * and then execs flock, which stays pid 1 as without mounts:
 *
 *   root:   unshare --mount --propagation private --pid --fork --kill-child
 *   others: unshare --user --map-root-user --mount … (root inside: mount(8) and overlayfs work),
 *           and the script execs `unshare --user --map-user=<uid> --map-group=<gid>` so the
 *           program runs as its own uid again (`execPrefix`)
 */
export interface Sandbox {
  readonly kind: SandboxKind;
  /** each container gets its own mount namespace and runs a setup script (`setup` of `wrap`) */
  readonly mounts: boolean;
  /**
   * a container whose mount point has no existing parent below `/` (`/data`) gets a root of
   * its own (mount-script.ts `NewRoot`): pivot_root worked in the start-up check
   */
  readonly newRoot: boolean;
  /** what the setup script execs the program through (non-root: a nested user namespace) */
  readonly execPrefix: readonly string[];
  /**
   * the program to spawn and its arguments for a container's argv; `lockDir` must exist;
   * `setup`: the setup script's file (mount sandboxes only)
   */
  wrap(argv: readonly string[], lockDir: string, setup?: string): string[];
}

const BIN_DIRS = ['/usr/bin', '/bin', '/usr/sbin', '/sbin', '/usr/local/bin'];

/** `pid 1 of its namespace` marker: the pids a wrapped `sh -c 'echo $$'` prints */
const PROBE_SCRIPT = 'echo $$';

const NONE: Sandbox = { kind: 'none', mounts: false, newRoot: false, execPrefix: [], wrap: (argv) => [...argv] };

// sync: used by detectSandbox only, once per state dir before any pod starts (sandboxFor)
function findBin(name: string): string | undefined {
  for (const d of BIN_DIRS) {
    const p = path.join(d, name);
    try {
      accessSync(p, fsc.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

function run(file: string, args: string[], cwd: string): Promise<{ ok: boolean; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, timeout: 5000, env: { PATH: BIN_DIRS.join(':') } }, (e, out, err) =>
      resolve({ ok: !e, out: String(out), err: String(err).trim().split('\n')[0] ?? '' }),
    );
  });
}

/**
 * Finds the strongest mechanism this machine allows by running it once (in `probeDir`, which
 * must exist). Never rejects. The warning names what is missing.
 */
export async function detectSandbox(probeDir: string, o: { mounts?: boolean } = {}): Promise<{ sandbox: Sandbox; problem?: string; mountProblem?: string; newRootProblem?: string }> {
  if (process.platform !== 'linux') return { sandbox: NONE, problem: 'PID namespaces and parent-death signals need Linux' };
  const setpriv = findBin('setpriv');
  const unshare = findBin('unshare');
  const flock = findBin('flock');
  const sh = findBin('sh');
  if (!setpriv) return { sandbox: NONE, problem: 'setpriv (util-linux) is not installed' };
  const pdeathsig: Sandbox = { kind: 'pdeathsig', mounts: false, newRoot: false, execPrefix: [], wrap: (argv) => [setpriv, '--pdeathsig', 'KILL', '--', ...argv] };
  if (!unshare || !flock || !sh) {
    return {
      sandbox: pdeathsig,
      problem: `${['unshare', 'flock', 'sh'].filter((b) => !findBin(b)).join(', ')} not installed`,
      mountProblem: 'unshare, flock or sh (util-linux, dash) is not installed',
    };
  }
  let mountProblem: string | undefined = o.mounts === false ? 'turned off (KUBELOOP_MOUNT_NAMESPACES=off)' : undefined;
  if (!mountProblem) {
    const m = await detectMounts({ setpriv, unshare, flock, sh, probeDir });
    if ('sandbox' in m) return m;
    mountProblem = m.problem;
  }
  // root can unshare a PID namespace alone; others need a user namespace mapping only themselves
  // (the processes keep their uid, gid and file access; other ids show as nobody inside)
  const variants = process.getuid?.() === 0 ? [[], ['--user', '--map-current-user']] : [['--user', '--map-current-user']];
  let problem = '';
  for (const ns of variants) {
    const wrap = (argv: readonly string[], lockDir: string): string[] => [
      setpriv, '--pdeathsig', 'KILL', '--',
      unshare, ...ns, '--pid', '--fork', '--kill-child=SIGKILL', '--',
      flock, '--shared', '--close', '--', lockDir, ...argv,
    ];
    const [file, ...args] = wrap([sh, '-c', PROBE_SCRIPT], probeDir);
    const r = await run(file, args, probeDir);
    if (r.ok && r.out.trim() === '2') return { sandbox: { kind: 'pidns', mounts: false, newRoot: false, execPrefix: [], wrap }, mountProblem };
    problem = r.err || `a PID namespace test printed "${r.out.trim()}"`;
  }
  return {
    sandbox: pdeathsig,
    problem: `cannot create PID namespaces (${problem}); unprivileged users need user namespaces (sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0)`,
    mountProblem,
  };
}

/**
 * Tries a PID + mount namespace whose pid 1 mounts a tmpfs and binds over it, as a pod's setup
 * script does (root: CAP_SYS_ADMIN of the host; others: a user namespace mapping them to root).
 */
async function detectMounts(b: { setpriv: string; unshare: string; flock: string; sh: string; probeDir: string }): Promise<{ sandbox: Sandbox; newRootProblem?: string } | { problem: string }> {
  const env = findBin('env');
  const mount = findBin('mount');
  if (!env || !mount) return { problem: 'mount or env is not installed' };
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const root = uid === 0;
  const ns = root ? [] : ['--user', '--map-root-user'];
  const execPrefix = root ? [] : [b.unshare, '--user', `--map-user=${uid}`, `--map-group=${gid}`, '--'];
  const wrap = (argv: readonly string[], lockDir: string, setup?: string): string[] => [
    b.setpriv, '--pdeathsig', 'KILL', '--',
    b.unshare, ...ns, '--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child=SIGKILL', '--',
    ...(setup ? [env, '-i', b.sh, setup] : [...execPrefix]),
    b.flock, '--shared', '--close', '--', lockDir, ...argv,
  ];
  // the probe: pid 1 mounts a tmpfs over the probe dir and binds it, then runs `echo $$` as pid 2
  const script = [
    `mount -t tmpfs kubeloop-probe "$PROBE" || exit 1`,
    `mkdir "$PROBE/a" "$PROBE/b" && mount --bind "$PROBE/a" "$PROBE/b" && mount -o remount,bind,ro "$PROBE/b" || exit 1`,
    `exec ${execPrefix.join(' ')} "$@"`,
  ].join('\n');
  const [file, ...args] = [
    b.setpriv, '--pdeathsig', 'KILL', '--',
    b.unshare, ...ns, '--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child=SIGKILL', '--',
    env, '-i', `PROBE=${b.probeDir}`, b.sh, '-c', script, 'sh',
    b.flock, '--shared', '--close', '--', b.probeDir, b.sh, '-c', 'echo $$; grep -c " kubeloop-probe " /proc/self/mountinfo',
  ];
  const r = await run(file, args, b.probeDir);
  // a small pid (inside its own PID namespace: the mounts took a few) and the tmpfs seen inside
  const [pid, count] = r.out.trim().split('\n').map(Number);
  if (r.ok && pid! > 1 && pid! < 64 && count! >= 1) {
    const pivot = await detectNewRoot({ ...b, env, ns });
    newRootWorks = pivot.ok;
    return { sandbox: { kind: 'pidns', mounts: true, newRoot: pivot.ok, execPrefix, wrap }, ...(pivot.ok ? {} : { newRootProblem: pivot.problem }) };
  }
  return {
    problem: `cannot mount inside a mount namespace (${r.err || `the test printed "${r.out.trim()}"`}); ${root ? 'root needs CAP_SYS_ADMIN' : 'unprivileged users need user namespaces (sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0)'}`,
  };
}

/** what the last start-up check found about new roots (false before one ran) */
let newRootWorks = false;

/** whether pivot_root into a new root worked in this process's start-up check (the capability is the machine's) */
export function newRootDetected(): boolean {
  return newRootWorks;
}

/**
 * Tries what a pod's new root needs, in a mount namespace of its own (pivot_root moves every
 * process of the namespace, so not in the one of the mount probe): a tmpfs, a recursive bind
 * of a directory of `/` with its submounts (locked ones in a user namespace), pivot_root into
 * it and the detach of the old root. Needs the same capabilities as the mounts, and a root
 * that is not the initial ramfs (pivot_root refuses that).
 */
async function detectNewRoot(b: { setpriv: string; unshare: string; sh: string; env: string; probeDir: string; ns: readonly string[] }): Promise<{ ok: boolean; problem?: string }> {
  const script = [
    'set -e',
    'mount -t tmpfs kubeloop-probe "$PROBE"',
    'cd "$PROBE"',
    'mkdir r && mount -t tmpfs kubeloop-root r',
    // what umount needs after the pivot (its loader and libraries), as a pod's root carries them
    'for e in proc usr bin sbin lib lib32 lib64 libx32; do',
    '  if [ -L "/$e" ]; then ln -s "$(readlink "/$e")" "r/$e"; elif [ -d "/$e" ]; then mkdir "r/$e" && mount --rbind "/$e" "r/$e"; fi',
    'done',
    'cd r && mkdir .old && pivot_root . .old && umount -l .old && rmdir .old',
    'cd / && [ -d /proc/self ] && [ ! -e /.old ] && echo pivoted',
  ].join('\n');
  const r = await run(b.setpriv, ['--pdeathsig', 'KILL', '--', b.unshare, ...b.ns, '--mount', '--propagation', 'private', '--', b.env, '-i', `PROBE=${b.probeDir}`, `PATH=${BIN_DIRS.join(':')}`, b.sh, '-c', script], b.probeDir);
  if (r.ok && r.out.trim() === 'pivoted') return { ok: true };
  return { ok: false, problem: r.err || `the pivot_root test printed "${r.out.trim()}"` };
}

/** the sandbox of a state dir and, when pods get no mount namespace, why */
export interface SandboxInfo {
  sandbox: Sandbox;
  mountProblem?: string;
}

const detected = new Map<string, Promise<SandboxInfo>>();

/**
 * The sandbox of the runtime with this state dir, detected once; the first call also ends what
 * a killed daemon of this state dir left running (see `endLeftovers`), so nothing starts before
 * that is done. Logs one line: the mechanism, or a warning naming what is missing.
 * `mounts: false` turns mount namespaces off (the first call of a state dir decides).
 */
export function sandboxFor(stateDir: string, log: Logger, o: { mounts?: boolean } = {}): Promise<SandboxInfo> {
  let p = detected.get(stateDir);
  if (!p) {
    p = (async () => {
      const [{ sandbox, problem, mountProblem, newRootProblem }, ended] = await Promise.all([detectSandbox(stateDir, o), endLeftovers(stateDir)]);
      if (ended.length) log.warn({ pids: ended }, `ended ${ended.length} process(es) a previous daemon of this state dir left running`);
      if (sandbox.kind === 'pidns') log.info('pod processes run in a PID namespace per container: none outlives the daemon');
      else log.warn(`pod processes can outlive a killed daemon (${sandbox.kind === 'pdeathsig' ? 'only each container\'s first process is tied to it' : 'nothing ties them to it'}): ${problem}`);
      if (sandbox.mounts) log.info('each container runs in its own mount namespace: volumes at their mountPath, the pod\'s /etc/resolv.conf and /etc/hosts');
      if (sandbox.mounts && !sandbox.newRoot) log.warn(`pods get no root of their own: a mountPath whose nearest existing parent is / (/data) is given as KUBELOOP_VOLUME_<NAME> only (${newRootProblem})`);
      else if (!sandbox.mounts) log.warn(`pods get no mount namespace: volumes are given as KUBELOOP_VOLUME_<NAME> only (${mountProblem})`);
      return { sandbox, ...(mountProblem ? { mountProblem } : {}) };
    })();
    detected.set(stateDir, p);
  }
  return p;
}

/** the directory pid 1 of a container's namespace names in its argv: `<stateDir>/pods/…` */
export function podsMarker(stateDir: string): string {
  return path.join(stateDir, 'pods') + path.sep;
}

/**
 * Kills (SIGKILL) the sandboxes a previous daemon of this state dir left: processes whose argv
 * names a lock dir under `<stateDir>/pods/` (the `unshare` and pid 1 of each container; pid 1
 * dying takes its namespace with it). Resolves to the pids killed.
 */
export async function endLeftovers(stateDir: string): Promise<number[]> {
  if (process.platform !== 'linux') return [];
  const marker = podsMarker(stateDir);
  const killed: number[] = [];
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return killed;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    let argv: string[];
    try {
      argv = (await readFile(`/proc/${e}/cmdline`, 'utf8')).split('\0');
    } catch {
      continue;
    }
    if (!argv.some((a) => a.startsWith(marker)) || !isWrapper(argv)) continue;
    try {
      process.kill(Number(e), 'SIGKILL');
      killed.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return killed;
}

/** argv of our own wrapper (unshare … flock … <marker dir>), not a pod's program that mentions the dir */
function isWrapper(argv: readonly string[]): boolean {
  const name = path.basename(argv[0] ?? '');
  return (name === 'unshare' || name === 'flock' || name === 'setpriv') && argv.includes('--close');
}

/**
 * What `execvp` would say about `cmd` with this PATH and cwd, checked before spawning a wrapper
 * (which would only report it as exit 127 in the log): undefined when it can be executed.
 */
export function commandProblem(cmd: string, envPath: string | undefined, cwd: string): 'ENOENT' | 'EACCES' | undefined {
  const candidates = cmd.includes('/')
    ? [path.resolve(cwd, cmd)]
    : (envPath ?? '/usr/bin:/bin').split(':').map((d) => path.resolve(cwd, d || '.', cmd));
  let denied = false;
  for (const c of candidates) {
    try {
      if (!statSync(c).isFile()) {
        denied = true;
        continue;
      }
      accessSync(c, fsc.X_OK);
      return undefined;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EACCES') denied = true;
    }
  }
  return denied ? 'EACCES' : 'ENOENT';
}
