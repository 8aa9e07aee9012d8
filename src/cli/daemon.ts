import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hostname, networkInterfaces } from 'node:os';
import type { Logger } from 'pino';
import type { DaemonSet, Deployment, Endpoints, Pod, ReplicaSet, Service, StatefulSet, Stored } from '../api/types.js';
import { type ClosableStore, createEmbeddedStore, createStore } from '../store/embedded.js';
import { InformerFactory } from '../store/informer.js';
import { EventRecorder } from '../store/events.js';
import { ControllerManager } from '../controllers/index.js';
import { LeaderElector } from '../controllers/leader.js';
import { DEFAULT_IMAGE_TABLE, PodRuntime } from '../agent/runtime/index.js';
import { ImageCatalog } from '../agent/runtime/image-catalog.js';
import { sandboxFor } from '../agent/runtime/sandbox.js';
import { MetricsServer, Proxy, proxyMetrics } from '../agent/proxy/index.js';
import { DnsServer } from '../dns/index.js';
import { ApiServer, kubeconfigYaml } from '../server/index.js';
import { type Options, nodeLayout } from './options.js';
import { nthAddress, parseCidr } from '../util/cidr.js';
import { type ApplyResult, applyManifests, expandPaths, readManifests } from './manifests.js';
import { renderTable, serviceRows } from './table.js';
import { ensureObjects, systemObjects } from './system-objects.js';
import { port53Fix, probePort53 } from './port53.js';
import { takePidFile } from './pid-file.js';
import { raiseNofile } from './rlimit.js';
import { connectionMetrics } from './connection-metrics.js';
import { type FdBudget, fitBudget } from '../util/fd-budget.js';
import { AGENT_CLIENT_USER, adoptClusterIdentity, ensureClusterIdentity, ensurePki } from './pki.js';
import { AgentEndpoint } from '../agent/endpoint/index.js';
import { Tunnel } from '../agent/tunnel/index.js';
import { storeCredentialWarnings } from './store-credentials.js';
import { LocalAddresses } from '../agent/proxy/local-addresses.js';
import { isLoopback } from '../util/cidr.js';
import { securePrivateStateDir, writePrivate } from './state-dir.js';
import { JoinRefused, joinCluster } from './join.js';
import { claimNode } from '../agent/runtime/node.js';
import { NODE_LEASE_NAMESPACE, NODE_OWNER_ANNOTATION, NodeLease, NodeOwned, claimNodeLease } from '../agent/runtime/node-lease.js';
import { ensureInstanceId } from './instance-id.js';
import { removeNodeEndpoints } from './system-objects.js';
import { evictPod } from '../store/eviction.js';
import { isApiError } from '../api/errors.js';
import type { Lease, Node } from '../api/types.js';
import type { Store } from '../store/types.js';

/** the Node annotation naming the daemon (host and state dir) that runs the node */
export const DAEMON_ANNOTATION = 'kubeloop.dev/daemon';

/** Repository root (this file is src/cli/daemon.ts). */
export const REPO_ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

interface Component {
  name: string;
  stop(): Promise<void> | void;
}

/**
 * The whole of kubeloop in one process: components start in order (each waits for its
 * informers) and stop in reverse. They meet only in the store.
 */
export class Daemon {
  readonly opts: Readonly<Options>;
  readonly #log: Logger;
  #store: ClosableStore | undefined;
  #informers: InformerFactory | undefined;
  #proxy: Proxy | undefined;
  #proxyEvents: EventRecorder | undefined;
  #dns: DnsServer | undefined;
  #api: ApiServer | undefined;
  #metrics: MetricsServer | undefined;
  readonly #started: Component[] = [];
  #stopping: Promise<void> | undefined;
  #lockFile: string | undefined;
  #clusterDnsProblem: string | undefined;
  /** set when this daemon created the cluster on a shared store: printed once */
  #joinToken: string | undefined;
  /** the nodes this daemon runs */
  #nodeNames: string[] = [];
  #identity: string | undefined;
  /** start() finished: a stop from now on drains and leaves; before, it undoes what the start registered */
  #up = false;
  /** Nodes and node Leases this start created on a shared store (removed again when the start fails) */
  readonly #createdNodes = new Set<string>();
  readonly #createdLeases = new Set<string>();

  constructor(opts: Readonly<Options>, log: Logger) {
    this.opts = opts;
    this.#log = log;
  }

  get store(): ClosableStore {
    if (!this.#store) throw new Error('daemon not started');
    return this.#store;
  }

  get dnsPort(): number | undefined {
    return this.#dns?.port;
  }

  /** the API's URL, once started */
  get apiUrl(): string | undefined {
    return this.#api?.url;
  }

  /** why pods do not get the cluster DNS as their nameserver, with the fix (port 53 not bindable) */
  get clusterDnsProblem(): string | undefined {
    return this.#clusterDnsProblem;
  }

  /** the proxy's Prometheus endpoint, once started (unset with --metrics-addr '') */
  get metricsUrl(): string | undefined {
    return this.#metrics?.url;
  }

  /** the join token, when this daemon just created the cluster on a shared store (shown once) */
  get createdJoinToken(): string | undefined {
    return this.#joinToken;
  }

  /** several daemons on one store (a redis --store) */
  get shared(): boolean {
    return this.opts.store !== 'embedded' && this.opts.store !== '';
  }

  /** who runs a node: kept in the state dir (a restarted daemon is the same one; cli/instance-id.ts) */
  get identity(): string {
    return this.#identity ?? `${hostname()}_${createHash('sha256').update(this.opts.stateDir).digest('hex').slice(0, 12)}`;
  }

  get kubeconfigPath(): string {
    return join(this.opts.stateDir, 'kubeconfig');
  }

  async start(): Promise<void> {
    try {
      await this.#start();
    } catch (e) {
      // the store stopped answering halfway: nothing is wrong with the flags
      throw withStoreFix(e, 'start kubeloop again once the store answers');
    }
    this.#up = true;
  }

  async #start(): Promise<void> {
    const o = this.opts;
    await securePrivateStateDir(o.stateDir, this.#log);
    this.#lock(o.stateDir);
    this.#identity = await ensureInstanceId(o.stateDir);
    // the pod sandbox check (a few short processes, ~0.3 s) runs while the store and the rest
    // start, instead of when the first pod waits for it (the runtime asks for the same promise)
    sandboxFor(o.stateDir, this.#log.child({ component: 'runtime' }), { mounts: process.env.KUBELOOP_MOUNT_NAMESPACES !== 'off' }).catch(() => undefined);
    const nofile = await raiseNofile(this.#log);
    const budget = connectionBudget(o, nofile?.soft, this.#log);
    // the shipped table, then --images tables over it; re-read when they change
    const images = await ImageCatalog.open({ files: [DEFAULT_IMAGE_TABLE, ...o.images], log: this.#log });
    this.#started.push({ name: 'image tables', stop: () => images.close() });

    const storeOptions = {
      serviceCidr: o.serviceCidr,
      podCidr: o.podCidr,
      nodePortRange: o.nodePortRange,
      allowLoopbackEndpoints: o.allowLoopbackEndpoints,
      hostAddresses: [...new Set([...nodeLayout(o).map((n) => n.ip), splitHostPort(o.apiAddr)[0], splitHostPort(o.dnsAddr)[0]])],
      log: this.#log,
      // several daemons: each node takes its own slice of the pod range
      ...(this.shared ? { nodeCidrMaskSize: o.nodeCidrMaskSize } : {}),
    };
    let store: ClosableStore;
    if (o.store === 'embedded' || o.store === '') {
      store = await createEmbeddedStore({ ...storeOptions, stateDir: o.stateDir });
    } else {
      // loaded only when asked for: ioredis is not needed by the embedded store
      const { RedisStorage } = await import('../store/backends/redis.js');
      const storage = await RedisStorage.open({ url: o.store, password: o.storePassword || undefined, log: this.#log }).catch((e: unknown) => {
        throw withStoreFix(e, 'check the host and port of --store and that redis-server runs there');
      });
      for (const w of storeCredentialWarnings(o.store, o.storePassword || undefined)) this.#log.warn(w);
      store = await createStore(storage, storeOptions);
    }
    this.#store = store;
    this.#started.push({ name: 'store', stop: () => store.close() });
    if (this.shared) await this.#join(store);

    const informers = new InformerFactory(store);
    this.#informers = informers;
    this.#started.push({ name: 'informers', stop: () => informers.stop() });
    for (const kind of ['Service', 'Endpoints', 'Pod', 'Node', 'ReplicaSet', 'Deployment', 'StatefulSet', 'DaemonSet']) informers.for(kind);
    await informers.start();

    const newControllers = (): ControllerManager =>
      new ControllerManager({
        store,
        informers,
        log: this.#log,
        podCidr: o.podCidr,
        allowLoopbackEndpoints: o.allowLoopbackEndpoints,
        lbPool: o.disableLoadBalancer ? '' : o.lbPool,
        stateDir: o.stateDir,
        ...(this.shared ? { nodeLifecycle: { gracePeriodMs: o.nodeMonitorGracePeriodMs, evictionTimeoutMs: o.podEvictionTimeoutMs } } : {}),
        // the Metrics API the API server serves (server/metrics.ts), once it is up (below)
        podMetrics: (namespace, labelSelector) => {
          const api = this.#api;
          return api ? api.metrics.podMetrics(namespace, labelSelector) : Promise.reject(new Error('the Metrics API is not up yet'));
        },
        hpaSyncPeriodMs: o.hpaSyncPeriodMs,
        hpaDownscaleStabilizationMs: o.hpaDownscaleStabilizationMs,
      });
    if (store.backend === 'embedded') {
      // the state dir's lock makes this daemon the only one on its store: no election needed
      const controllers = newControllers();
      await controllers.start();
      this.#started.push({ name: 'controllers', stop: () => controllers.stop() });
    } else {
      // several daemons on one store: controllers run on the Lease holder only. The identity is
      // stable per host and state dir, so a restarted daemon takes its own lease back at once.
      let controllers: ControllerManager | undefined;
      const elector = new LeaderElector({
        store,
        log: this.#log,
        identity: this.identity,
        onStartedLeading: async () => {
          controllers = newControllers();
          await controllers.start();
        },
        onStoppedLeading: async () => {
          await controllers?.stop();
          controllers = undefined;
        },
      });
      elector.start();
      this.#started.push({ name: 'leader election', stop: () => elector.stop() });
    }

    const [dnsHost, dnsPort] = splitHostPort(o.dnsAddr);
    // DNS first: pods are told where it really listens (--dns-addr may say port 0)
    const dns = new DnsServer({
      informers,
      log: this.#log,
      address: dnsHost,
      port: dnsPort,
      zone: o.clusterDomain,
      ttl: o.dnsTtl,
      upstream: o.dnsUpstream || undefined,
      tcpMaxConnections: budget.dnsTcpConnections,
      tcpIdleTimeoutMs: o.dnsTcpIdleTimeoutMs,
      dataPath: o.dataPath,
    });
    try {
      await dns.start();
      this.#dns = dns;
      this.#started.push({ name: 'dns', stop: () => dns.stop() });
    } catch (err) {
      // DNS is one component among several: the rest keeps working without it
      this.#log.error({ err, addr: o.dnsAddr }, `cannot serve DNS on ${o.dnsAddr}: ${(err as Error).message} — pass --dns-addr with a free port`);
    }
    // kube-dns before the node agents start pods (their resolv.conf names its ClusterIP); it gets
    // one only where port 53 can be bound there, else it stays headless, pods keep the host's
    // resolv.conf, and `up` prints the fix
    const dnsClusterIP = nthAddress(parseCidr(o.serviceCidr), 10);
    const port53 = this.#dns ? await probePort53(dnsClusterIP) : undefined;
    this.#clusterDnsProblem = port53 && !port53.ok ? port53Fix(dnsClusterIP, port53.reason) : undefined;
    const dnsObjects = { dnsHost: this.#dns ? dnsHost : undefined, dnsPort: this.#dns?.port, dnsClusterIP: port53?.ok ? dnsClusterIP : 'None' };
    const owner = this.shared ? { nodeName: nodeLayout(o)[0].name } : {};
    await ensureObjects(store, systemObjects({ ...dnsObjects, local: this.shared }), owner);

    const [apiHost, apiPort] = splitHostPort(o.apiAddr);
    const hosts = apiHosts(o, apiHost);
    // the CA and certificates come first (a failure here stops the start): the node agents'
    // endpoints serve with them, and only the API server's certificate may use those
    // (on a shared store the CA and admin credential are the cluster's, adopted by #join)
    const reachable = store.backend !== 'embedded' && !isLoopback(o.nodeIP);
    const pki = await ensurePki({
      dir: join(o.stateDir, 'pki'),
      hosts,
      agentHosts: nodeLayout(o).map((n) => n.ip),
      ...(reachable ? { tunnel: { nodeName: nodeLayout(o)[0].name, hosts: [o.nodeIP] } } : {}),
      log: this.#log,
    });

    // one node agent per simulated node (--nodes), each with its IP and pod CIDR slice; stopped together
    const runtimes: PodRuntime[] = [];
    const endpoints: AgentEndpoint[] = [];
    this.#started.push({ name: 'pod runtimes', stop: async () => void (await Promise.all(runtimes.map((r) => r.stop()))) });
    this.#started.push({ name: 'node agent endpoints', stop: async () => void (await Promise.all(endpoints.map((e) => e.stop()))) });
    const leases: NodeLease[] = [];
    this.#started.push({ name: 'node leases', stop: async () => void (await Promise.all(leases.map((l) => l.stop()))) });
    for (const layout of nodeLayout(o)) {
      const annotations = { [DAEMON_ANNOTATION]: this.identity };
      // on a shared store the store hands out the slice (taken atomically with the Node)
      const node = this.shared ? { ...layout, podCidr: await this.#claimNode(store, layout.name, annotations) } : layout;
      this.#nodeNames.push(node.name);
      let runtime: PodRuntime | undefined;
      // the kubelet's port: logs, exec, attach, port-forward of this node's pods (an ephemeral port, in the Node's status)
      const endpoint = new AgentEndpoint({
        store,
        log: this.#log.child({ node: node.name }),
        address: node.ip,
        port: 0,
        tls: { cert: pki.agentCert, key: pki.agentKey, ca: pki.ca },
        clientUser: AGENT_CLIENT_USER,
        stateDir: o.stateDir,
        execTarget: (uid, container) => runtime?.execTarget(uid, container),
        runningContainers: () => runtime?.runningContainers() ?? [],
        metricsResolutionMs: o.metricResolutionMs,
      });
      try {
        await endpoint.start();
        endpoints.push(endpoint);
      } catch (err) {
        this.#log.error({ err, node: node.name }, `${(err as Error).message}: kubectl logs, exec and port-forward will not work for pods on ${node.name}`);
      }
      runtime = new PodRuntime({
        store,
        informers,
        log: this.#log,
        nodeName: node.name,
        nodeIP: node.ip,
        podCidr: node.podCidr,
        stateDir: o.stateDir,
        images,
        backoff: { initialMs: o.backoffInitialMs, maxMs: o.backoffMaxMs },
        stopGraceMs: o.stopGraceMs,
        maxPods: o.maxPods,
        startRate: o.podStartRate,
        endpointPort: endpoint.port,
        ...(isLoopback(node.ip) ? {} : { extraAddresses: ['127.0.0.1'] }),
        // a mount namespace per container where the kernel allows one; KUBELOOP_MOUNT_NAMESPACES=off forces the fallback
        mountNamespaces: process.env.KUBELOOP_MOUNT_NAMESPACES !== 'off',
        clusterDomain: o.clusterDomain,
        extraEnv: {
          ...(this.#dns ? { KUBELOOP_DNS: `${dnsHost}:${this.#dns.port}` } : {}),
          KUBELOOP_CLUSTER_DOMAIN: o.clusterDomain,
        },
      });
      runtimes.push(runtime);
      await runtime.start();
      if (this.shared) {
        const lease = new NodeLease({
          store,
          log: this.#log,
          node: { nodeName: node.name, nodeIP: node.ip, podCidr: node.podCidr, maxPods: o.maxPods, endpointPort: endpoint.port, ...(isLoopback(node.ip) ? {} : { extraAddresses: ['127.0.0.1'] }), annotations },
          intervalMs: o.nodeLeaseIntervalMs,
          leaseDurationMs: o.nodeMonitorGracePeriodMs,
          owner: this.identity,
          onHold: (reason) => runtime?.holdStarts(reason),
        });
        leases.push(lease);
        await lease.start();
      }
    }

    // several machines on one store (a node IP other hosts reach): this node's pods are served to
    // the other nodes through its tunnel port, and theirs are answered on this host (agent/tunnel)
    if (reachable && pki.tunnelCert && pki.tunnelKey) {
      const local = new LocalAddresses();
      const tunnel = new Tunnel({
        store,
        informers,
        log: this.#log,
        nodes: nodeLayout(o).map((n) => ({ name: n.name, podCidr: n.podCidr })),
        address: o.nodeIP,
        port: o.tunnelPort,
        tls: { cert: pki.tunnelCert, key: pki.tunnelKey, ca: pki.ca },
        isLocalAddress: (ip) => local.has(ip),
      });
      try {
        await tunnel.start();
        this.#started.push({ name: 'tunnel', stop: () => tunnel.stop() });
      } catch (err) {
        this.#log.error({ err }, `cannot serve the node tunnel on ${o.nodeIP}: ${(err as Error).message} — pods on other machines cannot reach this node's pods; pass --tunnel-port with a free port`);
      }
    }

    const proxyEvents = new EventRecorder({ store, log: this.#log, component: 'kube-proxy', host: o.nodeName });
    this.#proxyEvents = proxyEvents;
    this.#started.push({ name: 'proxy events', stop: () => proxyEvents.close() });
    const proxy = new Proxy({
      informers,
      log: this.#log,
      nodeAddresses: [...o.nodePortAddresses],
      nodeNames: nodeLayout(o).map((n) => n.name),
      udpIdleTimeoutMs: o.udpTimeoutMs,
      processes: o.proxyProcesses,
      dataPath: o.dataPath,
      onListenerError: (svc, _address, _port, err) => this.#listenerFailed(svc, err),
      // the caps of the components that run: listeners leave them free (util/fd-budget.ts)
      connectionCaps: (this.#dns ? budget.dnsTcpConnections : 0) + budget.apiConnections + (o.metricsAddr ? budget.metricsConnections : 0),
    });
    await proxy.start();
    this.#proxy = proxy;
    this.#started.push({ name: 'proxy', stop: () => proxy.stop() });

    if (o.metricsAddr) {
      const [host, port] = splitHostPort(o.metricsAddr);
      const pm = proxyMetrics(proxy);
      const metrics = new MetricsServer({ registry: pm.registry, log: this.#log, address: host, port, maxConnections: budget.metricsConnections });
      connectionMetrics(pm.registry, { dns_tcp: () => this.#dns?.tcpStats(), api: () => this.#api?.connectionStats(), metrics: () => metrics.connectionStats() });
      try {
        await metrics.start();
        this.#metrics = metrics;
        this.#started.push({ name: 'metrics', stop: () => (pm.stop(), metrics.stop()) });
      } catch (err) {
        pm.stop();
        this.#log.error({ err, addr: o.metricsAddr }, `cannot serve metrics on ${o.metricsAddr}: ${(err as Error).message} — pass --metrics-addr with a free port, or --metrics-addr '' to turn it off`);
      }
    }

    const api = new ApiServer({
      store,
      informers,
      log: this.#log,
      address: apiHost,
      // a node other machines reach serves the API on its node IP too (HTTPS, credentials required)
      ...(!isLoopback(o.nodeIP) && isLoopback(apiHost) ? { extraAddresses: [o.nodeIP] } : {}),
      port: apiPort,
      token: o.apiToken || undefined,
      tls: o.insecurePlainHttpLoopback ? undefined : { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca },
      agentTls: { ca: pki.ca, cert: pki.agentClientCert, key: pki.agentClientKey },
      insecurePlainHttp: o.insecurePlainHttpLoopback,
      hosts,
      maxConnections: budget.apiConnections,
      handshakeTimeoutMs: o.apiHandshakeTimeoutMs,
      stateDir: o.stateDir,
    });
    try {
      await api.start();
      this.#api = api;
      this.#started.push({ name: 'api', stop: () => api.stop() });
      await writePrivate(this.kubeconfigPath, kubeconfigYaml({ server: api.url, ...(o.insecurePlainHttpLoopback ? {} : { ca: pki.ca, clientCert: pki.clientCert, clientKey: pki.clientKey }), token: o.apiToken || undefined }));
    } catch (err) {
      this.#log.error({ err, addr: o.apiAddr }, `cannot serve the API on ${o.apiAddr}: ${(err as Error).message} — pass --api-addr with a free port`);
    }

    await ensureObjects(
      store,
      systemObjects({
        // an unspecified bind address is no endpoint: clients reach the API on the node IP
        apiHost: this.#api ? (apiHost === '0.0.0.0' || apiHost === '::' ? o.nodeIP : apiHost) : undefined,
        apiPort: this.#api ? Number(new URL(this.#api.url).port) : undefined,
        apiClusterIP: nthAddress(parseCidr(o.serviceCidr), 1),
        ...dnsObjects,
        local: this.shared,
      }),
      owner,
    );
  }

  /** On a shared store: create the cluster's join credential, or present this daemon's (refused: a one-line error). */
  async #join(store: ClosableStore): Promise<void> {
    const o = this.opts;
    try {
      const r = await joinCluster(store, {
        token: o.join,
        stateDir: o.stateDir,
        log: this.#log,
        identity: {
          local: () => ensureClusterIdentity(join(o.stateDir, 'pki'), this.#log),
          adopt: async (id) => void (await adoptClusterIdentity(join(o.stateDir, 'pki'), id, this.#log)),
        },
        config: {
          'service-cidr': o.serviceCidr,
          'pod-cidr': o.podCidr,
          'service-node-port-range': o.nodePortRange,
          'cluster-domain': o.clusterDomain,
          'node-cidr-mask-size': String(o.nodeCidrMaskSize),
        },
      });
      this.#joinToken = r.createdToken;
    } catch (e) {
      if (e instanceof JoinRefused) throw new Error(`cannot join the cluster on ${o.store.replace(/\/\/[^@/]*@/, '//')}: ${e.message}`);
      throw e;
    }
    // a node name run by another live daemon would be two agents fighting over one node's pods:
    // its Lease names the daemon instance that runs it, claimed in one compare-and-set write
    for (const { name } of nodeLayout(o)) {
      try {
        if ((await claimNodeLease(store, { nodeName: name, owner: this.identity, leaseDurationMs: o.nodeMonitorGracePeriodMs })) === 'created') this.#createdLeases.add(name);
      } catch (e) {
        if (e instanceof NodeOwned) throw new Error(e.message);
        throw e;
      }
    }
    await this.#leaveOldNodes(store);
  }

  /**
   * Nodes this state dir ran before under another --node-name (the daemon was killed, then
   * started with a new name): nothing else will ever run them (a node's Lease names the daemon
   * instance, and one daemon holds a state dir), so they leave the cluster now, freeing their
   * pod CIDR slices, instead of lingering NotReady. A node another daemon took over is left alone.
   */
  async #leaveOldNodes(store: Store): Promise<void> {
    const mine = new Set(nodeLayout(this.opts).map((n) => n.name));
    for (const n of (await store.list<Node>('Node')).items) {
      const name = n.metadata.name;
      if (mine.has(name) || n.metadata.annotations?.[DAEMON_ANNOTATION] !== this.identity) continue;
      const lease = await store.tryGet<Lease>('Lease', NODE_LEASE_NAMESPACE, name);
      const holder = lease?.metadata?.annotations?.[NODE_OWNER_ANNOTATION];
      if (holder && holder !== this.identity) continue;
      this.#log.warn({ node: name, podCIDR: n.spec?.podCIDR }, `node ${name} was run from this state dir under its old --node-name: it leaves the cluster (Node, Lease and pods removed, its pod CIDR slice freed)`);
      await removeNode(store, name, this.#log);
    }
  }

  /** The Node of a shared store with its pod CIDR slice; refused in one line when no slice is free. */
  async #claimNode(store: Store, name: string, annotations: Record<string, string>): Promise<string> {
    // stopped halfway (Ctrl-C): create nothing the stop would not remove
    if (this.#stopping) throw new Error('stopped while starting');
    // what this start creates is removed again if the start fails
    if (!(await store.tryGet<Node>('Node', undefined, name))) this.#createdNodes.add(name);
    try {
      return await claimNode(store, { nodeName: name, annotations });
    } catch (e) {
      if (!isApiError(e, 'Invalid') || !/no free \/\d+ slice/.test((e as Error).message)) throw e;
      const o = this.opts;
      const holders = (await store.list<Node>('Node')).items.filter((n) => n.spec?.podCIDR && n.metadata.name !== name).map((n) => n.metadata.name).sort();
      const count = 2 ** (o.nodeCidrMaskSize - parseCidr(o.podCidr).bits);
      throw new Error(
        `no free /${o.nodeCidrMaskSize} pod CIDR slice for node ${name}: the ${count} slices of --pod-cidr ${o.podCidr} are held by nodes ${holders.join(', ')}: stop one of them with Ctrl-C (it leaves and frees its slice), or make the cluster with a larger --pod-cidr or --node-cidr-mask-size (smaller slices)`,
      );
    }
  }

  /**
   * A start that failed on a shared store: the Nodes and Leases it created go again (a Node
   * frees its slice), so a refused node leaves nothing behind. The store may be down (that may be
   * why the start failed): tried for a few seconds, as it may come back.
   */
  async #undoStart(): Promise<void> {
    const store = this.#store;
    if (!store || (!this.#createdNodes.size && !this.#createdLeases.size)) return;
    const deadline = Date.now() + UNDO_TIMEOUT_MS;
    for (;;) {
      try {
        for (const name of this.#createdNodes) await removeNode(store, name, this.#log);
        for (const name of this.#createdLeases) {
          const l = await store.tryGet<Lease>('Lease', NODE_LEASE_NAMESPACE, name);
          if (l?.metadata?.annotations?.[NODE_OWNER_ANNOTATION] !== this.identity) continue;
          await store.delete('Lease', NODE_LEASE_NAMESPACE, name).catch((e: unknown) => {
            if (!isApiError(e, 'NotFound')) throw e;
          });
        }
        this.#log.info({ nodes: [...this.#createdNodes], leases: [...this.#createdLeases] }, 'the start failed: removed what it registered');
        return;
      } catch (e) {
        if (!isApiError(e, 'ServiceUnavailable') || Date.now() > deadline) {
          this.#log.warn({ err: (e as Error).message, nodes: [...this.#createdNodes], leases: [...this.#createdLeases] }, 'the start failed and what it registered could not be removed: a Lease expires after --node-monitor-grace-period; the next start with this state dir takes it back');
          return;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  /**
   * A joined node stopped with Ctrl-C, while other nodes can take its pods: cordon, evict its
   * pods (PodDisruptionBudgets respected; a 429 is tried again) and wait for them to be gone, at
   * most --drain-timeout. Returns what to do once the rest has stopped (just before the store
   * closes): delete its Node (releasing its pod CIDR slice) and Lease, its leftover pods
   * (DaemonSet pods) and its addresses in the system Endpoints. Undefined: not leaving (the
   * last node keeps its pods for the next start).
   */
  async #drain(): Promise<(() => Promise<void>) | undefined> {
    const store = this.#store;
    const inf = this.#informers;
    if (!store || !inf || !this.#nodeNames.length) return undefined;
    const mine = new Set(this.#nodeNames);
    const others = inf
      .for<Node>('Node')
      .list()
      .filter((n) => !mine.has(n.metadata.name) && !n.spec?.unschedulable && n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
    if (!others.length) {
      this.#log.info('the last ready node of the cluster: not draining (its pods stay in the store and run again at the next start)');
      return undefined;
    }
    const log = this.#log.child({ component: 'drain' });
    log.info({ nodes: [...mine] }, 'leaving the cluster: cordon, evict, then leave');
    for (const name of mine) {
      await store.mutate<Node>('Node', undefined, name, (n) => {
        if (n.spec?.unschedulable) return false;
        n.spec = { ...n.spec, unschedulable: true };
      });
    }
    const pods = inf.for<Pod>('Pod');
    const isDaemonPod = (p: Pod) => p.metadata?.ownerReferences?.some((r) => r.controller && r.kind === 'DaemonSet') ?? false;
    const deadline = Date.now() + this.opts.drainTimeoutMs;
    let refused = 0;
    for (;;) {
      const left = pods.list().filter((p) => mine.has(p.spec?.nodeName ?? '') && !isDaemonPod(p) && p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed');
      if (!left.length) break;
      if (Date.now() > deadline) {
        log.warn({ left: left.map((p) => `${p.metadata.namespace}/${p.metadata.name}`), refused }, `drain timed out after ${this.opts.drainTimeoutMs} ms: leaving anyway (raise --drain-timeout to wait longer)`);
        break;
      }
      for (const p of left) {
        if (p.metadata.deletionTimestamp) continue;
        try {
          await evictPod(store, p.metadata.namespace ?? 'default', p.metadata.name);
        } catch (e) {
          if (isApiError(e, 'TooManyRequests')) refused++;
          else if (!isApiError(e, 'NotFound') && !isApiError(e, 'Conflict')) log.warn({ err: (e as Error).message, pod: p.metadata.name }, 'cannot evict');
        }
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    log.info({ refusedByBudgets: refused }, 'drained');
    return async () => {
      for (const name of mine) await removeNode(store, name, log).catch((e: unknown) => log.warn({ err: (e as Error).message, node: name }, 'cannot remove the node'));
      log.info({ nodes: [...mine] }, 'left the cluster (Node deleted, pod CIDR slice released)');
    };
  }


  /** Applies the `-f` manifests; problems are returned, not thrown. */
  async applyFiles(): Promise<ApplyResult> {
    const { files, problems } = expandPaths(this.opts.files);
    const res = await applyManifests(this.store, readManifests(files));
    res.problems.unshift(...problems);
    return res;
  }

  /**
   * Waits until every Deployment and ReplicaSet has its replicas ready and every pod has
   * settled (ready, or stuck on something only the user can fix), then for the proxy to
   * have applied it all. Gives up quietly after `timeoutMs`.
   */
  async waitSettled(timeoutMs: number): Promise<boolean> {
    const inf = this.#informers!;
    const deadline = Date.now() + timeoutMs;
    const settled = (): boolean => {
      for (const d of inf.for<Deployment>('Deployment').list()) {
        const want = d.spec?.replicas ?? 1;
        if (d.spec?.paused) continue;
        if ((d.status?.observedGeneration ?? 0) < (d.metadata.generation ?? 0)) return false;
        if ((d.status?.readyReplicas ?? 0) < want && !podsStuck(inf.for<Pod>('Pod').list(), d.metadata.namespace)) return false;
      }
      for (const rs of inf.for<ReplicaSet>('ReplicaSet').list()) {
        const want = rs.spec?.replicas ?? 1;
        if ((rs.status?.readyReplicas ?? 0) < want && !podsStuck(inf.for<Pod>('Pod').list(), rs.metadata.namespace)) return false;
      }
      for (const ss of inf.for<StatefulSet>('StatefulSet').list()) {
        const want = ss.spec?.replicas ?? 1;
        if ((ss.status?.readyReplicas ?? 0) < want && !podsStuck(inf.for<Pod>('Pod').list(), ss.metadata.namespace)) return false;
      }
      for (const ds of inf.for<DaemonSet>('DaemonSet').list()) {
        if ((ds.status?.observedGeneration ?? 0) < (ds.metadata.generation ?? 0)) return false;
        if ((ds.status?.numberReady ?? 0) < (ds.status?.desiredNumberScheduled ?? 0) && !podsStuck(inf.for<Pod>('Pod').list(), ds.metadata.namespace)) return false;
      }
      for (const p of inf.for<Pod>('Pod').list()) {
        if (p.metadata.deletionTimestamp) continue;
        if (!isReady(p) && !isStuck(p) && p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed') return false;
      }
      return true;
    };
    while (!settled()) {
      if (Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 25));
    }
    await this.#proxy?.synced();
    return true;
  }

  /** The address table `up` prints. */
  table(): string {
    const inf = this.#informers!;
    const eps = inf.for<Endpoints>('Endpoints');
    const rows = serviceRows(
      inf.for<Service>('Service').list(),
      (ns, name) => eps.get(ns, name),
      this.opts.nodePortAddresses,
      (s: Stored<Service>) => `${s.metadata.name}.${s.metadata.namespace}.svc.${this.opts.clusterDomain}`,
      new Set(this.listenerErrors().map((e) => `${e.address}:${e.portNumber}/${e.protocol}`)),
      this.opts.insecurePlainHttpLoopback ? undefined : join(this.opts.stateDir, 'pki', 'ca.crt'),
    );
    return renderTable(rows);
  }

  /** listeners the proxy could not open, with the reason and the fix */
  listenerErrors(): Array<{ address: string; portNumber: number; protocol: string; message: string }> {
    return this.#proxy?.listenerErrors() ?? [];
  }

  /** Idempotent: stops components in reverse order; every pod process group is ended. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      let leave: (() => Promise<void>) | undefined;
      if (this.shared && !this.#up) {
        // a start that failed (or was stopped halfway) leaves nothing registered
        leave = () => this.#undoStart();
      } else if (this.shared) {
        try {
          leave = await this.#drain();
        } catch (err) {
          this.#log.error({ err }, 'draining this node failed: stopping without leaving the cluster');
        }
      }
      for (const c of [...this.#started].reverse()) {
        try {
          if (c.name === 'store' && leave) await leave();
          await c.stop();
        } catch (err) {
          this.#log.error({ err, component: c.name }, 'stopping a component failed');
        }
      }
      this.#started.length = 0;
      if (this.#lockFile) rmSync(this.#lockFile, { force: true });
    })();
    return this.#stopping;
  }

  #listenerFailed(svc: string, err: Error): void {
    const [ns, name] = svc.split('/');
    const obj = this.#informers?.for<Service>('Service').get(ns, name);
    // the message names the portal, the cause and the fix (the proxy's bindErrorMessage)
    if (obj) this.#proxyEvents?.event(obj, 'Warning', 'FailedToBind', err.message);
  }

  /** One daemon per state dir: a second one would fight over pods and the snapshot. */
  #lock(dir: string): void {
    this.#lockFile = takePidFile(dir, this.#log);
  }
}

/** how long a failed start tries to remove what it registered while the store does not answer */
const UNDO_TIMEOUT_MS = 10_000;

/**
 * A node leaving the cluster: its Node (freeing its pod CIDR slice) and Lease, the pods still
 * bound to it (DaemonSet pods, a drain that timed out: nothing runs them any more, upstream's
 * PodGC) and its addresses in the system Endpoints. Store errors other than NotFound are thrown.
 */
async function removeNode(store: Store, name: string, log: Logger): Promise<void> {
  const gone = (e: unknown): void => {
    if (!isApiError(e, 'NotFound')) throw e;
  };
  await store.delete('Node', undefined, name).catch(gone);
  await store.delete('Lease', NODE_LEASE_NAMESPACE, name).catch(gone);
  for (const p of (await store.list<Pod>('Pod', { fieldSelector: `spec.nodeName=${name}` })).items) {
    await store.delete('Pod', p.metadata.namespace, p.metadata.name, { gracePeriodSeconds: 0 }).catch(gone);
  }
  await removeNodeEndpoints(store, name).catch((e: unknown) => log.warn({ err: (e as Error).message }, 'cannot remove the node from the system Endpoints'));
}

/** a store that does not answer: its message with what to do (other errors as they are) */
function withStoreFix(e: unknown, fix: string): unknown {
  if (!isApiError(e, 'ServiceUnavailable') || !/ is unreachable: /.test((e as Error).message)) return e;
  return new Error(`${(e as Error).message} — ${fix}`);
}

const isReady = (p: Pod): boolean => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

const STUCK = new Set(['ErrImageNeverPull', 'CrashLoopBackOff', 'CreateContainerConfigError', 'StartError', 'RunContainerError']);
const isStuck = (p: Pod): boolean =>
  (p.status?.containerStatuses ?? []).some((c) => STUCK.has(c.state?.waiting?.reason ?? '')) ||
  p.status?.conditions?.some((c) => c.type === 'PodScheduled' && c.status === 'False') === true;

const podsStuck = (pods: readonly Pod[], ns: string | undefined): boolean =>
  pods.some((p) => p.metadata?.namespace === ns && isStuck(p));

/**
 * What the API's certificate covers and what its `Host` check accepts: loopback names, the bind
 * address (for an unspecified one: every node IP and interface address and the host name), the
 * in-cluster names of the `kubernetes` Service and the first IP of --service-cidr (upstream's
 * convention for that Service's ClusterIP).
 */
export function apiHosts(o: Pick<Options, 'nodes' | 'nodeName' | 'nodeIP' | 'podCidr' | 'serviceCidr' | 'clusterDomain'>, apiHost: string): string[] {
  const out = ['localhost', '127.0.0.1', '::1', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', `kubernetes.default.svc.${o.clusterDomain}`];
  try {
    out.push(nthAddress(parseCidr(o.serviceCidr), 1));
  } catch {
    // reported by option validation
  }
  if (apiHost === '0.0.0.0' || apiHost === '::') {
    out.push(...nodeLayout(o).map((n) => n.ip), hostname());
    for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' || apiHost === '::') out.push(a.address.replace(/%.*$/, ''));
  } else {
    out.push(apiHost);
    // a node other machines reach: the API listens on its node IP too
    if (!isLoopback(o.nodeIP)) out.push(o.nodeIP);
  }
  return [...new Set(out.map((h) => h.toLowerCase()))];
}

/** The connection caps of the options, scaled down (with a warning) when RLIMIT_NOFILE is too small for them. */
function connectionBudget(o: Readonly<Options>, nofile: number | undefined, log: Logger): FdBudget {
  const wanted = { dnsTcpConnections: o.dnsTcpMaxConnections, apiConnections: o.apiMaxConnections, metricsConnections: o.metricsMaxConnections };
  const { budget, scaled } = fitBudget(wanted, nofile);
  if (scaled) {
    log.warn(
      { limit: nofile, wanted, budget },
      `the open-files limit (${nofile}) leaves too little for the proxy with these connection caps: using DNS/TCP ${budget.dnsTcpConnections}, API ${budget.apiConnections}, /metrics ${budget.metricsConnections} (raise the limit with ulimit -n, or lower the --*-max-connections flags)`,
    );
  }
  return budget;
}

export function splitHostPort(s: string): [string, number] {
  const i = s.lastIndexOf(':');
  return [s.slice(0, i), Number(s.slice(i + 1))];
}
