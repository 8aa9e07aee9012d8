import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { type Cidr, cidrContains, cidrsOverlap, ipToNumber, isLoopback, LOOPBACK, numberToIp, parseCidr } from '../util/cidr.js';
import { parsePortRange } from '../util/allocator.js';
import { parseRedisUrl } from '../store/backends/redis-url.js';
import { DATA_PATH_PREFERENCES, type DataPathPreference, chooseDataPath } from '../util/uv.js';
import { API_HANDSHAKE_TIMEOUT_MS, DEFAULT_FD_BUDGET, DNS_TCP_IDLE_TIMEOUT_MS } from '../util/fd-budget.js';

/** Every option of `kubeloop up`, resolved once (defaults → config file → flags), validated, frozen. */
export interface Options {
  files: readonly string[];
  /** image tables of one's own, over config/images/images.yaml (later ones win); re-read when they change */
  images: readonly string[];
  stateDir: string;
  /** `embedded` (the default: in process, journaled to the state dir) or `redis://…` / `rediss://…` */
  store: string;
  /** the Redis password when the --store URL has none: $KUBELOOP_REDIS_PASSWORD, never a flag */
  storePassword: string;
  serviceCidr: string;
  podCidr: string;
  nodePortRange: string;
  nodePortAddresses: readonly string[];
  allowLoopbackEndpoints: boolean;
  /** LoadBalancer ingress IPs come from this CIDR inside 127/8; '' turns the provider off */
  lbPool: string;
  disableLoadBalancer: boolean;
  nodeName: string;
  nodeIP: string;
  /** simulated nodes (`--nodes`): each a Node object with its own loopback IP and pod CIDR slice; see `nodeLayout` */
  nodes: number;
  logLevel: string;
  udpTimeoutMs: number;
  /** processes accepting on TCP portals (the daemon + workers); see agent/proxy/workers.ts */
  proxyProcesses: number;
  /** the proxy's TCP and DNS's UDP data path: auto, uv (Node's libuv handles) or net (node:net); util/uv.ts */
  dataPath: DataPathPreference;
  dnsAddr: string;
  clusterDomain: string;
  dnsTtl: number;
  dnsUpstream: string;
  /** the descriptor budget (util/fd-budget.ts): open DNS/TCP, API and /metrics connections at most */
  dnsTcpMaxConnections: number;
  /** idle DNS/TCP connections are closed (fully) after this long */
  dnsTcpIdleTimeoutMs: number;
  apiMaxConnections: number;
  /** API clients must finish TLS and send a request's headers within this long */
  apiHandshakeTimeoutMs: number;
  metricsMaxConnections: number;
  /** kube-apiserver-compatible API */
  apiAddr: string;
  /** Prometheus `/metrics` of the proxy (kube-proxy's --metrics-bind-address); '' turns it off */
  metricsAddr: string;
  /**
   * bearer token the API accepts besides the kubeconfig's client certificate: read from
   * --api-token-file or $KUBELOOP_API_TOKEN, never a flag value (flags show in `ps`)
   */
  apiToken: string;
  /** file holding the bearer token (first line) */
  apiTokenFile: string;
  /** tests only: the API over plain HTTP on a loopback address, no TLS, no client certificates */
  insecurePlainHttpLoopback: boolean;
  /** CrashLoopBackOff curve: first delay and cap */
  backoffInitialMs: number;
  backoffMaxMs: number;
  /** how long `up` waits for pods to be ready before printing the table anyway */
  readyTimeoutMs: number;
  /** grace given to pods when the daemon stops (capped per pod by its own grace period) */
  stopGraceMs: number;
  /** how often each HorizontalPodAutoscaler is synced (kube-controller-manager's --horizontal-pod-autoscaler-sync-period) */
  hpaSyncPeriodMs: number;
  /** the downscale stabilization window of HorizontalPodAutoscalers without `behavior` */
  hpaDownscaleStabilizationMs: number;
  /** between two /proc samples of the pods' CPU and memory (metrics-server's --metric-resolution) */
  metricResolutionMs: number;
  /** pods per node (the kubelet's --max-pods): the Node's allocatable pods, enforced by the scheduler */
  maxPods: number;
  /** pod starts per second per node (a burst of as many may go at once) */
  podStartRate: number;
  /** the node tunnel's port on --node-ip (other machines reach this node's pods through it; 0: any free port) */
  tunnelPort: number;
  /**
   * the join credential of the cluster on a shared --store (printed by its first daemon):
   * --join TOKEN or $KUBELOOP_JOIN_TOKEN; '' for none (a first daemon, or one that joined before)
   */
  join: string;
  /** on a shared store, each node takes a free slice of --pod-cidr of this prefix length (kube-controller-manager's --node-cidr-mask-size) */
  nodeCidrMaskSize: number;
  /** how often each node renews its Lease in kube-node-lease (the kubelet's 10 s) */
  nodeLeaseIntervalMs: number;
  /** a node whose Lease was not renewed for this long turns NotReady (Ready=Unknown) with the unreachable taints */
  nodeMonitorGracePeriodMs: number;
  /** pods on a NotReady/unreachable node that tolerate it for no set time are deleted after this (upstream's 300 s default toleration) */
  podEvictionTimeoutMs: number;
  /** a joined node stopped with Ctrl-C waits at most this long for its evicted pods to be gone before it leaves */
  drainTimeoutMs: number;
}

interface FlagSpec {
  name: string;
  short?: string;
  key: keyof Options;
  kind: 'string' | 'list' | 'bool' | 'int' | 'duration';
  arg?: string;
  help: string;
}

/** The flags, in help order. Each maps to one option; the config file uses the same keys. */
export const FLAGS: readonly FlagSpec[] = [
  { name: 'filename', short: 'f', key: 'files', kind: 'list', arg: 'FILE|DIR', help: 'manifest file or directory (.yaml/.yml/.json, not recursive) to apply at start; repeatable' },
  { name: 'images', key: 'images', kind: 'list', arg: 'FILE', help: 'an image table of your own (the format of config/images/images.yaml), over the shipped one; repeatable, later ones win; re-read when it changes' },
  { name: 'state-dir', key: 'stateDir', kind: 'string', arg: 'DIR', help: 'where the store snapshot and pod logs live' },
  { name: 'store', key: 'store', kind: 'string', arg: 'embedded|URL', help: "where objects live: 'embedded' (in process, journaled to --state-dir) or a Redis server, redis://[user:pass@]HOST:PORT[/DB] or rediss:// (TLS); several daemons on one Redis are one cluster. The password may come from $KUBELOOP_REDIS_PASSWORD instead" },
  { name: 'service-cidr', key: 'serviceCidr', kind: 'string', arg: 'CIDR', help: 'ClusterIP range, inside 127.0.0.0/8' },
  { name: 'pod-cidr', key: 'podCidr', kind: 'string', arg: 'CIDR', help: 'pod IP range, inside 127.0.0.0/8, not overlapping --service-cidr' },
  { name: 'service-node-port-range', key: 'nodePortRange', kind: 'string', arg: 'MIN-MAX', help: 'nodePort range (kube-apiserver flag)' },
  { name: 'nodeport-addresses', key: 'nodePortAddresses', kind: 'list', arg: 'IP[,IP]', help: 'addresses NodePorts listen on (kube-proxy flag); never all interfaces by default' },
  { name: 'allow-loopback-endpoints', key: 'allowLoopbackEndpoints', kind: 'bool', help: 'accept hand-written Endpoints and Service externalIPs on 127.0.0.0/8 (upstream rejects them; handy to point a Service at a local process)' },
  { name: 'lb-pool', key: 'lbPool', kind: 'string', arg: 'CIDR', help: 'LoadBalancer Services get their ingress IP from this range inside 127.0.0.0/8; empty: no load-balancer provider' },
  { name: 'disable-load-balancer', key: 'disableLoadBalancer', kind: 'bool', help: 'no load-balancer provider: LoadBalancer Services work as NodePort and their status stays pending' },
  { name: 'node-name', key: 'nodeName', kind: 'string', arg: 'NAME', help: 'name of this node' },
  { name: 'node-ip', key: 'nodeIP', kind: 'string', arg: 'IP', help: "this node's address: a loopback IP, or an address of this host's interfaces for a node other machines reach (the Node lists it as InternalIP, with 127.0.0.1)" },
  { name: 'nodes', key: 'nodes', kind: 'int', arg: 'N', help: 'simulated nodes (1-64): node-1..node-N at --node-ip, then the next /24 (127.0.1.1, 127.0.2.1, ...), each with an equal slice of --pod-cidr; NodePorts open on every node IP unless --nodeport-addresses is given' },
  { name: 'udp-timeout', key: 'udpTimeoutMs', kind: 'duration', arg: 'DURATION', help: 'idle timeout of proxied UDP flows (kube-proxy --udp-timeout), e.g. 250ms, 2s' },
  { name: 'proxy-processes', key: 'proxyProcesses', kind: 'int', arg: 'N', help: 'processes accepting on TCP Service ports (1-64): more spread a load test over more cores; round robin is then per process, and ClientIP-affinity and UDP ports stay in the daemon' },
  { name: 'data-path', key: 'dataPath', kind: 'string', arg: 'auto|uv|net', help: "how Service traffic is carried: uv (Node's libuv handles, fastest), net (node:net, works everywhere), auto: uv where it loads without a warning or a permission error, else net; also $KUBELOOP_DATA_PATH" },
  { name: 'dns-addr', key: 'dnsAddr', kind: 'string', arg: 'IP:PORT', help: 'cluster DNS, UDP and TCP' },
  { name: 'cluster-domain', key: 'clusterDomain', kind: 'string', arg: 'DOMAIN', help: 'DNS zone of Services and pods' },
  { name: 'dns-ttl', key: 'dnsTtl', kind: 'int', arg: 'SECONDS', help: 'TTL of DNS answers' },
  { name: 'dns-upstream', key: 'dnsUpstream', kind: 'string', arg: 'IP:PORT', help: 'forward names outside the cluster domain here (default: refuse them)' },
  { name: 'dns-tcp-max-connections', key: 'dnsTcpMaxConnections', kind: 'int', arg: 'N', help: 'open DNS-over-TCP connections at most; more are closed at once (UDP answers on). Part of the descriptor budget that keeps the proxy its fds' },
  { name: 'dns-tcp-idle-timeout', key: 'dnsTcpIdleTimeoutMs', kind: 'duration', arg: 'DURATION', help: 'idle DNS-over-TCP connections are closed after this long (RFC 7766: at least 10s)' },
  { name: 'api-addr', key: 'apiAddr', kind: 'string', arg: 'IP:PORT', help: 'Kubernetes API for kubectl (a kubeconfig is written to the state dir)' },
  { name: 'metrics-addr', key: 'metricsAddr', kind: 'string', arg: 'IP:PORT', help: 'Prometheus /metrics of the proxy (kube-proxy --metrics-bind-address); empty: off' },
  { name: 'api-max-connections', key: 'apiMaxConnections', kind: 'int', arg: 'N', help: 'open API connections at most, watches and log streams included; more are closed at once. Connections not yet authenticated get at most 64 of them (at most half): a new one closes the oldest, so they never take the slots kubectl needs' },
  { name: 'api-handshake-timeout', key: 'apiHandshakeTimeoutMs', kind: 'duration', arg: 'DURATION', help: 'API connections that do not finish their TLS handshake, or send a request\'s headers, within this long are closed' },
  { name: 'metrics-max-connections', key: 'metricsMaxConnections', kind: 'int', arg: 'N', help: 'open /metrics connections at most; more are closed at once' },
  { name: 'api-token-file', key: 'apiTokenFile', kind: 'string', arg: 'FILE', help: 'a bearer token the API accepts besides the client certificate of the generated kubeconfig, read from FILE (or $KUBELOOP_API_TOKEN); written into the kubeconfig' },
  { name: 'insecure-plain-http-loopback', key: 'insecurePlainHttpLoopback', kind: 'bool', help: 'INSECURE, for tests: serve the API over plain HTTP without credentials (unless a token is set) on a loopback --api-addr; any local user can then act as you' },
  { name: 'crashloop-backoff', key: 'backoffInitialMs', kind: 'duration', arg: 'DURATION', help: 'first CrashLoopBackOff delay; doubles up to --crashloop-backoff-max' },
  { name: 'crashloop-backoff-max', key: 'backoffMaxMs', kind: 'duration', arg: 'DURATION', help: 'longest CrashLoopBackOff delay' },
  { name: 'ready-timeout', key: 'readyTimeoutMs', kind: 'duration', arg: 'DURATION', help: 'how long up waits for pods to be ready before printing the address table' },
  { name: 'horizontal-pod-autoscaler-sync-period', key: 'hpaSyncPeriodMs', kind: 'duration', arg: 'DURATION', help: 'how often each HorizontalPodAutoscaler reads its metrics and rescales (kube-controller-manager flag)' },
  { name: 'horizontal-pod-autoscaler-downscale-stabilization', key: 'hpaDownscaleStabilizationMs', kind: 'duration', arg: 'DURATION', help: 'HorizontalPodAutoscalers without spec.behavior scale down to the highest recommendation of this window (kube-controller-manager flag)' },
  { name: 'metric-resolution', key: 'metricResolutionMs', kind: 'duration', arg: 'DURATION', help: "how often each node samples its pods' CPU and memory from /proc for kubectl top and autoscaling; CPU is the rate between two samples (metrics-server flag)" },
  { name: 'stop-grace', key: 'stopGraceMs', kind: 'duration', arg: 'DURATION', help: 'at most this much SIGTERM grace per pod when the daemon stops' },
  { name: 'max-pods', key: 'maxPods', kind: 'int', arg: 'N', help: "pods per node (the kubelet's --max-pods); pods over it stay Pending with the scheduler's 'Too many pods'" },
  { name: 'tunnel-port', key: 'tunnelPort', kind: 'int', arg: 'PORT', help: "with a shared --store and a --node-ip other machines reach: the port on --node-ip where other nodes reach this node's pods (HTTP/2 CONNECT over mutual TLS; only this node's pods' declared ports); 0 picks a free one" },
  { name: 'pod-start-rate', key: 'podStartRate', kind: 'int', arg: 'N', help: 'pod starts (process forks) per second per node, in bursts of up to N; further pods wait Pending with reason StartRateLimited' },
  { name: 'join', key: 'join', kind: 'string', arg: 'TOKEN', help: 'join the cluster on --store with the token its first daemon printed (or $KUBELOOP_JOIN_TOKEN, which ps does not show); a daemon that joined once finds it in its --state-dir' },
  { name: 'node-cidr-mask-size', key: 'nodeCidrMaskSize', kind: 'int', arg: 'BITS', help: 'on a shared --store each node takes a free /BITS slice of --pod-cidr (kube-controller-manager flag)' },
  { name: 'node-lease-interval', key: 'nodeLeaseIntervalMs', kind: 'duration', arg: 'DURATION', help: "how often each node renews its Lease in kube-node-lease (the kubelet's heartbeat)" },
  { name: 'node-monitor-grace-period', key: 'nodeMonitorGracePeriodMs', kind: 'duration', arg: 'DURATION', help: 'a node whose Lease is not renewed for this long turns NotReady with the unreachable taints (kube-controller-manager flag; shared --store only)' },
  { name: 'pod-eviction-timeout', key: 'podEvictionTimeoutMs', kind: 'duration', arg: 'DURATION', help: "pods on a NotReady or unreachable node are deleted (and recreated elsewhere by their controllers) after this, unless their tolerations say otherwise (upstream's default tolerationSeconds)" },
  { name: 'drain-timeout', key: 'drainTimeoutMs', kind: 'duration', arg: 'DURATION', help: 'a joined node stopped with Ctrl-C cordons itself, evicts its pods and waits at most this long for them to be gone before it leaves' },
  { name: 'log-level', key: 'logLevel', kind: 'string', arg: 'LEVEL', help: 'trace, debug, info, warn, error, fatal or silent' },
];

export const DEFAULTS: Readonly<Options> = Object.freeze({
  files: [],
  images: [],
  stateDir: '.kubeloop',
  store: 'embedded',
  storePassword: '',
  serviceCidr: '127.96.0.0/12',
  podCidr: '127.244.0.0/16',
  nodePortRange: '30000-32767',
  nodePortAddresses: ['127.0.0.1'],
  allowLoopbackEndpoints: false,
  lbPool: '127.240.0.0/16',
  disableLoadBalancer: false,
  nodeName: 'node-1',
  nodeIP: '127.0.0.1',
  nodes: 1,
  logLevel: 'info',
  udpTimeoutMs: 250,
  proxyProcesses: 1,
  dataPath: 'auto',
  dnsAddr: '127.0.0.1:1053',
  clusterDomain: 'cluster.local',
  dnsTtl: 5,
  dnsUpstream: '',
  dnsTcpMaxConnections: DEFAULT_FD_BUDGET.dnsTcpConnections,
  dnsTcpIdleTimeoutMs: DNS_TCP_IDLE_TIMEOUT_MS,
  apiMaxConnections: DEFAULT_FD_BUDGET.apiConnections,
  apiHandshakeTimeoutMs: API_HANDSHAKE_TIMEOUT_MS,
  metricsMaxConnections: DEFAULT_FD_BUDGET.metricsConnections,
  apiAddr: '127.0.0.1:6443',
  metricsAddr: '127.0.0.1:10249',
  apiToken: '',
  apiTokenFile: '',
  insecurePlainHttpLoopback: false,
  backoffInitialMs: 10_000,
  backoffMaxMs: 300_000,
  readyTimeoutMs: 15_000,
  stopGraceMs: 5_000,
  hpaSyncPeriodMs: 15_000,
  hpaDownscaleStabilizationMs: 300_000,
  metricResolutionMs: 15_000,
  maxPods: 110,
  podStartRate: 20,
  tunnelPort: 10251,
  join: '',
  nodeCidrMaskSize: 24,
  nodeLeaseIntervalMs: 10_000,
  nodeMonitorGracePeriodMs: 40_000,
  podEvictionTimeoutMs: 300_000,
  drainTimeoutMs: 60_000,
});

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

export class OptionsError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.join('\n'));
    this.name = 'OptionsError';
    this.problems = problems;
  }
}

/** `250ms`, `2s`, `1m`, `1.5s`, or a bare number of milliseconds. */
export function parseDuration(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(String(s).trim());
  if (!m) return undefined;
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 'ms') as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * mult);
}

function convert(spec: FlagSpec, raw: unknown, problems: string[], where: string): unknown {
  const bad = (want: string) => {
    problems.push(`${where}: "${String(raw)}" is not ${want}`);
    return undefined;
  };
  switch (spec.kind) {
    case 'string':
      return typeof raw === 'string' ? raw : bad('a string');
    case 'bool':
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === 'false') return raw === 'true';
      return bad('true or false');
    case 'int': {
      const n = Number(raw);
      return Number.isInteger(n) && n >= 0 ? n : bad('a whole number ≥ 0');
    }
    case 'duration': {
      const d = typeof raw === 'number' ? raw : parseDuration(String(raw));
      return d !== undefined && d >= 0 ? d : bad('a duration like 250ms, 2s or 1m');
    }
    case 'list': {
      const items = (Array.isArray(raw) ? raw : [raw]).flatMap((x) => String(x).split(',')).map((x) => x.trim());
      return items.filter((x) => x !== '');
    }
  }
}

/** Splits argv of `up` into option values; unknown flags are problems, not crashes. */
export function parseFlags(argv: readonly string[]): { values: Partial<Options>; config?: string; problems: string[] } {
  const values: Partial<Record<keyof Options, unknown>> = {};
  const problems: string[] = [];
  let config: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    let name: string;
    let inline: string | undefined;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      inline = eq > 0 ? a.slice(eq + 1) : undefined;
    } else if (/^-[a-zA-Z]$/.test(a)) {
      name = a.slice(1);
    } else {
      problems.push(`unexpected argument "${a}": manifests are given with -f ${a}`);
      continue;
    }
    if (name === 'api-token') {
      problems.push('--api-token is gone (a flag shows the token to every user in ps): put the token in a file only you can read and pass --api-token-file FILE, or set KUBELOOP_API_TOKEN');
      if (inline === undefined) i++;
      continue;
    }
    if (name === 'config') {
      config = inline ?? argv[++i];
      if (config === undefined) problems.push('--config needs a FILE');
      continue;
    }
    const spec = FLAGS.find((f) => f.name === name || f.short === name);
    if (!spec) {
      problems.push(`unknown flag "${a}": see kubeloop up --help`);
      continue;
    }
    let raw: string | boolean | undefined = inline;
    if (spec.kind === 'bool') raw ??= true;
    else if (raw === undefined) {
      raw = argv[++i];
      if (raw === undefined) {
        problems.push(`--${spec.name} needs a value (${spec.arg ?? 'VALUE'})`);
        continue;
      }
    }
    const v = convert(spec, raw, problems, `--${spec.name}`);
    if (v === undefined) continue;
    if (spec.kind === 'list') values[spec.key] = [...((values[spec.key] as string[] | undefined) ?? []), ...(v as string[])];
    else values[spec.key] = v;
  }
  return { values: values as Partial<Options>, config, problems };
}

/** Reads a YAML options file whose keys are the flag names (`service-cidr: ...`). */
export function readConfigFile(file: string, problems: string[]): Partial<Options> {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, 'utf8'));
  } catch (e) {
    problems.push(`--config ${file}: ${(e as Error).message.split('\n')[0]}`);
    return {};
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    problems.push(`--config ${file}: expected a mapping of flag names to values`);
    return {};
  }
  const out: Partial<Record<keyof Options, unknown>> = {};
  for (const [k, raw] of Object.entries(doc)) {
    const spec = FLAGS.find((f) => f.name === k);
    if (!spec) {
      problems.push(`--config ${file}: unknown key "${k}" (keys are the flag names of kubeloop up --help)`);
      continue;
    }
    const v = convert(spec, raw, problems, `--config ${file}: ${k}`);
    if (v !== undefined) out[spec.key] = v;
  }
  return out as Partial<Options>;
}

function checkLoopbackCidr(flag: string, text: string, problems: string[]): Cidr | undefined {
  try {
    const c = parseCidr(text);
    if (c.base < LOOPBACK.base || c.base + c.size > LOOPBACK.base + LOOPBACK.size) {
      problems.push(`--${flag} ${text}: must be inside 127.0.0.0/8 (kubeloop binds these addresses without root), e.g. ${DEFAULTS[flag === 'pod-cidr' ? 'podCidr' : flag === 'lb-pool' ? 'lbPool' : 'serviceCidr']}`);
      return undefined;
    }
    if (c.size < 4) {
      problems.push(`--${flag} ${text}: too small, use a /30 or larger`);
      return undefined;
    }
    return c;
  } catch (e) {
    problems.push(`--${flag}: ${(e as Error).message}`);
    return undefined;
  }
}

function checkHostPort(flag: string, text: string, problems: string[]): void {
  const m = /^(.+):(\d+)$/.exec(text);
  if (!m || ipToNumber(m[1]) === undefined || Number(m[2]) > 65535) {
    problems.push(`--${flag} "${text}": expected IP:PORT, e.g. 127.0.0.1:1053`);
  } else if (!isLoopback(m[1])) {
    problems.push(`--${flag} ${text}: must be a loopback address (127.0.0.0/8)`);
  }
}

export interface NodeLayout {
  name: string;
  ip: string;
  /** this node's slice of --pod-cidr (spec.podCIDR) */
  podCidr: string;
}

export const MAX_NODES = 64;

/**
 * The simulated nodes of `--nodes N`: the first is --node-name at --node-ip with all of
 * --pod-cidr when N is 1; otherwise `<base>-<k>` names counting on from --node-name's number
 * (node-1, node-2, ...), IPs +1 in the third octet (127.0.0.1, 127.0.1.1, ...), and --pod-cidr
 * cut into the smallest power of two ≥ N equal slices. Throws with the flag to fix.
 */
export function nodeLayout(o: Pick<Options, 'nodes' | 'nodeName' | 'nodeIP' | 'podCidr'>): NodeLayout[] {
  const n = o.nodes;
  if (!Number.isInteger(n) || n < 1 || n > MAX_NODES) throw new Error(`--nodes ${n}: give a whole number from 1 to ${MAX_NODES}`);
  const pod = parseCidr(o.podCidr);
  if (n === 1) return [{ name: o.nodeName, ip: o.nodeIP, podCidr: pod.text }];
  const bits = pod.bits + Math.ceil(Math.log2(n));
  if (bits > 30) throw new Error(`--pod-cidr ${o.podCidr} is too small for ${n} nodes: each needs at least a /30; use a larger range, e.g. 127.244.0.0/16`);
  const size = 2 ** (32 - bits);
  const ip0 = ipToNumber(o.nodeIP);
  if (ip0 === undefined) throw new Error(`--node-ip "${o.nodeIP}": must be a loopback IPv4 address, e.g. 127.0.0.1`);
  const m = /^(.*)-(\d+)$/.exec(o.nodeName);
  const out: NodeLayout[] = [];
  for (let i = 0; i < n; i++) {
    const ipN = ip0 + i * 256;
    const ip = numberToIp(ipN);
    if (!isLoopback(ip) || ipN > 0x7fffffff) throw new Error(`--nodes ${n} with --node-ip ${o.nodeIP}: node ${i + 1} would be ${ip}, outside 127.0.0.0/8; pick a lower --node-ip`);
    const name = i === 0 ? o.nodeName : m ? `${m[1]}-${Number(m[2]) + i}` : `${o.nodeName}-${i + 1}`;
    out.push({ name, ip, podCidr: `${numberToIp(pod.base + i * size)}/${bits}` });
  }
  return out;
}

/** Validates the whole result at once; every problem is reported, naming its flag. */
export function validate(o: Options): string[] {
  const problems: string[] = [];
  if (!DATA_PATH_PREFERENCES.includes(o.dataPath)) {
    problems.push(`--data-path ${o.dataPath}: give auto, uv or net (or set KUBELOOP_DATA_PATH to one of them)`);
  } else if (o.dataPath === 'uv') {
    try {
      chooseDataPath('uv');
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  if (o.store !== 'embedded' && o.store !== '') {
    try {
      parseRedisUrl(o.store, o.storePassword || undefined);
    } catch (e) {
      problems.push(`--store: ${(e as Error).message}`);
    }
  }
  const svc = checkLoopbackCidr('service-cidr', o.serviceCidr, problems);
  const pod = checkLoopbackCidr('pod-cidr', o.podCidr, problems);
  let layout: NodeLayout[] = [];
  // a bad --pod-cidr or --node-ip is reported once, by its own check
  if (pod && ipToNumber(o.nodeIP) !== undefined) {
    try {
      layout = nodeLayout(o);
    } catch (e) {
      problems.push((e as Error).message);
    }
  } else if (!Number.isInteger(o.nodes) || o.nodes < 1 || o.nodes > MAX_NODES) {
    problems.push(`--nodes ${o.nodes}: give a whole number from 1 to ${MAX_NODES}`);
  }
  if (svc && pod && cidrsOverlap(svc, pod)) {
    problems.push(`--service-cidr ${o.serviceCidr} and --pod-cidr ${o.podCidr} overlap: choose disjoint ranges`);
  }
  const lb = o.lbPool && !o.disableLoadBalancer ? checkLoopbackCidr('lb-pool', o.lbPool, problems) : undefined;
  for (const [flag, c] of [['service-cidr', svc], ['pod-cidr', pod]] as const) {
    if (lb && c && cidrsOverlap(lb, c)) problems.push(`--lb-pool ${o.lbPool} and --${flag} ${c.text} overlap: choose disjoint ranges`);
  }
  for (const ip of new Set([o.nodeIP, ...layout.map((l) => l.ip), ...o.nodePortAddresses])) {
    if (lb && cidrContains(lb, ip)) problems.push(`--lb-pool ${o.lbPool} contains the node address ${ip}: choose a range without it`);
  }
  if (layout.length > 1) {
    for (const l of layout) {
      for (const [flag, c] of [['service-cidr', svc], ['pod-cidr', pod]] as const) {
        if (c && cidrContains(c, l.ip)) problems.push(`--nodes ${o.nodes}: node IP ${l.ip} (${l.name}) falls inside --${flag} ${c.text}; pick another --node-ip`);
      }
    }
  }
  try {
    parsePortRange(o.nodePortRange);
  } catch (e) {
    problems.push(`--service-node-port-range: ${(e as Error).message}`);
  }
  if (o.nodePortAddresses.length === 0) problems.push('--nodeport-addresses: give at least one address, e.g. 127.0.0.1');
  for (const a of o.nodePortAddresses) {
    if (ipToNumber(a) === undefined) problems.push(`--nodeport-addresses: "${a}" is not an IPv4 address`);
  }
  if (ipToNumber(o.nodeIP) === undefined) {
    problems.push(`--node-ip "${o.nodeIP}": must be an IPv4 address: a loopback one (e.g. 127.0.0.1) or one of this host's (${hostAddresses().join(', ') || 'none found'})`);
  } else if (!isLoopback(o.nodeIP) && !hostAddresses().includes(o.nodeIP)) {
    problems.push(`--node-ip ${o.nodeIP}: not an address of this host; give a loopback address or one of ${hostAddresses().join(', ') || '(no IPv4 interface found)'}`);
  } else if (!isLoopback(o.nodeIP) && o.nodes > 1) {
    problems.push(`--node-ip ${o.nodeIP} with --nodes ${o.nodes}: simulated nodes need loopback addresses; run one daemon per machine instead`);
  }
  const shared = o.store !== 'embedded' && o.store !== '';
  if (o.join && !shared) problems.push('--join: joining needs the cluster\'s shared store: add --store redis://HOST:PORT (the one the first daemon uses)');
  if (o.join && !/^[\x21-\x7e]{8,}$/.test(o.join)) problems.push('--join: the token is the word the first daemon printed (at least 8 printable characters)');
  if (!Number.isInteger(o.nodeCidrMaskSize) || o.nodeCidrMaskSize > 30 || (pod && o.nodeCidrMaskSize < pod.bits)) {
    problems.push(`--node-cidr-mask-size ${o.nodeCidrMaskSize}: give a prefix length between --pod-cidr's (/${pod?.bits ?? '?'}) and 30, e.g. 24`);
  }
  if (o.hpaSyncPeriodMs < 100) problems.push('--horizontal-pod-autoscaler-sync-period: at least 100ms, e.g. 15s');
  if (o.metricResolutionMs < 100) problems.push('--metric-resolution: at least 100ms, e.g. 15s');
  if (o.nodeLeaseIntervalMs < 100) problems.push('--node-lease-interval: at least 100ms, e.g. 10s');
  if (o.nodeMonitorGracePeriodMs < 2 * o.nodeLeaseIntervalMs) {
    problems.push(`--node-monitor-grace-period ${o.nodeMonitorGracePeriodMs}ms: must be at least twice --node-lease-interval (${o.nodeLeaseIntervalMs}ms), or a node turns NotReady between two renewals`);
  }
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(o.nodeName)) {
    problems.push(`--node-name "${o.nodeName}": must be a lowercase RFC 1123 subdomain, e.g. node-1`);
  }
  if (!LOG_LEVELS.includes(o.logLevel)) problems.push(`--log-level "${o.logLevel}": use one of ${LOG_LEVELS.join(', ')}`);
  if (o.udpTimeoutMs <= 0) problems.push('--udp-timeout: must be greater than 0');
  if (!Number.isInteger(o.proxyProcesses) || o.proxyProcesses < 1 || o.proxyProcesses > 64) {
    problems.push(`--proxy-processes ${o.proxyProcesses}: give a whole number from 1 to 64 (e.g. the number of cores)`);
  }
  checkHostPort('dns-addr', o.dnsAddr, problems);
  if (o.dnsUpstream) checkHostPort('dns-upstream', o.dnsUpstream, problems);
  if (o.metricsAddr) checkHostPort('metrics-addr', o.metricsAddr, problems);
  for (const [flag, n] of [['dns-tcp-max-connections', o.dnsTcpMaxConnections], ['api-max-connections', o.apiMaxConnections], ['metrics-max-connections', o.metricsMaxConnections]] as const) {
    if (!Number.isInteger(n) || n < 1) problems.push(`--${flag} ${n}: give a whole number ≥ 1 (connections over it are closed at once)`);
  }
  if (o.dnsTcpIdleTimeoutMs <= 0) problems.push('--dns-tcp-idle-timeout: must be greater than 0, e.g. 10s');
  if (o.apiHandshakeTimeoutMs <= 0) problems.push('--api-handshake-timeout: must be greater than 0, e.g. 10s');
  const api = /^(.+):(\d+)$/.exec(o.apiAddr);
  if (!api || ipToNumber(api[1]) === undefined || Number(api[2]) > 65535) {
    problems.push(`--api-addr "${o.apiAddr}": expected IP:PORT, e.g. 127.0.0.1:6443`);
  } else if (o.insecurePlainHttpLoopback && !isLoopback(api[1])) {
    problems.push(`--insecure-plain-http-loopback with --api-addr ${o.apiAddr}: plain HTTP is only for loopback; drop the flag (HTTPS with the generated kubeconfig works on any address)`);
  }
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(o.clusterDomain)) {
    problems.push(`--cluster-domain "${o.clusterDomain}": must be a DNS name, e.g. cluster.local`);
  }
  if (!Number.isInteger(o.maxPods) || o.maxPods < 1) problems.push(`--max-pods ${o.maxPods}: give a whole number ≥ 1 (the kubelet's default is 110)`);
  if (!Number.isInteger(o.tunnelPort) || o.tunnelPort > 65535) problems.push(`--tunnel-port ${o.tunnelPort}: give a port from 0 to 65535 (0: any free port)`);
  if (!Number.isInteger(o.podStartRate) || o.podStartRate < 1) problems.push(`--pod-start-rate ${o.podStartRate}: give a whole number of starts per second ≥ 1, e.g. 20`);
  if (o.backoffInitialMs <= 0 || o.backoffMaxMs < o.backoffInitialMs) {
    problems.push('--crashloop-backoff must be > 0 and not above --crashloop-backoff-max');
  }
  return problems;
}

/** this host's IPv4 interface addresses (what a non-loopback --node-ip must be one of) */
export function hostAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' && !isLoopback(a.address)) out.push(a.address);
  return out;
}

/** The API token from --api-token-file (its first line) or $KUBELOOP_API_TOKEN; '' for none. */
function readApiToken(file: string, env: NodeJS.ProcessEnv, problems: string[]): string {
  let token = env.KUBELOOP_API_TOKEN ?? '';
  let where = 'KUBELOOP_API_TOKEN';
  if (file) {
    where = `--api-token-file ${file}`;
    try {
      token = readFileSync(file, 'utf8').split('\n')[0];
    } catch (e) {
      problems.push(`${where}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): give a file holding the token on its first line`);
      return '';
    }
  }
  token = token.trim();
  if ((file || env.KUBELOOP_API_TOKEN) && !/^[\x21-\x7e]{16,}$/.test(token)) {
    problems.push(`${where}: the token must be at least 16 printable characters without spaces, e.g. the output of: openssl rand -hex 32`);
    return '';
  }
  return token;
}

/**
 * defaults → config file → flags → validate → freeze. Throws OptionsError listing every
 * problem. `cwd` resolves relative paths.
 */
export function resolveOptions(argv: readonly string[], cwd: string, env: NodeJS.ProcessEnv = {}): Readonly<Options> {
  const { values, config, problems } = parseFlags(argv);
  const fromFile = config ? readConfigFile(resolve(cwd, config), problems) : {};
  const envState = env.KUBELOOP_STATE_DIR ? { stateDir: env.KUBELOOP_STATE_DIR } : {};
  const envDataPath = env.KUBELOOP_DATA_PATH ? { dataPath: env.KUBELOOP_DATA_PATH as DataPathPreference } : {};
  const merged: Options = { ...DEFAULTS, ...envState, ...envDataPath, ...fromFile, ...values };
  merged.storePassword = env.KUBELOOP_REDIS_PASSWORD ?? '';
  if (merged.join && env.KUBELOOP_JOIN_TOKEN && merged.join !== env.KUBELOOP_JOIN_TOKEN) {
    // which one the user meant is a guess: a wrong one would be refused by the cluster with a less clear message
    problems.push('--join and $KUBELOOP_JOIN_TOKEN give different tokens: give one (unset KUBELOOP_JOIN_TOKEN, or leave out --join)');
  }
  merged.join ||= env.KUBELOOP_JOIN_TOKEN ?? '';
  merged.apiToken = readApiToken(merged.apiTokenFile ? resolve(cwd, merged.apiTokenFile) : '', env, problems);
  if (merged.nodes === 1 && !isLoopback(merged.nodeIP) && ipToNumber(merged.nodeIP) !== undefined && !fromFile.nodePortAddresses && !values.nodePortAddresses) {
    // a node other machines reach: NodePorts on its address, and on loopback for this host's own clients
    merged.nodePortAddresses = [merged.nodeIP, '127.0.0.1'];
  } else if (merged.nodes > 1 && !fromFile.nodePortAddresses && !values.nodePortAddresses) {
    // several nodes: NodePorts open on each node's IP, as kube-proxy on every node does
    try {
      merged.nodePortAddresses = nodeLayout(merged).map((l) => l.ip);
    } catch {
      // reported by validate
    }
  }
  problems.push(...validate(merged));
  if (problems.length) throw new OptionsError(problems);
  return Object.freeze({
    ...merged,
    stateDir: resolve(cwd, merged.stateDir),
    files: Object.freeze(merged.files.map((f) => resolve(cwd, f))),
    images: Object.freeze(merged.images.map((f) => resolve(cwd, f))),
    nodePortAddresses: Object.freeze([...merged.nodePortAddresses]),
  });
}

const fmtDefault = (v: unknown): string => {
  if (Array.isArray(v)) return v.length ? v.join(',') : 'none';
  if (typeof v === 'number') return String(v);
  return v === '' ? 'none' : String(v);
};

export function helpText(): string {
  const lines = [
    'Usage: kubeloop up [flags]',
    '',
    'Starts the daemon: store, controllers, node agent (pods as processes), service proxy and DNS,',
    'applies the manifests given with -f, prints every Service address, and runs until Ctrl-C.',
    '',
    'Flags (defaults in brackets; a --config FILE of `flag-name: value` lines sits between defaults and flags):',
  ];
  const durations = new Set(['udpTimeoutMs', 'backoffInitialMs', 'backoffMaxMs', 'readyTimeoutMs', 'stopGraceMs', 'hpaSyncPeriodMs', 'hpaDownscaleStabilizationMs', 'metricResolutionMs', 'dnsTcpIdleTimeoutMs', 'apiHandshakeTimeoutMs', 'nodeLeaseIntervalMs', 'nodeMonitorGracePeriodMs', 'podEvictionTimeoutMs', 'drainTimeoutMs']);
  for (const f of FLAGS) {
    const left = `  ${f.short ? `-${f.short}, ` : '    '}--${f.name}${f.arg ? ` ${f.arg}` : ''}`;
    const d = DEFAULTS[f.key];
    const def = durations.has(f.key) ? `${d}ms` : fmtDefault(d);
    lines.push(`${left.padEnd(44)} ${f.help} [${def}]`);
  }
  lines.push(`${'      --config FILE'.padEnd(44)} read options from a YAML file`);
  lines.push(`${'  -h, --help'.padEnd(44)} this text`);
  lines.push('', 'Environment: KUBELOOP_STATE_DIR sets the default --state-dir; KUBELOOP_DATA_PATH the default --data-path; KUBELOOP_API_TOKEN is a token the API accepts (as --api-token-file); KUBELOOP_JOIN_TOKEN is --join\'s token.');
  lines.push(
    '',
    'Descriptors (one RLIMIT_NOFILE for the whole daemon; the soft limit is raised to the hard one at start):',
    '  the --*-max-connections caps together take at most a third of it (scaled down with a warning when it is small);',
    "  an eighth of it (at least 64) stays free for proxied connections and the daemon's own files; Service listeners",
    '  get the rest, so every cap can fill while every listener stays open. A listener over that budget is not opened:',
    '  its Service gets a FailedToBind event naming the limit, and it is retried when descriptors are freed.',
  );
  lines.push('', "API request limits (fixed, the kube-apiserver's): bodies at most 3 MiB (413); bodies nesting deeper than 1000 levels, or YAML whose aliases expand past 3 MiB, are refused (400).");
  return lines.join('\n');
}
