import { open } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Container, ContainerStatus, PersistentVolumeClaim, Pod, Service, Stored } from '../../api/types.js';
import type { ContainerState } from 'kubernetes-types/core/v1.js';
import { type Backoff, formatDuration } from '../../util/backoff.js';
import { EnvError, type EnvSources, containerEnv, expand } from './env.js';
import { type ImageEntry, type ImageTable, resolveContainer } from './images.js';
import type { EventRecorder } from '../../store/events.js';
import { ContainerProber, type ProbeTarget, runHook } from './probe.js';
import { type Exit, GroupProcess } from './process.js';
import { type Sandbox, sandboxFor } from './sandbox.js';
import { timestamp } from './status.js';
import { commandInMounts, writePodFiles, writeSetup } from './container-mounts.js';
import { enterPrefix } from './enter.js';
import { SETSID_CTTY } from './pty.js';
import type { ObjectLookup } from './volume-sources.js';
import { addressInUseHint } from './address-in-use.js';
import { containerVolumes, volumeEnvName } from './volumes.js';
import { LogTimes } from './log-times.js';

/** how often a container waiting for its volumes (an unbound claim) looks again */
const VOLUME_RETRY_MS = 250;

/** What every container of this node shares. */
export interface ContainerDeps {
  images: ImageTable;
  backoff: Backoff;
  nodeName: string;
  nodeIP: string;
  baseEnv: Readonly<Record<string, string>>;
  extraEnv: Readonly<Record<string, string>>;
  /** cwd of containers without `workingDir` */
  workingDir: string;
  /** the Services that exist now (for the Service variables) */
  services(): readonly Service[];
  sources: EnvSources;
  /** absolute state dir: claims live in `<stateDir>/volumes/<ns>/<claim>` */
  stateDir: string;
  claim(namespace: string, name: string): PersistentVolumeClaim | undefined;
  events: EventRecorder;
  /** ConfigMaps and Secrets for volumes (informer caches) */
  objects: ObjectLookup;
  /** false: no mount namespaces even where the kernel allows them (KUBELOOP_MOUNT_NAMESPACES=off) */
  mountNamespaces: boolean;
  clusterDomain: string;
  /** the kube-dns Service's ClusterIP now, if any */
  dnsServiceIP(): string | undefined;
  /** the node's /etc/resolv.conf, read at start */
  hostResolv: string;
}

/**
 * What `kubectl exec` needs to run a command as this container runs: its environment, its
 * working dir as the container sees it, the sandbox it runs in, and the group leader's pid
 * (the sandbox's `unshare`, or the program itself without one), whose namespaces exec joins.
 */
export interface ExecTarget {
  pid: number;
  env: Readonly<Record<string, string>>;
  /** the working dir inside the container's mount namespace (or on the host without one) */
  cwd: string;
  sandbox: Sandbox;
  /** the container's log file (attach follows it) */
  logFile: string;
  /** the container's stdin or terminal, for attach: only a container with `stdin` or `tty` has one */
  attach?: AttachIO;
}

/** What `kubectl attach` reaches of a container started with `stdin: true` and/or `tty: true`. */
export interface AttachIO {
  /** the container runs on a pseudo-terminal (its output is the log) */
  tty: boolean;
  /** input for the container (dropped once its stdin is closed) */
  write(data: Buffer): void;
  /** the terminal's size (tty only) */
  resize(cols: number, rows: number): void;
  /** an attach session ended: with `stdinOnce` the container's stdin is closed after the first */
  detached(): void;
}

/** What a container needs from its pod. */
export interface ContainerHost {
  pod(): Stored<Pod>;
  podIP(): string;
  /** `${stateDir}/pods/<ns>_<name>_<uid>` */
  logDir: string;
  restartPolicy: 'Always' | 'OnFailure' | 'Never';
  log: Logger;
  /** something in the container's status changed */
  onChange(): void;
  /** the container exited and will not be restarted */
  onTerminated?(exitCode: number): void;
  /** the container runs and its startup probe (if any) passed */
  onStarted?(): void;
  /**
   * some of the container's mounts are not at their mountPath (no mount namespace, or a path
   * that cannot be made): `why` names them and the fallback; called at each start
   */
  onMountsElsewhere?(why: string | undefined): void;
}

/**
 * One container of a pod: resolves its image, builds its environment, runs it as a process
 * group with its log file, probes it, and restarts it per the restart policy with the
 * kubelet's CrashLoopBackOff.
 */
export class ContainerRunner {
  readonly spec: Container;
  readonly #deps: ContainerDeps;
  readonly #host: ContainerHost;
  readonly #log: Logger;
  #restartCount: number;
  #state: ContainerState;
  #lastState: ContainerState = {};
  #containerID: string | undefined;
  #entry: ImageEntry | undefined;
  #ready = false;
  #started = false;
  #proc: GroupProcess | undefined;
  #prober: ContainerProber | undefined;
  #timer: NodeJS.Timeout | undefined;
  #run: Promise<void> | undefined;
  #stopping = false;
  /** the current run's log file and probe target (env, cwd) */
  #logFile: string | undefined;
  #target: ProbeTarget | undefined;
  /** what exec needs, while the current run's process runs */
  #exec: Omit<ExecTarget, 'pid'> | undefined;
  /** exec's leader pid when it is not the container's own (an ephemeral container in its target's namespaces) */
  #execPid: number | undefined;
  /** an ephemeral container (`spec.ephemeralContainers`): never restarted, its events name that list */
  readonly #ephemeral: boolean;
  /** the current run's preStop hook, once started */
  #preStop: Promise<void> | undefined;
  readonly #hookAbort = new AbortController();
  /** unsubscribes from image table changes (while waiting in ErrImageNeverPull) */
  #offImages: (() => void) | undefined;

  /**
   * `state`: the state to report instead of waiting (an ephemeral container that ran before the
   * agent restarted is not run again); `targetPid`: an ephemeral container's target (its group
   * leader's pid while it runs), whose PID and mount namespaces it joins
   */
  constructor(
    deps: ContainerDeps,
    host: ContainerHost,
    spec: Container,
    o: { restartCount?: number; waiting?: string; ephemeral?: boolean; state?: ContainerState; target?: () => ExecTarget | undefined } = {},
  ) {
    this.spec = spec;
    this.#deps = deps;
    this.#host = host;
    this.#log = host.log.child({ container: spec.name });
    this.#restartCount = o.restartCount ?? 0;
    this.#state = o.state ? structuredClone(o.state) : { waiting: { reason: o.waiting ?? 'ContainerCreating' } };
    this.#ephemeral = o.ephemeral ?? false;
    this.#targetOf = o.target;
  }

  readonly #targetOf: (() => ExecTarget | undefined) | undefined;

  get name(): string {
    return this.spec.name;
  }

  /** the group leader's pid while it runs */
  get pid(): number | undefined {
    return this.#proc?.running ? this.#proc.pid : undefined;
  }

  /** how to run a command as this container runs; undefined while it does not run */
  execTarget(): ExecTarget | undefined {
    const pid = this.pid;
    return pid !== undefined && this.#exec ? { ...this.#exec, pid: this.#execPid ?? pid } : undefined;
  }

  get #fieldPath(): string {
    return `spec.${this.#ephemeral ? 'ephemeralContainers' : 'containers'}{${this.spec.name}}`;
  }

  get #key(): string {
    return `${this.#host.pod().metadata.uid}/${this.spec.name}`;
  }

  status(): ContainerStatus {
    const image = this.spec.image ?? '';
    const s: ContainerStatus = {
      name: this.spec.name,
      image,
      imageID: this.#entry ? `kubeloop://${this.#entry.builtin ? `builtin/${this.#entry.builtin}` : this.#entry.name}` : '',
      ready: !this.#ephemeral && this.#ready && this.#started && !!this.#state.running,
      started: this.#started && !!this.#state.running,
      restartCount: this.#restartCount,
      state: structuredClone(this.#state),
      lastState: structuredClone(this.#lastState),
    };
    if (this.#containerID && !this.#state.waiting) s.containerID = this.#containerID;
    return s;
  }

  /** Starts the container (in the background; never rejects). */
  start(): void {
    if (this.#stopping) return;
    this.#run = this.#runOnce().catch((err: unknown) => {
      this.#log.error({ err }, 'container runner failed');
    });
  }

  /** SIGTERM the group, SIGKILL after graceMs; no restarts afterwards. Resolves once it is down. */
  async stop(graceMs: number): Promise<void> {
    if (!this.#stopping && this.#proc?.running) {
      this.#deps.events.event(this.#host.pod(), 'Normal', 'Killing', `Stopping container ${this.spec.name}`, this.#fieldPath);
    }
    this.#stopping = true;
    this.#offImages?.();
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#prober?.stop();
    this.#ready = false;
    await this.#kill(graceMs);
    this.#hookAbort.abort();
    await this.#run;
  }

  /**
   * Ends the current run: the preStop hook (if any) first, within the grace period, then
   * SIGTERM and SIGKILL after what is left of it (at least 2 s after a hook, as upstream).
   */
  async #kill(graceMs: number): Promise<void> {
    const proc = this.#proc;
    if (!proc?.running) return;
    const hook = this.spec.lifecycle?.preStop;
    if (hook && this.#target && !this.#preStop && graceMs > 0) {
      const started = Date.now();
      const target = this.#target;
      this.#preStop = runHook(hook, target, graceMs, this.#hookAbort.signal).then((r) => {
        if (!r.ok) this.#log.warn({ message: r.message }, 'preStop hook failed');
      });
      await this.#preStop;
      graceMs = Math.max(graceMs - (Date.now() - started), 2000);
    }
    await proc.stop(graceMs);
  }

  async #runOnce(): Promise<void> {
    const resolved = resolveContainer(this.#deps.images, this.spec);
    const target = this.#targetOf?.();
    if (this.#targetOf && !target) {
      // upstream starts it in the target's namespaces or not at all
      const message = `target container "${String((this.spec as { targetContainerName?: string }).targetContainerName)}" is not running`;
      this.#setState({ terminated: { exitCode: 128, reason: 'StartError', message, startedAt: timestamp(), finishedAt: timestamp() } });
      return;
    }
    if (!resolved.ok) {
      this.#log.warn({ reason: resolved.reason }, resolved.message);
      this.#deps.events.event(this.#host.pod(), 'Warning', resolved.reason, resolved.message, this.#fieldPath);
      this.#setState({ waiting: { reason: resolved.reason, message: resolved.message } });
      // the image tables are re-read when they change (image-catalog.ts): try again then
      if (resolved.reason === 'ErrImageNeverPull') this.#retryOnImagesChange();
      return;
    }
    this.#entry = resolved.entry;
    const pod = this.#host.pod();
    const podDir = this.#host.logDir;
    const vols = await containerVolumes(pod, this.spec, { stateDir: this.#deps.stateDir, podDir, claim: this.#deps.claim, objects: this.#deps.objects });
    if (this.#stopping) return;
    if (!vols.ok) {
      if (this.#state.waiting?.message !== vols.message) {
        this.#log.info({ message: vols.message }, 'waiting for volumes');
        this.#deps.events.event(pod, 'Warning', 'FailedMount', `MountVolume.SetUp failed: ${vols.message}`);
      }
      this.#setState({ waiting: { reason: 'ContainerCreating', message: vols.message } });
      this.#timer = setTimeout(() => this.start(), VOLUME_RETRY_MS);
      return;
    }
    // detected once per state dir; the first wait also ends what a killed daemon left running
    const { sandbox, mountProblem } = await sandboxFor(this.#deps.stateDir, this.#host.log, { mounts: this.#deps.mountNamespaces });
    if (this.#stopping) return;
    const inNs = sandbox.mounts;
    // the volume variables are there for `$(VAR)` in env, command and args; a container's own env of the same name wins
    const volEnv: Record<string, string> = { ...vols.env };
    if (inNs) for (const m of [...vols.mounts].reverse()) volEnv[volumeEnvName(m.name)] = m.mountPath;
    let env: Record<string, string>;
    try {
      env = await containerEnv({
        pod,
        container: this.spec,
        podIP: this.#host.podIP(),
        hostIP: this.#deps.nodeIP,
        nodeName: this.#deps.nodeName,
        services: this.#deps.services(),
        base: this.#deps.baseEnv,
        extra: { ...this.#deps.extraEnv, ...volEnv },
        sources: this.#deps.sources,
      });
    } catch (err) {
      const message = err instanceof EnvError ? err.message : `cannot build the environment: ${(err as Error).message}`;
      const delay = this.#deps.backoff.next(`${this.#key}/config`);
      this.#log.warn({ delayMs: delay }, `CreateContainerConfigError: ${message}`);
      this.#setState({ waiting: { reason: 'CreateContainerConfigError', message } });
      if (!this.#stopping) this.#timer = setTimeout(() => this.start(), delay);
      return;
    }
    if (this.#stopping) return;
    this.#deps.backoff.reset(`${this.#key}/config`);
    const argv = resolved.argv.map((a) => expand(a, env));
    const logFile = path.join(podDir, this.spec.name, `${this.#restartCount}.log`);
    let cwd = this.spec.workingDir || vols.cwd || this.#deps.workingDir;
    let setup: string | undefined;
    let commandCwd: string | false | undefined;
    let execCwd = cwd;
    let execTargetSandbox: Sandbox | undefined;
    let execTargetPid: number | undefined;
    if (inNs) {
      try {
        const etc = pod.spec?.hostNetwork
          ? undefined
          : await writePodFiles(podDir, {
              pod,
              podIP: this.#host.podIP(),
              clusterDomain: this.#deps.clusterDomain,
              nameserver: this.#deps.dnsServiceIP(),
              hostResolv: this.#deps.hostResolv,
            });
        const firstDir = vols.mounts.find((m) => m.source === vols.cwd)?.mountPath;
        const inside = this.spec.workingDir || firstDir || this.#deps.workingDir;
        execCwd = inside;
        const s = await writeSetup({ containerDir: path.dirname(logFile), mounts: vols.mounts, etc, cwd: inside, env, execPrefix: sandbox.execPrefix });
        setup = s.script;
        this.#host.onMountsElsewhere?.(s.skipped.length ? `not at their paths: ${s.skipped.join('; ')}` : undefined);
        const mountPaths = vols.mounts.map((m) => m.mountPath);
        commandCwd = argv[0] !== undefined && commandInMounts(argv[0], env.PATH, mountPaths) ? false : this.spec.workingDir ? false : cwd;
        cwd = path.dirname(logFile);
      } catch (err) {
        const message = `cannot prepare the pod's mounts: ${(err as Error).message}`;
        this.#log.warn({ err }, message);
        this.#setState({ waiting: { reason: 'ContainerCreating', message } });
        this.#timer = setTimeout(() => this.start(), VOLUME_RETRY_MS);
        return;
      }
    } else if (vols.mounts.length || !pod.spec?.hostNetwork) {
      const names = vols.mounts.map((m) => `${m.mountPath} (${volumeEnvName(m.name)}=${m.source})`);
      this.#host.onMountsElsewhere?.(
        `no mount namespace (${mountProblem ?? 'not available'}): ${names.length ? `volumes not at their mountPath: ${names.join(', ')}; ` : ''}` +
          'the pod uses the host\'s /etc/resolv.conf, so Service names resolve only through $(<SVC>_SERVICE_HOST) or host DNS routing (README)',
      );
    }
    const io = { stdin: this.spec.stdin === true, tty: this.spec.tty === true };
    let proc: GroupProcess;
    if (target) {
      // an ephemeral container in its target's PID and mount namespaces (as upstream's
      // targetContainerName), entered as exec enters, in its env. /proc stays the host's (pods
      // have no /proc of their own), so `ps` there lists the host's processes, not the target's
      const { prefix, setsCwd } = await enterPrefix(target).catch(() => ({ prefix: [] as string[], setsCwd: false }));
      execCwd = setsCwd ? target.cwd : cwd;
      this.#exec = undefined;
      const session = io.tty ? SETSID_CTTY : [];
      proc = GroupProcess.start({ argv: [...prefix, ...session, ...argv], env, cwd: setsCwd ? this.#deps.workingDir : cwd, logFile, ...io, ctty: false, commandCwd: false });
      execTargetSandbox = target.sandbox;
      execTargetPid = target.pid;
    } else {
      proc = GroupProcess.start({ argv, env, cwd, logFile, sandbox, setup, ...io, ...(commandCwd !== undefined ? { commandCwd } : {}) });
    }
    const logTimes = LogTimes.start(logFile, this.#log); // when each line was written (log-times.ts)
    const startedAtMs = Date.now();
    this.#proc = proc;
    this.#logFile = logFile;
    this.#preStop = undefined;
    this.#target = { podIP: this.#host.podIP(), container: this.spec, env, cwd, sandbox, lockDir: path.dirname(logFile) };
    this.#exec = { env, cwd: execCwd, sandbox: execTargetSandbox ?? sandbox, logFile, ...(io.stdin || io.tty ? { attach: this.#attachIO(proc, io.tty) } : {}) };
    this.#execPid = execTargetPid;
    if (proc.pid !== undefined) {
      this.#containerID = `kubeloop://${proc.pid}`;
      this.#log.info({ pid: proc.pid, restartCount: this.#restartCount, argv0: argv[0] }, 'container started');
      this.#deps.events.event(pod, 'Normal', 'Started', `Started container ${this.spec.name}`, this.#fieldPath);
      this.#started = false;
      this.#ready = false;
      this.#setState({ running: { startedAt: timestamp(startedAtMs) } });
      const prober = new ContainerProber(
        this.#target,
        {
          onStarted: () => {
            this.#started = true;
            this.#host.onChange();
            this.#host.onStarted?.();
          },
          onReady: (ready) => {
            this.#ready = ready;
            this.#host.onChange();
          },
          onProbeFailure: (kind, message) => {
            const Kind = kind[0].toUpperCase() + kind.slice(1);
            this.#deps.events.event(this.#host.pod(), 'Warning', 'Unhealthy', `${Kind} probe failed: ${message}`, this.#fieldPath);
          },
          onFailed: (kind, message) => {
            this.#log.info({ probe: kind, message }, `container failed its ${kind} probe, will be restarted`);
            this.#deps.events.event(this.#host.pod(), 'Normal', 'Killing', `Container ${this.spec.name} failed ${kind} probe, will be restarted`, this.#fieldPath);
            const grace = (this.spec[`${kind}Probe`]?.terminationGracePeriodSeconds ?? this.#host.pod().spec?.terminationGracePeriodSeconds ?? 30) * 1000;
            void this.#kill(grace);
          },
        },
      );
      this.#prober = prober;
      prober.start();
    }
    const exit = await proc.exited;
    await logTimes.stop();
    const failed = !exit.startError && exit.exitCode !== 0 && this.#logFile;
    const fallback = failed && this.spec.terminationMessagePolicy === 'FallbackToLogsOnError' ? await logTail(this.#logFile!) : undefined;
    // container code binds all interfaces; here pods share the host's network (address-in-use.ts)
    const inUse = failed && !this.#stopping ? addressInUseHint(await logTail(this.#logFile!), this.#host.podIP()) : undefined;
    if (inUse) this.#deps.events.event(this.#host.pod(), 'Warning', 'AddressInUse', inUse, this.#fieldPath);
    this.#onExit(exit, startedAtMs, inUse && fallback ? `${inUse}\n${fallback}` : (inUse ?? fallback));
  }

  /** `fallback`: the log's tail, when the container failed under FallbackToLogsOnError */
  #onExit(exit: Exit, startedAtMs: number, fallback: string | undefined): void {
    this.#prober?.stop();
    this.#prober = undefined;
    this.#proc = undefined;
    this.#ready = false;
    this.#started = false;
    const finishedAtMs = Date.now();
    const message = exit.startError ?? (fallback || undefined);
    const terminated: NonNullable<ContainerState['terminated']> = {
      exitCode: exit.exitCode,
      reason: exit.startError ? 'StartError' : exit.exitCode === 0 ? 'Completed' : 'Error',
      ...(message ? { message } : {}),
      ...(exit.signal ? { signal: exit.exitCode - 128 } : {}),
      startedAt: timestamp(startedAtMs),
      finishedAt: timestamp(finishedAtMs),
      ...(this.#containerID && !exit.startError ? { containerID: this.#containerID } : {}),
    };
    if (exit.startError) this.#containerID = undefined;
    if (this.#stopping) {
      this.#setState({ terminated });
      return;
    }
    const policy = this.#host.restartPolicy;
    // ephemeral containers are never restarted (upstream)
    const restart = !this.#ephemeral && (policy === 'Always' || (policy === 'OnFailure' && exit.exitCode !== 0));
    this.#log.info(
      { exitCode: exit.exitCode, signal: exit.signal, startError: exit.startError, restart },
      exit.startError ? `container could not start: ${exit.startError}` : 'container exited',
    );
    if (!restart) {
      this.#setState({ terminated });
      this.#host.onTerminated?.(exit.exitCode);
      return;
    }
    this.#lastState = { terminated };
    const waitMs = this.#deps.backoff.remainingMs(this.#key, finishedAtMs);
    if (waitMs > 0) {
      const pod = this.#host.pod();
      const message = `back-off ${formatDuration(this.#deps.backoff.delayMs(this.#key))} restarting failed container=${this.spec.name} pod=${pod.metadata.name}_${pod.metadata.namespace}(${pod.metadata.uid})`;
      this.#setState({ waiting: { reason: 'CrashLoopBackOff', message } });
      this.#deps.events.event(pod, 'Warning', 'BackOff', `Back-off restarting failed container ${this.spec.name} in pod ${pod.metadata.name}_${pod.metadata.namespace}(${pod.metadata.uid})`, this.#fieldPath);
      this.#timer = setTimeout(() => this.#restart(finishedAtMs), waitMs);
    } else {
      this.#restart(finishedAtMs);
    }
  }

  /** the run's stdin/terminal for attach; `stdinOnce` closes stdin when the first attach session ends */
  #attachIO(proc: GroupProcess, tty: boolean): AttachIO {
    return {
      tty,
      write: (b) => {
        if (proc.stdin?.writable && this.spec.stdin) proc.stdin.write(b);
      },
      resize: (cols, rows) => tty && proc.resize(cols, rows),
      detached: () => {
        if (this.spec.stdinOnce) proc.stdin?.end();
      },
    };
  }

  #retryOnImagesChange(): void {
    this.#offImages?.();
    this.#offImages = this.#deps.images.onChange?.(() => {
      this.#offImages?.();
      this.#offImages = undefined;
      if (!this.#stopping) this.start();
    });
  }

  #restart(finishedAtMs: number): void {
    this.#timer = undefined;
    if (this.#stopping) return;
    this.#deps.backoff.next(this.#key, finishedAtMs);
    this.#restartCount++;
    this.#state = { waiting: { reason: 'ContainerCreating' } };
    this.start();
  }

  #setState(s: ContainerState): void {
    this.#state = s;
    this.#host.onChange();
  }
}

/** The last 80 lines (at most 2048 bytes) of a log, as the kubelet's FallbackToLogsOnError. */
export async function logTail(file: string, maxBytes = 2048, maxLines = 80): Promise<string> {
  let fh;
  try {
    fh = await open(file, 'r');
    const size = (await fh.stat()).size;
    const len = Math.min(size, maxBytes);
    const buf = Buffer.alloc(len);
    const { bytesRead } = await fh.read(buf, 0, len, size - len);
    const lines = buf.subarray(0, bytesRead).toString('utf8').split('\n');
    if (lines.at(-1) === '') lines.pop();
    return lines.slice(-maxLines).join('\n');
  } catch {
    return '';
  } finally {
    await fh?.close().catch(() => undefined);
  }
}
