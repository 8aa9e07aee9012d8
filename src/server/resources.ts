/**
 * The resources the API serves, derived from the store's kinds: URL names, verbs,
 * subresources, and the groups discovery advertises. The verbs declared here are both what
 * discovery advertises and the only ones the handlers accept (handlers.ts `requestVerb`):
 * any other is upstream's 405.
 */
import { type KindDecl, type KindInfo, type Verb, infoOf } from '../api/kind.js';
import { KIND_DECLS } from '../api/kinds/index.js';

export type { Verb } from '../api/kind.js';

export interface Subresource {
  name: 'status' | 'scale' | 'log' | 'exec' | 'attach' | 'portforward' | 'ephemeralcontainers' | 'proxy' | 'eviction';
  /** the kind a request on it returns */
  kind: string;
  group: string;
  version: string;
  verbs: readonly Verb[];
}

export interface Resource {
  info: KindInfo;
  subresources: readonly Subresource[];
  verbs: readonly Verb[];
  /** answered by the server, never stored (the review kinds: reviews.ts; the Metrics API: metrics.ts) */
  virtual?: boolean;
  /** another version of a stored kind, served through a conversion (autoscaling/v1 HorizontalPodAutoscaler: hpa-v1.ts) */
  convertedFrom?: string;
}

/** every verb, in discovery's (sorted) order */
export const ALL_VERBS: readonly Verb[] = Object.freeze(['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch']);

const SUBRESOURCE_VERBS: readonly Verb[] = Object.freeze(['get', 'patch', 'update']);
const PROXY_VERBS: readonly Verb[] = Object.freeze(['create', 'delete', 'get', 'patch', 'update']);

/** Kinds with a `/scale` subresource (their declarations' `scale`). */
export const SCALABLE: ReadonlySet<string> = new Set(KIND_DECLS.filter((d) => d.scale).map((d) => d.info.kind));

/** A kind's resource from its declaration: verbs (all eight unless declared), status and scale subresources, the pod's streams. */
function resourceFor(decl: KindDecl): Resource {
  const info = decl.info;
  const subs: Subresource[] = [];
  if (info.hasStatus) {
    subs.push({ name: 'status', kind: info.kind, group: info.group, version: info.version, verbs: SUBRESOURCE_VERBS });
  }
  if (SCALABLE.has(info.kind)) {
    subs.push({ name: 'scale', kind: 'Scale', group: 'autoscaling', version: 'v1', verbs: SUBRESOURCE_VERBS });
  }
  if (info.kind === 'Pod') {
    subs.push({ name: 'log', kind: 'Pod', group: '', version: 'v1', verbs: ['get'] });
    // streamed by the pod's node agent endpoint (server/agent-forward.ts), as upstream declares them
    subs.push({ name: 'exec', kind: 'PodExecOptions', group: '', version: 'v1', verbs: ['create', 'get'] });
    subs.push({ name: 'attach', kind: 'PodAttachOptions', group: '', version: 'v1', verbs: ['create', 'get'] });
    subs.push({ name: 'portforward', kind: 'PodPortForwardOptions', group: '', version: 'v1', verbs: ['create', 'get'] });
    subs.push({ name: 'ephemeralcontainers', kind: 'Pod', group: '', version: 'v1', verbs: SUBRESOURCE_VERBS });
    // POST an Eviction (policy/v1): a delete a PodDisruptionBudget may refuse (store/eviction.ts); kubectl drain finds it by this entry
    subs.push({ name: 'eviction', kind: 'Eviction', group: 'policy', version: 'v1', verbs: ['create'] });
  }
  // streamed to a pod or a service endpoint by the API server itself (proxy-subresource.ts)
  if (info.kind === 'Pod' || info.kind === 'Service') {
    subs.push({ name: 'proxy', kind: info.kind === 'Pod' ? 'PodProxyOptions' : 'ServiceProxyOptions', group: '', version: 'v1', verbs: PROXY_VERBS });
  }
  return { info, subresources: subs, verbs: decl.verbs ?? ALL_VERBS, ...(decl.virtual ? { virtual: true } : {}) };
}

/** autoscaling/v1 HorizontalPodAutoscaler: the stored autoscaling/v2 object through upstream's conversion */
const HPA_V1: Resource = (() => {
  const v2 = KIND_DECLS.find((d) => d.info.kind === 'HorizontalPodAutoscaler')!;
  const info = infoOf('HorizontalPodAutoscaler', 'autoscaling/v1', v2.info.plural, { shortNames: v2.info.shortNames, categories: v2.info.categories, hasStatus: true });
  return { ...resourceFor({ ...v2, info }), convertedFrom: v2.info.apiVersion };
})();

export const RESOURCES: readonly Resource[] = Object.freeze([...KIND_DECLS.map(resourceFor), HPA_V1]);

/** Group versions in discovery order; autoscaling/v1 carries only the Scale kind of subresources. */
export const GROUP_VERSIONS: readonly { group: string; version: string }[] = Object.freeze(
  (() => {
    const out: { group: string; version: string }[] = [];
    const add = (group: string, version: string) => {
      if (!out.some((g) => g.group === group && g.version === version)) out.push({ group, version });
    };
    for (const r of RESOURCES) add(r.info.group, r.info.version);
    return out;
  })(),
);

const BY_PLURAL = new Map<string, Resource>(RESOURCES.map((r) => [`${r.info.group}/${r.info.version}/${r.info.plural}`, r]));

export function findResource(group: string, version: string, plural: string): Resource | undefined {
  return BY_PLURAL.get(`${group}/${version}/${plural}`);
}

export function resourcesOf(group: string, version: string): Resource[] {
  return RESOURCES.filter((r) => r.info.group === group && r.info.version === version);
}

export const groupVersionString = (group: string, version: string): string => (group ? `${group}/${version}` : version);
