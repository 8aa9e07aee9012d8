import os from 'node:os';
import { podField } from './volume-sources.js';
import type { ConfigMap, Container, Pod, Secret, Service } from '../../api/types.js';

/**
 * A container's environment could not be built (missing ConfigMap/Secret or key, bad field
 * path): the container waits with reason `CreateContainerConfigError` and is retried.
 */
export class EnvError extends Error {
  override readonly name = 'EnvError';
}

/** Reads ConfigMaps and Secrets of the pod's namespace (undefined when missing). */
export interface EnvSources {
  configMap(namespace: string, name: string): Promise<ConfigMap | undefined>;
  secret(namespace: string, name: string): Promise<Secret | undefined>;
}

export interface EnvInput {
  pod: Pod;
  container: Container;
  podIP: string;
  hostIP: string;
  nodeName: string;
  /** Services that exist when the container starts (any namespace; filtered here) */
  services: readonly Service[];
  /** copied from the daemon (PATH, HOME) */
  base: Readonly<Record<string, string>>;
  /** given to every pod, e.g. KUBELOOP_DNS */
  extra: Readonly<Record<string, string>>;
  sources: EnvSources;
}

/**
 * The environment of a container, in the kubelet's order of precedence (later wins):
 * daemon basics and kubeloop's pod variables → Service variables → `envFrom` → `env`
 * (each `env` value may use `$(VAR)` of what came before).
 */
export async function containerEnv(i: EnvInput): Promise<Record<string, string>> {
  const { pod, container } = i;
  const ns = pod.metadata?.namespace ?? 'default';
  const env: Record<string, string> = { ...i.base };
  const ports = (container.ports ?? []).filter((p) => p.containerPort > 0);
  Object.assign(env, {
    HOSTNAME: pod.spec?.hostname ?? pod.metadata?.name ?? '',
    POD_NAME: pod.metadata?.name ?? '',
    POD_NAMESPACE: ns,
    POD_IP: i.podIP,
    NODE_NAME: i.nodeName,
    KUBELOOP_CONTAINER_PORTS: ports
      .filter((p) => (p.protocol ?? 'TCP') === 'TCP')
      .map((p) => p.containerPort)
      .join(','),
    KUBELOOP_CONTAINER_UDP_PORTS: ports
      .filter((p) => p.protocol === 'UDP')
      .map((p) => p.containerPort)
      .join(','),
  });
  Object.assign(env, i.extra);
  Object.assign(env, serviceEnv(i.services, ns, pod.spec?.enableServiceLinks ?? true));

  for (const from of container.envFrom ?? []) {
    const prefix = from.prefix ?? '';
    if (from.configMapRef) {
      const cm = await i.sources.configMap(ns, from.configMapRef.name ?? '');
      if (!cm) {
        if (from.configMapRef.optional) continue;
        throw new EnvError(`configmap "${from.configMapRef.name}" not found`);
      }
      for (const [k, v] of Object.entries(cm.data ?? {})) env[prefix + k] = v;
    } else if (from.secretRef) {
      const s = await i.sources.secret(ns, from.secretRef.name ?? '');
      if (!s) {
        if (from.secretRef.optional) continue;
        throw new EnvError(`secret "${from.secretRef.name}" not found`);
      }
      for (const [k, v] of Object.entries(secretData(s))) env[prefix + k] = v;
    }
  }

  for (const e of container.env ?? []) {
    if (e.valueFrom === undefined) {
      env[e.name] = expand(e.value ?? '', env);
      continue;
    }
    const v = await valueFrom(i, e.name, e.valueFrom, ns);
    if (v !== undefined) env[e.name] = v;
  }
  return env;
}

async function valueFrom(
  i: EnvInput,
  name: string,
  src: NonNullable<NonNullable<Container['env']>[number]['valueFrom']>,
  ns: string,
): Promise<string | undefined> {
  if (src.fieldRef) return fieldValue(i, src.fieldRef.fieldPath);
  if (src.resourceFieldRef) {
    return resourceValue(i.container, src.resourceFieldRef.resource, src.resourceFieldRef.divisor);
  }
  if (src.configMapKeyRef) {
    const ref = src.configMapKeyRef;
    const cm = await i.sources.configMap(ns, ref.name ?? '');
    const v = cm?.data?.[ref.key];
    if (v !== undefined) return v;
    if (ref.optional) return undefined;
    throw new EnvError(cm ? `couldn't find key ${ref.key} in ConfigMap ${ns}/${ref.name}` : `configmap "${ref.name}" not found`);
  }
  if (src.secretKeyRef) {
    const ref = src.secretKeyRef;
    const s = await i.sources.secret(ns, ref.name ?? '');
    const v = s ? secretData(s)[ref.key] : undefined;
    if (v !== undefined) return v;
    if (ref.optional) return undefined;
    throw new EnvError(s ? `couldn't find key ${ref.key} in Secret ${ns}/${ref.name}` : `secret "${ref.name}" not found`);
  }
  throw new EnvError(`env ${name}: valueFrom names no source (fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef)`);
}

function fieldValue(i: EnvInput, path: string): string {
  const meta = podField(i.pod, path);
  if (meta !== undefined) return meta;
  switch (path) {
    case 'spec.nodeName':
      return i.nodeName;
    case 'spec.serviceAccountName':
      return i.pod.spec?.serviceAccountName ?? 'default';
    case 'status.hostIP':
    case 'status.hostIPs':
      return i.hostIP;
    case 'status.podIP':
    case 'status.podIPs':
      return i.podIP;
    default:
      throw new EnvError(`unsupported fieldRef.fieldPath "${path}"`);
  }
}


function secretData(s: Secret): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(s.data ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
  for (const [k, v] of Object.entries(s.stringData ?? {})) out[k] = v;
  return out;
}

/**
 * `limits.cpu` etc. of the container; a resource without a limit reports the node's capacity,
 * as the kubelet does. Rounded up in units of `divisor` (default 1).
 */
function resourceValue(c: Container, resource: string, divisor: string | number | undefined): string {
  const [kind, name] = resource.split('.', 2) as [string, string];
  if ((kind !== 'limits' && kind !== 'requests') || !['cpu', 'memory', 'ephemeral-storage'].includes(name)) {
    throw new EnvError(`unsupported resourceFieldRef.resource "${resource}"`);
  }
  const given = c.resources?.[kind]?.[name] ?? (kind === 'requests' ? c.resources?.limits?.[name] : undefined);
  let value: number;
  if (given !== undefined) value = parseQuantity(String(given));
  else if (kind === 'requests') value = 0;
  else if (name === 'cpu') value = os.cpus().length;
  else if (name === 'memory') value = os.totalmem();
  else value = Number.MAX_SAFE_INTEGER;
  const d = divisor === undefined ? 1 : parseQuantity(String(divisor));
  if (!(d > 0)) throw new EnvError(`resourceFieldRef.divisor "${divisor}" is not a positive quantity`);
  return String(Math.ceil(value / d - 1e-9));
}

const SUFFIX: Record<string, number> = {
  n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/** A Kubernetes quantity (`500m`, `128Mi`, `1e3`) as a number. */
export function parseQuantity(q: string): number {
  const m = /^([+-]?\d+(?:\.\d*)?|[+-]?\.\d+)(?:([eE][+-]?\d+)|(n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei))?$/.exec(q.trim());
  if (!m) throw new EnvError(`"${q}" is not a quantity (e.g. 500m, 128Mi)`);
  const n = Number(m[1]);
  if (m[2]) return n * 10 ** Number(m[2].slice(1));
  return n * SUFFIX[m[3] ?? ''];
}

/**
 * `$(VAR)` expansion as the kubelet does it for env values, command and args: unknown
 * variables stay as written, `$$` is a literal `$`.
 */
export function expand(input: string, env: Readonly<Record<string, string>>): string {
  let out = '';
  for (let i = 0; i < input.length; i++) {
    const c = input[i];
    if (c !== '$' || i + 1 >= input.length) {
      out += c;
      continue;
    }
    const next = input[i + 1];
    if (next === '$') {
      out += '$';
      i++;
    } else if (next === '(') {
      const close = input.indexOf(')', i + 2);
      if (close < 0) {
        out += '$(';
        i++;
        continue;
      }
      const name = input.slice(i + 2, close);
      out += Object.hasOwn(env, name) ? env[name] : `$(${name})`;
      i = close;
    } else {
      out += c + next;
      i++;
    }
  }
  return out;
}

const envName = (s: string): string => s.toUpperCase().replace(/-/g, '_');

const hasClusterIP = (s: Service): boolean => {
  const ip = s.spec?.clusterIP;
  return !!ip && ip !== 'None';
};

/**
 * The Docker-link style variables the kubelet injects for every Service of the pod's namespace
 * (when `enableServiceLinks`) and for `default/kubernetes` (always); the namespace's own Service
 * of a name wins over the `default` one.
 */
export function serviceEnv(services: readonly Service[], namespace: string, enableServiceLinks = true): Record<string, string> {
  const byName = new Map<string, Service>();
  for (const s of services) {
    if (!hasClusterIP(s)) continue;
    const name = s.metadata?.name ?? '';
    const sns = s.metadata?.namespace ?? 'default';
    if (sns === namespace && enableServiceLinks) byName.set(name, s);
    else if (sns === 'default' && name === 'kubernetes' && !byName.has(name)) byName.set(name, s);
  }
  const out: Record<string, string> = {};
  for (const name of [...byName.keys()].sort()) {
    const s = byName.get(name)!;
    const ip = s.spec!.clusterIP!;
    const ports = s.spec?.ports ?? [];
    const N = envName(name);
    out[`${N}_SERVICE_HOST`] = ip;
    if (ports.length) out[`${N}_SERVICE_PORT`] = String(ports[0].port);
    for (const p of ports) if (p.name) out[`${N}_SERVICE_PORT_${envName(p.name)}`] = String(p.port);
    const host = ip.includes(':') ? `[${ip}]` : ip;
    ports.forEach((p, idx) => {
      const proto = (p.protocol ?? 'TCP').toUpperCase();
      const url = `${proto.toLowerCase()}://${host}:${p.port}`;
      if (idx === 0) out[`${N}_PORT`] = url;
      const prefix = `${N}_PORT_${p.port}_${proto}`;
      out[prefix] = url;
      out[`${prefix}_PROTO`] = proto.toLowerCase();
      out[`${prefix}_PORT`] = String(p.port);
      out[`${prefix}_ADDR`] = ip;
    });
  }
  return out;
}
