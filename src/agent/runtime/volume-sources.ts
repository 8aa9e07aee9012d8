import type { ConfigMap, Pod, Secret } from '../../api/types.js';
import type { KeyToPath, Volume, VolumeProjection } from 'kubernetes-types/core/v1.js';
import { type VolumeFile, pathProblem } from './atomic-writer.js';

/** ConfigMaps and Secrets as the node agent sees them now (informer caches). */
export interface ObjectLookup {
  configMap(namespace: string, name: string): ConfigMap | undefined;
  secret(namespace: string, name: string): Secret | undefined;
}

/**
 * What a configMap, secret, downwardAPI or projected volume holds: its files, or why it cannot
 * be set up yet (a missing non-optional source: the pod waits, as the kubelet's `FailedMount`).
 */
export type Projection = { ok: true; files: Map<string, VolumeFile> } | { ok: false; message: string };

/**
 * upstream's defaults: 0644 for every kind (the API writes it into defaultMode); kubeloop keeps
 * secret volumes owner-only: a secret volume's defaultMode of 0644 (the defaulted value, which
 * an explicit 0644 cannot be told from) gives 0600 files; any other defaultMode is used as given
 */
const CONFIGMAP_MODE = 0o644;
const SECRET_MODE = 0o600;
const DOWNWARD_MODE = 0o644;

/** Whether a volume is written by the atomic writer (its content comes from API objects). */
export function isProjected(v: Volume): boolean {
  return !!(v.configMap || v.secret || v.downwardAPI || v.projected);
}

/** The ConfigMap and Secret names a volume reads, as `ConfigMap/<name>` / `Secret/<name>`. */
export function sourcesOf(v: Volume): string[] {
  const out: string[] = [];
  if (v.configMap?.name) out.push(`ConfigMap/${v.configMap.name}`);
  if (v.secret?.secretName) out.push(`Secret/${v.secret.secretName}`);
  for (const s of v.projected?.sources ?? []) {
    if (s.configMap?.name) out.push(`ConfigMap/${s.configMap.name}`);
    if (s.secret?.name) out.push(`Secret/${s.secret.name}`);
  }
  return out;
}

export function project(pod: Pod, v: Volume, objects: ObjectLookup): Projection {
  const ns = pod.metadata?.namespace ?? 'default';
  const files = new Map<string, VolumeFile>();
  const add = (rel: string, data: Buffer, mode: number, field: string): string | undefined => {
    const problem = pathProblem(rel);
    if (problem) return `${field}: path "${rel}" ${problem}`;
    files.set(rel, { data, mode });
    return undefined;
  };
  let problem: string | undefined;
  if (v.configMap) {
    problem = fromKeys({
      kind: 'configmap', name: v.configMap.name ?? '', data: configMapData(objects.configMap(ns, v.configMap.name ?? '')),
      items: v.configMap.items, optional: v.configMap.optional, mode: v.configMap.defaultMode ?? CONFIGMAP_MODE, add, field: `volume "${v.name}"`,
    });
  } else if (v.secret) {
    problem = fromKeys({
      kind: 'secret', name: v.secret.secretName ?? '', data: secretData(objects.secret(ns, v.secret.secretName ?? '')),
      items: v.secret.items, optional: v.secret.optional, mode: v.secret.defaultMode === undefined || v.secret.defaultMode === 0o644 ? SECRET_MODE : v.secret.defaultMode, add, field: `volume "${v.name}"`,
    });
  } else if (v.downwardAPI) {
    const mode = v.downwardAPI.defaultMode ?? DOWNWARD_MODE;
    for (const item of v.downwardAPI.items ?? []) {
      problem = downward(pod, item, mode, add, `volume "${v.name}"`);
      if (problem) break;
    }
  } else if (v.projected) {
    const mode = v.projected.defaultMode ?? DOWNWARD_MODE;
    for (const s of v.projected.sources ?? []) {
      problem = projectedSource(pod, ns, s, mode, objects, add, `volume "${v.name}"`);
      if (problem) break;
    }
  }
  return problem ? { ok: false, message: problem } : { ok: true, files };
}

type Add = (rel: string, data: Buffer, mode: number, field: string) => string | undefined;

function projectedSource(pod: Pod, ns: string, s: VolumeProjection, mode: number, objects: ObjectLookup, add: Add, field: string): string | undefined {
  if (s.configMap) {
    return fromKeys({ kind: 'configmap', name: s.configMap.name ?? '', data: configMapData(objects.configMap(ns, s.configMap.name ?? '')), items: s.configMap.items, optional: s.configMap.optional, mode, add, field });
  }
  if (s.secret) {
    return fromKeys({ kind: 'secret', name: s.secret.name ?? '', data: secretData(objects.secret(ns, s.secret.name ?? '')), items: s.secret.items, optional: s.secret.optional, mode, add, field });
  }
  if (s.downwardAPI) {
    for (const item of s.downwardAPI.items ?? []) {
      const p = downward(pod, item, mode, add, field);
      if (p) return p;
    }
  }
  // serviceAccountToken and clusterTrustBundle sources are not projected (no token issuer here)
  return undefined;
}

function fromKeys(o: {
  kind: 'configmap' | 'secret';
  name: string;
  data: Map<string, Buffer> | undefined;
  items: readonly KeyToPath[] | undefined;
  optional: boolean | undefined;
  mode: number;
  add: Add;
  field: string;
}): string | undefined {
  if (!o.data) return o.optional ? undefined : `${o.kind} "${o.name}" not found`;
  if (!o.items?.length) {
    for (const [k, v] of o.data) {
      const p = o.add(k, v, o.mode, o.field);
      if (p) return p;
    }
    return undefined;
  }
  for (const it of o.items) {
    const v = o.data.get(it.key);
    if (v === undefined) {
      if (o.optional) continue;
      return `${o.kind === 'configmap' ? 'configmap' : 'secret'} "${o.name}": items[].key "${it.key}" not found`;
    }
    const p = o.add(it.path, v, it.mode ?? o.mode, o.field);
    if (p) return p;
  }
  return undefined;
}

function downward(pod: Pod, item: NonNullable<NonNullable<Volume['downwardAPI']>['items']>[number], mode: number, add: Add, field: string): string | undefined {
  const fp = item.fieldRef?.fieldPath;
  if (!fp) return `${field}: downwardAPI item "${item.path}" needs fieldRef (resourceFieldRef is not supported by kubeloop)`;
  const value = podField(pod, fp);
  if (value === undefined) return `${field}: downwardAPI item "${item.path}": unsupported fieldRef.fieldPath "${fp}" (metadata.name, namespace, uid, labels, annotations)`;
  return add(item.path, Buffer.from(value), item.mode ?? mode, field);
}

/** metadata fields a downwardAPI volume may project (status fields are for env only, as upstream); env.ts adds those */
export function podField(pod: Pod, fp: string): string | undefined {
  const m = pod.metadata ?? {};
  const sub = /^metadata\.(labels|annotations)\['([^']*)'\]$/.exec(fp);
  if (sub) return (sub[1] === 'labels' ? m.labels : m.annotations)?.[sub[2]!] ?? '';
  switch (fp) {
    case 'metadata.name':
      return m.name ?? '';
    case 'metadata.namespace':
      return m.namespace ?? 'default';
    case 'metadata.uid':
      return m.uid ?? '';
    case 'metadata.labels':
      return formatMap(m.labels);
    case 'metadata.annotations':
      return formatMap(m.annotations);
    default:
      return undefined;
  }
}

/** `key="value"` lines, sorted, as the kubelet writes labels and annotations */
const formatMap = (m: Record<string, string> | undefined): string =>
  Object.keys(m ?? {})
    .sort()
    .map((k) => `${k}=${JSON.stringify(m![k])}`)
    .join('\n');

function configMapData(cm: ConfigMap | undefined): Map<string, Buffer> | undefined {
  if (!cm) return undefined;
  const out = new Map<string, Buffer>();
  for (const [k, v] of Object.entries(cm.data ?? {})) out.set(k, Buffer.from(v));
  for (const [k, v] of Object.entries(cm.binaryData ?? {})) out.set(k, Buffer.from(v, 'base64'));
  return out;
}

function secretData(s: Secret | undefined): Map<string, Buffer> | undefined {
  if (!s) return undefined;
  const out = new Map<string, Buffer>();
  for (const [k, v] of Object.entries(s.data ?? {})) out.set(k, Buffer.from(v, 'base64'));
  for (const [k, v] of Object.entries(s.stringData ?? {})) out.set(k, Buffer.from(v));
  return out;
}
