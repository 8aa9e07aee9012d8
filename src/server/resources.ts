/**
 * The resources the API serves, derived from the store's kinds: URL names, verbs,
 * subresources, and the groups discovery advertises.
 */
import { KINDS, type KindInfo } from '../api/types.js';

export interface Subresource {
  name: 'status' | 'scale' | 'log';
  /** the kind a request on it returns */
  kind: string;
  group: string;
  version: string;
  verbs: readonly string[];
}

export interface Resource {
  info: KindInfo;
  subresources: readonly Subresource[];
  verbs: readonly string[];
  /** computed from other objects; writes are refused */
  readOnly: boolean;
}

const ALL_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];
const READ_VERBS = ['get', 'list', 'watch'];

/** Kinds with a `/scale` subresource. */
export const SCALABLE = new Set(['Deployment', 'ReplicaSet', 'StatefulSet', 'ReplicationController']);

function resourceFor(info: KindInfo): Resource {
  const subs: Subresource[] = [];
  if (info.hasStatus) {
    subs.push({ name: 'status', kind: info.kind, group: info.group, version: info.version, verbs: ['get', 'patch', 'update'] });
  }
  if (SCALABLE.has(info.kind)) {
    subs.push({ name: 'scale', kind: 'Scale', group: 'autoscaling', version: 'v1', verbs: ['get', 'patch', 'update'] });
  }
  if (info.kind === 'Pod') subs.push({ name: 'log', kind: 'Pod', group: '', version: 'v1', verbs: ['get'] });
  return { info, subresources: subs, verbs: ALL_VERBS, readOnly: false };
}

export const RESOURCES: readonly Resource[] = Object.freeze(KINDS.map(resourceFor));

/** Group versions in discovery order; autoscaling/v1 carries only the Scale kind of subresources. */
export const GROUP_VERSIONS: readonly { group: string; version: string }[] = Object.freeze(
  (() => {
    const out: { group: string; version: string }[] = [];
    const add = (group: string, version: string) => {
      if (!out.some((g) => g.group === group && g.version === version)) out.push({ group, version });
    };
    for (const r of RESOURCES) add(r.info.group, r.info.version);
    add('autoscaling', 'v1');
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

export const READ_ONLY_VERBS = READ_VERBS;

export const groupVersionString = (group: string, version: string): string => (group ? `${group}/${version}` : version);
