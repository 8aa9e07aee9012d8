import { readFile, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { killGroup } from './process.js';
import { sandboxFor } from './sandbox.js';
import { isApiError } from '../../api/errors.js';
import type { ConfigMap, Endpoints, PersistentVolumeClaim, Pod, Secret, Service, Stored } from '../../api/types.js';
import { Backoff } from '../../util/backoff.js';
import { TokenBucket } from '../../util/token-bucket.js';
import { LOOPBACK, cidrsOverlap, nthAddress, parseCidr } from '../../util/cidr.js';
import { IpAllocator } from '../../util/allocator.js';
import type { Store } from '../../store/types.js';
import type { Informer, InformerFactory } from '../../store/informer.js';
import { EndpointsGate } from './endpoints-gate.js';
import { EventRecorder } from '../../store/events.js';
import type { ImageTable } from './images.js';
import { type NodeInfoOptions, registerNode, setNodeStatus } from './node.js';
import type { ExecTarget } from './container.js';
import { type PodDeps, PodWorker } from './pod.js';
import { unmountBelow } from './memory-volumes.js';

export { loadImageTable, normaliseImage, DEFAULT_IMAGE_TABLE, type ImageTable, type ImageEntry } from './images.js';
export { claimDir, volumeEnvName } from './volumes.js';
export { PROXY_SETTLE_MS } from './endpoints-gate.js';
export type { ExecTarget, AttachIO } from './container.js';
export { enterPrefix } from './enter.js';
export { SETSID_CTTY, ptyCommand } from './pty.js';

/** a running app container of a pod on this node */
export interface RunningContainer {
  namespace: string;
  pod: string;
  uid: string;
  container: string;
  /** its process group leader */
  pid: number;
}
export type { Sandbox } from './sandbox.js';

export interface RuntimeOptions {
  store: Store;
  informers: InformerFactory;
  log: Logger;
  /** e.g. `node-1` */
  nodeName: string;
  /** e.g. `127.0.0.1`: the pods' hostIP and the Node's InternalIP */
  nodeIP: string;
  /** pod IPs come from here (not the network address nor the first one), e.g. `127.244.0.0/16` */
  podCidr: string;
  /** absolute; logs go to `${stateDir}/pods/<ns>_<name>_<uid>/<container>/<restartCount>.log` */
  stateDir: string;
  images: ImageTable;
  /**
   * CrashLoopBackOff curve; default 10 s doubling to 5 min, as upstream. A crash loop whose runs
   * are further apart than `resetAfterMs` (default 2 × maxMs, as upstream) starts over without
   * backing off: tests with a short curve set it long, or a slow machine never shows a back-off.
   */
  backoff?: { initialMs: number; maxMs: number; resetAfterMs?: number };
  /** given to every container, e.g. `{ KUBELOOP_DNS: '127.0.0.1:1053' }` */
  extraEnv?: Record<string, string>;
  /** grace period cap when the agent stops (pods get min(their grace, this)); default 5000 */
  stopGraceMs?: number;
  /** cwd of containers without `workingDir`; default the daemon's cwd */
  workingDir?: string;
  /** the only daemon variables a container inherits; default PATH and HOME of this process */
  baseEnv?: Record<string, string>;
  /** the Node's capacity/allocatable `pods` (the kubelet's --max-pods); default 110 */
  maxPods?: number;
  /** pods started per second (bursts of as many); further pods wait in order; default 20 */
  startRate?: number;
  /**
   * false: no mount namespace per container even where the kernel allows one (volumes only as
   * KUBELOOP_VOLUME_<NAME>, the host's resolv.conf); default true
   */
  mountNamespaces?: boolean;
  /** the node agent endpoint's port, published in the Node's status (the API server forwards exec, logs… there) */
  endpointPort?: number;
  /** more InternalIPs of the Node after nodeIP (a node other machines reach lists its loopback address too) */
  extraAddresses?: readonly string[];
  /** the cluster domain for pods' resolv.conf search list and hosts; default cluster.local */
  clusterDomain?: string;
}

/** the pod status reason of a pod waiting for the node's start rate */
export const START_QUEUED_REASON = 'StartRateLimited';
/** the kubelet's admission reason for a pod over the node's pod capacity (`OutOf` + resource name) */
export const OUT_OF_PODS_REASON = 'OutOfpods';

/**
 * The node agent's pod runtime (the kubelet's part of kubeloop): keeps this node's `Node`
 * object, runs every pod bound to it (`spec.nodeName`) as process groups, reports their status,
 * and carries out graceful deletion. `stop()` leaves no process behind.
 */
export class PodRuntime {
  readonly #o: RuntimeOptions;
  readonly #log: Logger;
  readonly #ips: IpAllocator;
  readonly #backoff: Backoff;
  readonly #workers = new Map<string, PodWorker>();
  readonly #podsDir: string;
  #synced = false;
  #stopped = false;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  readonly #pending = new Set<Promise<void>>();
  readonly #gate: EndpointsGate;
  readonly #events: EventRecorder;
  readonly #endpoints: Informer<Endpoints>;
  readonly #claims: Informer<PersistentVolumeClaim>;
  readonly #configMaps: Informer<ConfigMap>;
  readonly #secrets: Informer<Secret>;
  #hostResolv = '';
  /** bounds process forks: a Deployment of thousands starts a few dozen pods a second, not all at once */
  readonly #startRate: TokenBucket;
  /** workers waiting for a start token, oldest first */
  readonly #startQueue: PodWorker[] = [];
  #startTimer: NodeJS.Timeout | undefined;
  /** uids of pods refused at admission (Failed, OutOfpods): never run, removed at once when deleted */
  readonly #rejected = new Set<string>();

  #held: string | undefined;

  constructor(o: RuntimeOptions) {
    const cidr = parseCidr(o.podCidr);
    if (cidr.bits < LOOPBACK.bits || !cidrsOverlap(cidr, LOOPBACK)) {
      throw new Error(`pod CIDR ${o.podCidr} is not inside 127.0.0.0/8: pods bind their IPs on loopback (e.g. 127.244.0.0/16)`);
    }
    if (!path.isAbsolute(o.stateDir)) throw new Error(`stateDir must be an absolute path, got "${o.stateDir}"`);
    this.#o = o;
    this.#log = o.log.child({ component: 'runtime', node: o.nodeName });
    this.#ips = new IpAllocator(cidr);
    this.#ips.allocate(nthAddress(cidr, 1)); // the first address stays free, like a gateway
    this.#backoff = new Backoff(o.backoff ?? { initialMs: 10_000, maxMs: 300_000 });
    this.#podsDir = path.join(o.stateDir, 'pods');
    this.#endpoints = o.informers.for<Endpoints>('Endpoints');
    this.#claims = o.informers.for<PersistentVolumeClaim>('PersistentVolumeClaim');
    this.#configMaps = o.informers.for<ConfigMap>('ConfigMap');
    this.#secrets = o.informers.for<Secret>('Secret');
    this.#gate = new EndpointsGate(this.#endpoints);
    this.#events = new EventRecorder({ store: o.store, log: this.#log, component: 'kubelet', host: o.nodeName });
    this.#startRate = new TokenBucket({ ratePerSecond: o.startRate ?? 20 });
  }

  /** Idempotent. Registers the Node, then runs the pods already bound to it. */
  start(): Promise<void> {
    this.#starting ??= this.#start();
    return this.#starting;
  }

  async #start(): Promise<void> {
    const o = this.#o;
    // the sandbox check (and the end of a killed daemon's leftovers) runs while the node
    // registers and the informers sync, not in front of the first container (detected once;
    // containers await the same promise)
    sandboxFor(o.stateDir, this.#log, { mounts: o.mountNamespaces ?? true }).catch(() => undefined);
    try {
      await registerNode(o.store, this.#nodeInfo());
    } catch (err) {
      // pods run without it; `kubectl get nodes` will miss this node
      this.#log.error({ err }, `cannot register Node ${o.nodeName}: ${(err as Error).message}`);
    }
    const pods = o.informers.for<Pod>('Pod');
    const services = o.informers.for<Service>('Service');
    pods.addHandler({
      onAdd: (p) => this.#synced && this.#safely(p, () => this.#sync(p)),
      onUpdate: (_old, p) => this.#synced && this.#safely(p, () => this.#sync(p)),
      onDelete: (p) => this.#synced && this.#safely(p, () => this.#gone(p)),
    });
    // projected volumes follow their ConfigMaps and Secrets (the kubelet's periodic sync, here at once)
    for (const [kind, inf] of [['ConfigMap', this.#configMaps], ['Secret', this.#secrets]] as const) {
      const changed = (obj: ConfigMap | Secret) => this.#synced && this.#sourceChanged(kind, obj.metadata?.namespace ?? 'default', obj.metadata?.name ?? '');
      inf.addHandler({ onAdd: changed, onUpdate: (_old, cur) => changed(cur), onDelete: () => undefined });
    }
    this.#hostResolv = await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
    await Promise.all([pods.start(), services.start(), this.#endpoints.start(), this.#claims.start(), this.#configMaps.start(), this.#secrets.start()]);
    if (this.#stopped) return;
    const mine = pods.list().filter((p) => this.#isMine(p));
    await this.#gcLogs(new Set(pods.list().map((p) => p.metadata.uid)));
    await this.#killStale(mine);
    if (this.#stopped) return;
    this.#synced = true;
    // pods that ran here before take their addresses back before new pods are given any
    const ordered = [...mine].sort((a, b) => Number(!a.status?.podIP) - Number(!b.status?.podIP));
    for (const p of ordered) this.#safely(p, () => this.#sync(p));
    this.#log.info({ pods: this.#workers.size, podCidr: o.podCidr }, 'pod runtime started');
  }

  /**
   * A daemon that was killed outright (SIGKILL, a crash) could not stop its pods; built-in
   * images notice through their lifeline, other commands do not. Their process groups are
   * recorded as `kubeloop://<pid>` container IDs: end those still running as that pod (same
   * POD_NAME and POD_IP in their environment, so a reused pid is never hit) before the pods
   * start again on their old addresses.
   */
  async #killStale(pods: readonly Pod[]): Promise<void> {
    for (const p of pods) {
      const ip = p.status?.podIP;
      for (const c of [...(p.status?.containerStatuses ?? []), ...(p.status?.initContainerStatuses ?? [])]) {
        const pid = Number(/^kubeloop:\/\/(\d+)$/.exec(c.containerID ?? '')?.[1]);
        if (!pid || !ip || !(await runsAs(pid, p.metadata?.name ?? '', ip))) continue;
        this.#log.warn({ pod: `${p.metadata?.namespace}/${p.metadata?.name}`, pid }, 'ending a process group left by a previous daemon');
        killGroup(pid, 'SIGKILL');
      }
    }
  }

  /**
   * Stops every pod's processes (SIGTERM, then SIGKILL after min(grace, stopGraceMs)), waits
   * for them, and marks the Node not Ready. Pods stay in the store and run again on the next start.
   */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#stopped = true;
      this.#synced = false;
      clearTimeout(this.#startTimer);
      this.#startQueue.length = 0;
      await this.#starting?.catch(() => undefined);
      const grace = this.#o.stopGraceMs ?? 5000;
      await Promise.all([...this.#workers.values()].map((w) => w.stop(grace)));
      await Promise.all([...this.#pending]);
      this.#workers.clear();
      // the pods' memory volumes: the memory is the host's while the daemon is down, and a
      // mounted dir would keep the state dir from being removed (their content is lost, as at a reboot)
      const failed = await unmountBelow(this.#podsDir);
      if (failed.length) this.#log.warn({ failed }, 'cannot unmount the tmpfs of an emptyDir of medium Memory');
      await this.#events.close();
      try {
        await setNodeStatus(this.#o.store, this.#nodeInfo(), false);
      } catch (err) {
        this.#log.debug({ err }, 'cannot mark the node not ready');
      }
      this.#log.info('pod runtime stopped');
    })();
    return this.#stopping;
  }

  #nodeInfo(): NodeInfoOptions {
    const o = this.#o;
    return { nodeName: o.nodeName, nodeIP: o.nodeIP, podCidr: o.podCidr, maxPods: o.maxPods, endpointPort: o.endpointPort, extraAddresses: o.extraAddresses };
  }

  /** the running container `container` of the pod with this uid on this node (exec, attach) */
  execTarget(uid: string, container: string): ExecTarget | undefined {
    return this.#workers.get(uid)?.execTarget(container);
  }

  /** this node's running app containers with their pods and group leaders' pids (the metrics the node agent endpoint serves) */
  runningContainers(): RunningContainer[] {
    return [...this.#workers.values()].flatMap((w) => {
      const m = w.pod.metadata;
      return w.runningContainers().map((c) => ({ namespace: m.namespace ?? 'default', pod: m.name, uid: m.uid, ...c }));
    });
  }

  /** pids (= process group ids) of every running container process, for diagnostics and tests */
  pids(): number[] {
    return [...this.#workers.values()].flatMap((w) => w.pids());
  }

  /** a ConfigMap or Secret was written: rewrite the volumes of this node's pods that project it */
  #sourceChanged(kind: 'ConfigMap' | 'Secret', namespace: string, name: string): void {
    for (const w of this.#workers.values()) {
      if (w.pod.metadata.namespace === namespace) w.sourceChanged(`${kind}/${name}`);
    }
  }

  #isMine(p: Pod): boolean {
    return p.spec?.nodeName === this.#o.nodeName;
  }

  /** informer handlers must not throw: a pod that trips us up is logged, the rest go on */
  #safely(p: Stored<Pod>, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#log.error({ err, pod: `${p.metadata.namespace}/${p.metadata.name}` }, 'cannot handle pod');
    }
  }

  #track(p: Promise<void>): void {
    const q = p.catch((err: unknown) => this.#log.error({ err }, 'pod worker failed')).finally(() => this.#pending.delete(q));
    this.#pending.add(q);
  }

  /**
   * New pods do not start on this node while `reason` is set (its Node cannot be registered,
   * node-lease.ts); pods already running go on. Undefined: they start again.
   */
  holdStarts(reason: string | undefined): void {
    const was = this.#held;
    this.#held = reason;
    if (!was || reason || !this.#synced || this.#stopped) return;
    for (const p of this.#o.informers.for<Pod>('Pod').list()) if (this.#isMine(p)) this.#safely(p, () => this.#sync(p));
  }

  #sync(p: Stored<Pod>): void {
    if (this.#stopped) return;
    const w = this.#workers.get(p.metadata.uid);
    if (w) {
      w.update(p);
      return;
    }
    if (!this.#isMine(p)) return;
    if (this.#held && !p.metadata.deletionTimestamp) return;
    if (p.metadata.deletionTimestamp) {
      // bound here, never started by this agent (or left from an earlier run): nothing to stop
      this.#track(this.#remove(p));
      return;
    }
    if (this.#rejected.has(p.metadata.uid)) return;
    const phase = p.status?.phase;
    if (phase !== 'Succeeded' && phase !== 'Failed' && !this.#admit(p)) return;
    const worker = new PodWorker(this.#deps(), p);
    this.#workers.set(p.metadata.uid, worker);
    // a pod finished in an earlier run forks nothing: no token needed
    if (phase === 'Succeeded' || phase === 'Failed' || (!this.#startQueue.length && this.#startRate.tryTake())) {
      worker.start();
      return;
    }
    this.#startQueue.push(worker);
    worker.queued(
      START_QUEUED_REASON,
      `waiting to start: ${this.#o.nodeName} starts at most ${this.#startRate.ratePerSecond} pods per second (kubeloop up --pod-start-rate)`,
    );
    this.#drainStarts();
  }

  /**
   * The kubelet's admission check for the pod count: a pod bound here directly (`spec.nodeName`
   * set at creation, so the scheduler never saw it) over `maxPods` is not run but rejected as
   * upstream's `rejectPod` does: phase Failed, reason OutOfpods, and a Warning event. Pods that
   * are admitted and not finished count as used, whether running, queued or terminating.
   */
  #admit(p: Stored<Pod>): boolean {
    const capacity = this.#o.maxPods ?? 110;
    let used = 0;
    for (const w of this.#workers.values()) {
      const phase = w.pod.status?.phase;
      if (phase !== 'Succeeded' && phase !== 'Failed') used++;
    }
    if (used + 1 <= capacity) return true;
    const message = `Node didn't have enough resource: pods, requested: 1, used: ${used}, capacity: ${capacity}`;
    this.#rejected.add(p.metadata.uid);
    this.#log.warn({ pod: `${p.metadata.namespace}/${p.metadata.name}`, used, capacity }, 'pod rejected at admission: the node is at --max-pods');
    this.#events.event(p, 'Warning', OUT_OF_PODS_REASON, message);
    this.#track(this.#writeRejection(p, `Pod was rejected: ${message}`));
    return false;
  }

  async #writeRejection(p: Stored<Pod>, message: string): Promise<void> {
    const { namespace, name, uid } = p.metadata;
    try {
      await this.#o.store.mutate<Pod>(
        'Pod',
        namespace,
        name,
        (cur) => {
          if (cur.metadata?.uid !== uid) return false;
          (cur as { status?: Pod['status'] }).status = {
            ...cur.status,
            phase: 'Failed',
            reason: OUT_OF_PODS_REASON,
            message,
            hostIP: this.#o.nodeIP,
            hostIPs: [{ ip: this.#o.nodeIP }],
          };
        },
        { subresource: 'status' },
      );
    } catch (err) {
      if (!isApiError(err, 'NotFound')) this.#log.warn({ err, pod: `${namespace}/${name}` }, 'cannot write the rejected pod status');
    }
  }

  /** starts queued pods as tokens come; pods deleted meanwhile are skipped */
  #drainStarts(): void {
    if (this.#startTimer || this.#stopped) return;
    while (this.#startQueue.length) {
      const w = this.#startQueue[0];
      if (this.#workers.get(w.uid) !== w) {
        this.#startQueue.shift();
        continue;
      }
      if (!this.#startRate.tryTake()) break;
      this.#startQueue.shift();
      w.start();
    }
    if (!this.#startQueue.length) return;
    this.#startTimer = setTimeout(() => {
      this.#startTimer = undefined;
      this.#drainStarts();
    }, Math.max(1, this.#startRate.waitMs()));
  }

  #gone(p: Stored<Pod>): void {
    this.#rejected.delete(p.metadata.uid);
    const w = this.#workers.get(p.metadata.uid);
    if (!w) return;
    this.#workers.delete(p.metadata.uid);
    this.#track(w.gone());
  }

  async #remove(p: Stored<Pod>): Promise<void> {
    const { namespace, name, uid } = p.metadata;
    try {
      await this.#o.store.delete('Pod', namespace, name, { gracePeriodSeconds: 0, preconditions: { uid } });
    } catch {
      // already gone, or replaced by a new pod of that name
    }
  }

  #deps(): PodDeps {
    const o = this.#o;
    const services = o.informers.for<Service>('Service');
    return {
      store: o.store,
      ips: this.#ips,
      podsDir: this.#podsDir,
      log: this.#log,
      images: o.images,
      backoff: this.#backoff,
      nodeName: o.nodeName,
      nodeIP: o.nodeIP,
      baseEnv: o.baseEnv ?? pick(process.env, ['PATH', 'HOME']),
      extraEnv: o.extraEnv ?? {},
      workingDir: o.workingDir ?? process.cwd(),
      services: () => services.list(),
      stateDir: o.stateDir,
      claim: (ns: string, name: string) => this.#claims.get(ns, name),
      events: this.#events,
      gate: this.#gate,
      startToken: (wanted: () => boolean) => this.#startRate.take(wanted),
      objects: {
        configMap: (ns: string, name: string) => this.#configMaps.get(ns, name),
        secret: (ns: string, name: string) => this.#secrets.get(ns, name),
      },
      mountNamespaces: o.mountNamespaces ?? true,
      clusterDomain: o.clusterDomain ?? 'cluster.local',
      dnsServiceIP: () => {
        const ip = services.get('kube-system', 'kube-dns')?.spec?.clusterIP;
        return ip && ip !== 'None' ? ip : undefined;
      },
      hostResolv: this.#hostResolv,
      sources: {
        configMap: (ns: string, name: string) => o.store.tryGet<ConfigMap>('ConfigMap', ns, name),
        secret: (ns: string, name: string) => o.store.tryGet<Secret>('Secret', ns, name),
      },
    };
  }

  /** Log dirs of pods that no longer exist (logs outlive a pod until the next start). */
  async #gcLogs(uids: ReadonlySet<string>): Promise<void> {
    let entries: string[];
    try {
      entries = await readdir(this.#podsDir);
    } catch {
      return;
    }
    for (const e of entries) {
      const uid = e.slice(e.lastIndexOf('_') + 1);
      if (uids.has(uid)) continue;
      try {
        // a tmpfs (emptyDir of medium Memory) a killed daemon left mounted goes first
        await unmountBelow(path.join(this.#podsDir, e));
        await rm(path.join(this.#podsDir, e), { recursive: true, force: true });
      } catch (err) {
        this.#log.debug({ err, dir: e }, 'cannot remove old pod logs');
      }
    }
  }
}

function pick(env: NodeJS.ProcessEnv, keys: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of keys) if (env[k] !== undefined) out[k] = env[k]!;
  return out;
}

/** Is `pid` a process started for this pod (its environment names the pod and its IP)? */
async function runsAs(pid: number, podName: string, podIP: string): Promise<boolean> {
  try {
    const env = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0');
    return env.includes(`POD_NAME=${podName}`) && env.includes(`POD_IP=${podIP}`);
  } catch {
    return false;
  }
}
