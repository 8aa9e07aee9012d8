import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import type { EphemeralContainer } from 'kubernetes-types/core/v1.js';
import type { Container, ContainerStatus, Pod, PodStatus, Stored } from '../../api/types.js';
import { isApiError } from '../../api/errors.js';
import type { IpAllocator } from '../../util/allocator.js';
import type { Store } from '../../store/types.js';
import { type ContainerDeps, type ContainerHost, ContainerRunner, type ExecTarget } from './container.js';
import type { EndpointsGate } from './endpoints-gate.js';
import { buildPodStatus, podPhase, sameStatus, timestamp, type PodView } from './status.js';
import { sourcesOf } from './volume-sources.js';
import { emptyDirRoot, memoryVolume, writeProjected } from './volumes.js';
import { unmountBelow } from './memory-volumes.js';

/** the state to report for an ephemeral container that ran under an earlier agent (it is not run again) */
function ranBefore(s: ContainerStatus): NonNullable<ContainerStatus['state']> {
  if (s.state?.terminated) return s.state;
  const now = timestamp();
  return { terminated: { exitCode: 137, reason: 'Error', message: 'the node agent restarted: ephemeral containers are not run again', startedAt: s.state?.running?.startedAt ?? now, finishedAt: now } };
}

/** kubeloop's pod condition saying whether every mount is at its mountPath */
export const MOUNTS_CONDITION = 'kubeloop.dev/VolumeMountsAtPaths';

export interface PodDeps extends ContainerDeps {
  store: Store;
  ips: IpAllocator;
  /** `${stateDir}/pods` */
  podsDir: string;
  log: Logger;
  /** whether Endpoints still list a pod: termination waits for it to leave them */
  gate: EndpointsGate;
  /**
   * waits for one of the node's start tokens (--pod-start-rate); false when `wanted()` turned
   * false meanwhile. Ephemeral containers take one each (absent: they start at once).
   */
  startToken?: (wanted: () => boolean) => Promise<boolean>;
}

/** at most this share of the grace period is spent waiting for the pod to leave Endpoints */
const UNLIST_SHARE = 0.5;
const UNLIST_MAX_MS = 10_000;

/** Upstream's floor for killing a pod that was removed without a grace period. */
const FORCE_DELETE_GRACE_MS = 2000;

const RETRY_IP_MS = 5000;

/**
 * One pod on this node: its IP, its containers (init containers first, in order), its status
 * in the store, and its termination. Status writes are coalesced: one in flight at a time,
 * always computed from the latest state.
 */
export class PodWorker {
  readonly uid: string;
  readonly key: string;
  readonly #deps: PodDeps;
  readonly #log: Logger;
  #pod: Stored<Pod>;
  #podIP: string | undefined;
  #ipHeld = false;
  #startTime: string | undefined;
  #init: ContainerRunner[] = [];
  #main: ContainerRunner[] = [];
  /** ephemeral containers (kubectl debug), by name; started once the app containers are */
  readonly #ephemeral = new Map<string, ContainerRunner>();
  /** the ephemeral containers' starts, one after another, each with a start token */
  #ephemeralStarts: Promise<void> = Promise.resolve();
  #initialized = false;
  #message: { reason: string; message: string } | undefined;
  #retry: NodeJS.Timeout | undefined;
  /** no more containers are started */
  #halted = false;
  /** the pod is gone from the store: no more status writes */
  #removed = false;
  #terminating: Promise<void> | undefined;
  /** resolves the wait for the init container that runs now */
  #initWait: ((ok: boolean) => void) | undefined;
  #dirty = false;
  #writing: Promise<void> | undefined;
  /** why mounts are not at their paths (undefined: they are); the Warning is sent once */
  #mountsElsewhere: string | undefined;
  #mountsChecked = false;
  #mountWarned = false;
  /** projected volumes being rewritten; one more pass queued while one runs */
  #refreshing: Promise<void> | undefined;
  #refreshAgain = false;
  /** the memory volumes' mounts: what removes them waits for them */
  #memoryReady: Promise<void> | undefined;

  constructor(deps: PodDeps, pod: Stored<Pod>) {
    this.#deps = deps;
    this.#pod = pod;
    this.uid = pod.metadata.uid;
    this.key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    this.#log = deps.log.child({ pod: this.key });
  }

  get pod(): Stored<Pod> {
    return this.#pod;
  }

  /** the running container of this name (init containers included), for exec and attach */
  execTarget(container: string): ExecTarget | undefined {
    return [...this.#init, ...this.#main, ...this.#ephemeral.values()].find((c) => c.name === container)?.execTarget();
  }

  /** the app containers that run now and their group leaders' pids (metrics) */
  runningContainers(): { container: string; pid: number }[] {
    return this.#main.flatMap((c) => (c.pid !== undefined ? [{ container: c.name, pid: c.pid }] : []));
  }

  /** pids of the running container processes (each is its group's id) */
  pids(): number[] {
    return [...this.#init, ...this.#main, ...this.#ephemeral.values()].map((c) => c.pid).filter((p): p is number => p !== undefined);
  }

  /** Begins running the pod; problems end up in its status, never as a rejection. */
  start(): void {
    if (this.#halted) return;
    const phase = this.#pod.status?.phase;
    if (phase === 'Succeeded' || phase === 'Failed') {
      // finished in an earlier run of the agent: nothing to run
      this.#halted = true;
      return;
    }
    if (!this.#allocateIP()) return;
    this.#startTime = this.#pod.status?.startTime ?? timestamp();
    const prev = new Map<string, ContainerStatus>();
    for (const s of [...(this.#pod.status?.initContainerStatuses ?? []), ...(this.#pod.status?.containerStatuses ?? [])]) prev.set(s.name, s);
    const policy = this.#restartPolicy();
    const initPolicy = policy === 'Never' ? 'Never' : 'OnFailure';
    const spec = this.#pod.spec!;
    const hasInit = (spec.initContainers?.length ?? 0) > 0;
    for (const c of spec.initContainers ?? []) {
      const sidecar = c.restartPolicy === 'Always';
      const host = this.#host(sidecar ? 'Always' : initPolicy);
      host.onTerminated = (code) => this.#initWait?.(code === 0);
      if (sidecar) host.onStarted = () => this.#initWait?.(true);
      this.#init.push(new ContainerRunner(this.#deps, host, c, { restartCount: prev.get(c.name)?.restartCount }));
    }
    for (const c of spec.containers) {
      this.#main.push(
        new ContainerRunner(this.#deps, this.#host(policy), c, {
          restartCount: prev.get(c.name)?.restartCount,
          waiting: hasInit ? 'PodInitializing' : 'ContainerCreating',
        }),
      );
    }
    for (const c of spec.ephemeralContainers ?? []) {
      const was = prev.get(c.name) ?? this.#pod.status?.ephemeralContainerStatuses?.find((s) => s.name === c.name);
      // one that ran before the agent restarted is not run again (ephemeral containers never restart)
      if (was?.state?.running || was?.state?.terminated) this.#ephemeral.set(c.name, this.#ephemeralRunner(c, ranBefore(was)));
    }
    this.#log.info({ podIP: this.#podIP }, 'starting pod');
    this.#requestStatus();
    void this.#runInit();
  }

  /**
   * The pod waits for the node's start rate: shown as the pod's status reason and message until
   * `start()` (the IP allocation clears it).
   */
  queued(reason: string, message: string): void {
    if (this.#halted) return;
    this.#message = { reason, message };
    this.#requestStatus();
  }

  /** A newer version of the pod from the store. */
  update(pod: Stored<Pod>): void {
    const oldGrace = this.#pod.metadata.deletionGracePeriodSeconds;
    const oldMeta = this.#pod.metadata;
    this.#pod = pod;
    this.#startEphemeral();
    // downwardAPI volumes follow labels and annotations
    if (!isDeepStrictEqual(oldMeta.labels, pod.metadata.labels) || !isDeepStrictEqual(oldMeta.annotations, pod.metadata.annotations)) this.#refreshVolumes();
    // the node lifecycle controller marked the pod not ready while this node was cut off: this node runs it, say how it is
    if (pod.status?.conditions?.some((c) => c.type === 'Ready' && c.reason === 'NodeNotReady')) this.#requestStatus();
    if (!pod.metadata.deletionTimestamp) return;
    if (!this.#terminating) {
      void this.terminate();
    } else if ((pod.metadata.deletionGracePeriodSeconds ?? Infinity) < (oldGrace ?? Infinity)) {
      // deleted again with a shorter grace period: shorten the wait
      void this.#stopContainers((pod.metadata.deletionGracePeriodSeconds ?? 0) * 1000);
    }
  }

  /**
   * Starts the ephemeral containers added to the spec (pods/ephemeralcontainers) since, once the
   * app containers have started; each runs once, in the pod's environment (its env, IP, its own
   * volumeMounts) or, with `targetContainerName`, in that container's PID and mount namespaces.
   * They start one at a time, each with one of the node's start tokens, as pods do: a PATCH
   * adding a thousand of them forks at the node's start rate, not all in one turn of the event
   * loop (which kept the API from answering for minutes on a loaded machine).
   */
  #startEphemeral(): void {
    if (this.#halted || !this.#initialized || this.#pod.metadata.deletionTimestamp) return;
    const wanted = (): boolean => !this.#halted && !this.#pod.metadata.deletionTimestamp;
    for (const c of this.#pod.spec?.ephemeralContainers ?? []) {
      if (!c?.name || this.#ephemeral.has(c.name)) continue;
      const r = this.#ephemeralRunner(c);
      this.#ephemeral.set(c.name, r);
      this.#ephemeralStarts = this.#ephemeralStarts.then(async () => {
        if (!(await (this.#deps.startToken?.(wanted) ?? true)) || !wanted()) return;
        this.#log.info({ container: c.name, target: c.targetContainerName }, 'starting ephemeral container');
        r.start();
      });
    }
  }

  #ephemeralRunner(c: EphemeralContainer, state?: ContainerStatus['state']): ContainerRunner {
    const target = c.targetContainerName;
    return new ContainerRunner(this.#deps, this.#host('Never'), c as Container, {
      ephemeral: true,
      ...(state ? { state } : {}),
      ...(target ? { target: () => this.#main.find((m) => m.name === target)?.execTarget() } : {}),
    });
  }

  /** a ConfigMap or Secret of the pod's namespace changed (`ConfigMap/<name>`) */
  sourceChanged(source: string): void {
    if (this.#halted || !this.#main.length) return;
    if ((this.#pod.spec?.volumes ?? []).some((v) => sourcesOf(v).includes(source))) this.#refreshVolumes();
  }

  /** rewrites every projected volume (the atomic writer writes only what changed) */
  #refreshVolumes(): void {
    if (this.#refreshing) {
      this.#refreshAgain = true;
      return;
    }
    this.#refreshing = (async () => {
      do {
        this.#refreshAgain = false;
        const ctx = {
          stateDir: this.#deps.stateDir,
          podDir: path.join(this.#deps.podsDir, `${this.#pod.metadata.namespace}_${this.#pod.metadata.name}_${this.uid}`),
          claim: this.#deps.claim,
          objects: this.#deps.objects,
        };
        for (const v of this.#pod.spec?.volumes ?? []) {
          if (this.#halted) return;
          // only volumes already set up: a container waiting for its source writes it when it starts
          if (!(await stat(path.join(emptyDirRoot(ctx.podDir), v.name, '..data')).catch(() => undefined))) continue;
          try {
            const problem = await writeProjected(this.#pod, v.name, ctx);
            if (problem) this.#log.warn({ volume: v.name, problem }, 'volume not updated: its source is missing; the old content stays');
          } catch (err) {
            this.#log.warn({ err, volume: v.name }, 'cannot update volume');
          }
        }
      } while (this.#refreshAgain && !this.#halted);
    })().finally(() => {
      this.#refreshing = undefined;
    });
  }

  /**
   * Graceful deletion: report not-Ready first, wait until no Endpoints lists the pod any more and
   * the proxy has had a moment to stop sending it new connections (bounded by half the grace
   * period), then SIGTERM every container, SIGKILL after what is left of the grace period, then
   * remove the pod from the store and free its IP. The order is what lets a rolling update drop
   * no request: the pod is out of rotation before it is asked to stop.
   */
  terminate(): Promise<void> {
    this.#terminating ??= (async () => {
      this.#halted = true;
      clearTimeout(this.#retry);
      const graceS = this.#pod.metadata.deletionGracePeriodSeconds ?? this.#pod.spec?.terminationGracePeriodSeconds ?? 30;
      this.#log.info({ graceSeconds: graceS }, 'terminating pod');
      const started = Date.now();
      this.#requestStatus();
      await this.#flushStatus();
      if (this.#podIP && !this.#pod.spec?.hostNetwork && this.pids().length) {
        const maxMs = Math.min(graceS * 1000 * UNLIST_SHARE, UNLIST_MAX_MS);
        const r = await this.#deps.gate.waitUnlisted(this.#podIP, maxMs);
        if (r === 'timeout') this.#log.warn({ waitedMs: maxMs }, 'the pod is still listed in Endpoints; stopping it anyway');
      }
      await this.#stopContainers(Math.max(0, graceS * 1000 - (Date.now() - started)));
      this.#removed = true;
      const { namespace, name } = this.#pod.metadata;
      try {
        await this.#deps.store.delete('Pod', namespace, name, { gracePeriodSeconds: 0, preconditions: { uid: this.uid } });
      } catch (err) {
        if (!isApiError(err, 'NotFound') && !isApiError(err, 'Conflict')) this.#log.warn({ err }, 'cannot remove the terminated pod');
      }
      this.#releaseIP();
      await this.#removeEmptyDirs();
      this.#log.info('pod terminated');
    })();
    return this.#terminating;
  }

  /**
   * emptyDirs of medium Memory are mounted (tmpfs) before any container starts, as the kubelet
   * sets a pod's volumes up first; one Warning when one stays a directory on disk.
   */
  async #memoryVolumes(): Promise<void> {
    const { namespace, name } = this.#pod.metadata;
    const root = emptyDirRoot(path.join(this.#deps.podsDir, `${namespace}_${name}_${this.uid}`));
    const onDisk: string[] = [];
    for (const v of this.#pod.spec?.volumes ?? []) {
      if (v.emptyDir?.medium !== 'Memory' || this.#halted) continue;
      const r = await memoryVolume(path.join(root, v.name), v.emptyDir.sizeLimit === undefined ? undefined : String(v.emptyDir.sizeLimit));
      if ('message' in r) onDisk.push(`"${v.name}" (${r.message})`);
      else if (!r.tmpfs) onDisk.push(`"${v.name}" (${r.why})`);
    }
    if (!onDisk.length) return;
    const message = `emptyDir ${onDisk.join(', ')} of medium Memory is a directory on disk, not a tmpfs`;
    this.#log.warn(message);
    this.#deps.events.event(this.#pod, 'Warning', 'MemoryVolumeOnDisk', message);
  }

  /** emptyDir volumes live as long as the pod (a tmpfs is detached first) */
  async #removeEmptyDirs(): Promise<void> {
    await this.#memoryReady?.catch(() => undefined);
    const { namespace, name } = this.#pod.metadata;
    const failed = await unmountBelow(emptyDirRoot(path.join(this.#deps.podsDir, `${namespace}_${name}_${this.uid}`)));
    if (failed.length) this.#log.warn({ failed }, 'cannot unmount the tmpfs of an emptyDir of medium Memory');
    await rm(emptyDirRoot(path.join(this.#deps.podsDir, `${namespace}_${name}_${this.uid}`)), { recursive: true, force: true }).catch(() => undefined);
  }

  /** The pod was removed from the store (a delete with grace 0): end its processes. */
  async gone(): Promise<void> {
    this.#removed = true;
    if (this.#terminating) return this.#terminating;
    this.#halted = true;
    clearTimeout(this.#retry);
    const graceMs = Math.min(FORCE_DELETE_GRACE_MS, (this.#pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000);
    if (this.pids().length) this.#log.info('pod removed from the store: stopping its containers');
    await this.#stopContainers(graceMs);
    this.#releaseIP();
    await this.#removeEmptyDirs();
  }

  /** The agent is stopping: end every process (bounded grace), write nothing. */
  async stop(graceMs: number): Promise<void> {
    this.#halted = true;
    this.#removed = true;
    clearTimeout(this.#retry);
    const podGraceMs = (this.#pod.metadata.deletionGracePeriodSeconds ?? this.#pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000;
    await this.#stopContainers(Math.min(graceMs, podGraceMs));
    await this.#memoryReady?.catch(() => undefined);
    await this.#terminating?.catch(() => undefined);
    await this.#writing?.catch(() => undefined);
  }

  #restartPolicy(): 'Always' | 'OnFailure' | 'Never' {
    const p = this.#pod.spec?.restartPolicy;
    return p === 'OnFailure' || p === 'Never' ? p : 'Always';
  }

  #host(restartPolicy: 'Always' | 'OnFailure' | 'Never'): ContainerHost {
    const { namespace, name } = this.#pod.metadata;
    return {
      pod: () => this.#pod,
      podIP: () => this.#podIP ?? '',
      logDir: path.join(this.#deps.podsDir, `${namespace}_${name}_${this.uid}`),
      restartPolicy,
      log: this.#log,
      onChange: () => this.#requestStatus(),
      onMountsElsewhere: (why) => this.#onMountsElsewhere(why),
    };
  }

  /** one Warning event per pod, and a condition while it holds */
  #onMountsElsewhere(why: string | undefined): void {
    const changed = !this.#mountsChecked || why !== this.#mountsElsewhere;
    this.#mountsChecked = true;
    this.#mountsElsewhere = why;
    if (why && !this.#mountWarned) {
      this.#mountWarned = true;
      this.#log.warn({ why }, 'mounts not at their paths');
      this.#deps.events.event(this.#pod, 'Warning', 'MountsNotAtPaths', why);
    }
    if (changed) this.#requestStatus();
  }

  #allocateIP(): boolean {
    if (this.#pod.spec?.hostNetwork) {
      // the node's network: the pod's IP is the node's
      this.#podIP = this.#deps.nodeIP;
      return true;
    }
    const { ips } = this.#deps;
    const prev = this.#pod.status?.podIP;
    let ip: string | undefined;
    if (prev && ips.contains(prev) && ips.allocate(prev) === 'ok') ip = prev;
    else ip = ips.allocateNext();
    if (!ip) {
      const message = `no free pod IP in ${ips.cidr.text}: delete pods, or give the node a larger --pod-cidr`;
      if (this.#message?.message !== message) this.#log.warn(message);
      this.#message = { reason: 'NoPodIP', message };
      this.#requestStatus();
      this.#retry = setTimeout(() => this.start(), RETRY_IP_MS);
      return false;
    }
    this.#message = undefined;
    this.#podIP = ip;
    this.#ipHeld = true;
    return true;
  }

  #releaseIP(): void {
    if (this.#ipHeld && this.#podIP) this.#deps.ips.release(this.#podIP);
    this.#ipHeld = false;
    for (const c of [...this.#init, ...this.#main]) {
      this.#deps.backoff.reset(`${this.uid}/${c.name}`);
      this.#deps.backoff.reset(`${this.uid}/${c.name}/config`);
    }
  }

  /** Init containers one after the other (sidecars: once started), then the others together. */
  async #runInit(): Promise<void> {
    if (this.#pod.spec?.volumes?.some((v) => v.emptyDir?.medium === 'Memory')) {
      this.#memoryReady = this.#memoryVolumes();
      await this.#memoryReady;
    }
    for (const r of this.#init) {
      if (this.#halted) return;
      const ok = await new Promise<boolean>((resolve) => {
        this.#initWait = resolve;
        r.start();
      });
      this.#initWait = undefined;
      if (!ok) return; // failed under restartPolicy Never (the phase says Failed), or the pod is stopping
    }
    if (this.#halted) return;
    this.#initialized = true;
    for (const r of this.#main) r.start();
    this.#startEphemeral();
    this.#requestStatus();
  }

  async #stopContainers(graceMs: number): Promise<void> {
    this.#initWait?.(false);
    await Promise.all([...this.#init, ...this.#main, ...this.#ephemeral.values()].map((c) => c.stop(graceMs)));
  }

  #view(): PodView {
    return {
      pod: this.#pod,
      podIP: this.#podIP,
      hostIP: this.#deps.nodeIP,
      startTime: this.#startTime,
      ...(this.#message ? this.#message : {}),
      initContainers: this.#init.map((c) => c.status()),
      containers: this.#main.map((c) => c.status()),
      ephemeralContainers: [...this.#ephemeral.values()].map((c) => c.status()),
      initialized: this.#initialized || this.#init.length === 0,
      terminating: !!this.#terminating,
      ...(this.#mountsChecked
        ? {
            extra: [
              this.#mountsElsewhere
                ? { type: MOUNTS_CONDITION, ok: false, reason: 'MountsNotAtPaths', message: this.#mountsElsewhere }
                : { type: MOUNTS_CONDITION, ok: true },
            ],
          }
        : {}),
    };
  }

  #requestStatus(): void {
    if (this.#removed) return;
    const v = this.#view();
    const phase = podPhase(v);
    if ((phase === 'Succeeded' || phase === 'Failed') && this.#ipHeld && this.#main.length && !this.pids().length) {
      // a finished pod keeps its status.podIP but no longer holds the address
      this.#releaseIP();
    }
    this.#dirty = true;
    this.#writing ??= this.#writeLoop();
  }

  async #flushStatus(): Promise<void> {
    while (this.#writing) await this.#writing;
  }

  async #writeLoop(): Promise<void> {
    try {
      while (this.#dirty && !this.#removed) {
        this.#dirty = false;
        const { namespace, name } = this.#pod.metadata;
        try {
          const res = await this.#deps.store.mutate<Pod>(
            'Pod',
            namespace,
            name,
            (p) => {
              if (p.metadata?.uid !== this.uid) return false;
              const next = buildPodStatus(this.#view(), p.status);
              if (sameStatus(p.status, next)) return false;
              (p as { status?: PodStatus }).status = next;
            },
            { subresource: 'status' },
          );
          if (!res) this.#removed = true;
        } catch (err) {
          if (isApiError(err, 'NotFound')) this.#removed = true;
          else this.#log.warn({ err }, 'cannot write the pod status');
        }
      }
    } finally {
      this.#writing = undefined;
    }
  }
}
