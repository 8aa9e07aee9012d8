/**
 * Discovery documents: `/version`, legacy `/api`, `/apis`, per-group-version resource lists,
 * and aggregated discovery (apidiscovery.k8s.io v2 / v2beta1), which kubectl 1.32 asks for
 * first and only accepts with its exact content type.
 */
import { GROUP_VERSIONS, type Resource, groupVersionString, resourcesOf } from './resources.js';

export const AGGREGATED_V2 = 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList';
export const AGGREGATED_V2BETA1 = 'application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList';

export const VERSION_INFO = Object.freeze({
  major: '1',
  minor: '32',
  gitVersion: 'v1.32.0-kubeloop',
  gitCommit: '0000000000000000000000000000000000000000',
  gitTreeState: 'clean',
  buildDate: '2025-01-01T00:00:00Z',
  goVersion: 'go1.23.0',
  compiler: 'gc',
  platform: 'linux/amd64',
});

/**
 * Which aggregated discovery version (if any) an Accept header asks for, honouring the
 * client's order: `v2`, `v2beta1`, or undefined for the legacy documents.
 */
export function aggregatedVersion(accept: string | undefined): 'v2' | 'v2beta1' | undefined {
  for (const part of (accept ?? '').split(',')) {
    const p = part.replace(/\s+/g, '');
    if (!p.includes('as=APIGroupDiscoveryList') || !p.includes('g=apidiscovery.k8s.io')) {
      if (/^(application\/json|\*\/\*|application\/\*)/.test(p)) return undefined;
      continue;
    }
    if (p.includes('v=v2beta1')) return 'v2beta1';
    if (p.includes('v=v2')) return 'v2';
  }
  return undefined;
}

function aggregatedResource(r: Resource): Record<string, unknown> {
  const i = r.info;
  return {
    resource: i.plural,
    responseKind: { group: i.group, version: i.version, kind: i.kind },
    scope: i.namespaced ? 'Namespaced' : 'Cluster',
    singularResource: i.singular,
    verbs: [...r.verbs],
    ...(i.shortNames.length ? { shortNames: [...i.shortNames] } : {}),
    ...(i.categories.length ? { categories: [...i.categories] } : {}),
    ...(r.subresources.length
      ? {
          subresources: r.subresources.map((s) => ({
            subresource: s.name,
            responseKind: { group: s.group, version: s.version, kind: s.kind },
            verbs: [...s.verbs],
          })),
        }
      : {}),
  };
}

/** `/api` (legacy group only) or `/apis` (named groups) as an APIGroupDiscoveryList. */
export function aggregatedList(legacy: boolean, version: 'v2' | 'v2beta1'): Record<string, unknown> {
  const groups = new Map<string, { version: string; resources: Record<string, unknown>[] }[]>();
  for (const gv of GROUP_VERSIONS) {
    if ((gv.group === '') !== legacy) continue;
    const list = groups.get(gv.group) ?? [];
    list.push({ version: gv.version, resources: resourcesOf(gv.group, gv.version).map(aggregatedResource) });
    groups.set(gv.group, list);
  }
  return {
    kind: 'APIGroupDiscoveryList',
    apiVersion: `apidiscovery.k8s.io/${version}`,
    metadata: {},
    items: [...groups].map(([name, versions]) => ({
      metadata: { name, creationTimestamp: null },
      versions: versions.map((v) => ({ version: v.version, resources: v.resources, freshness: 'Current' })),
    })),
  };
}

export function apiVersions(serverAddress: string): Record<string, unknown> {
  return {
    kind: 'APIVersions',
    versions: ['v1'],
    serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }],
  };
}

function apiGroup(group: string): Record<string, unknown> {
  const versions = GROUP_VERSIONS.filter((g) => g.group === group).map((g) => ({
    groupVersion: groupVersionString(g.group, g.version),
    version: g.version,
  }));
  return { name: group, versions, preferredVersion: versions[0] };
}

export function apiGroupList(): Record<string, unknown> {
  const names = [...new Set(GROUP_VERSIONS.map((g) => g.group).filter((g) => g !== ''))];
  return { kind: 'APIGroupList', apiVersion: 'v1', groups: names.map(apiGroup) };
}

export function apiGroupDoc(group: string): Record<string, unknown> | undefined {
  if (!GROUP_VERSIONS.some((g) => g.group === group && group !== '')) return undefined;
  return { kind: 'APIGroup', apiVersion: 'v1', ...apiGroup(group) };
}

/** `/api/v1`, `/apis/apps/v1`: an APIResourceList, subresources as `pods/log` entries. */
export function resourceList(group: string, version: string): Record<string, unknown> | undefined {
  if (!GROUP_VERSIONS.some((g) => g.group === group && g.version === version)) return undefined;
  const resources: Record<string, unknown>[] = [];
  for (const r of resourcesOf(group, version)) {
    const i = r.info;
    resources.push({
      name: i.plural,
      singularName: i.singular,
      namespaced: i.namespaced,
      kind: i.kind,
      verbs: [...r.verbs],
      ...(i.shortNames.length ? { shortNames: [...i.shortNames] } : {}),
      ...(i.categories.length ? { categories: [...i.categories] } : {}),
    });
    for (const s of r.subresources) {
      resources.push({
        name: `${i.plural}/${s.name}`,
        singularName: '',
        namespaced: i.namespaced,
        ...(s.group !== i.group || s.version !== i.version ? { group: s.group, version: s.version } : {}),
        kind: s.kind,
        verbs: [...s.verbs],
      });
    }
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: groupVersionString(group, version), resources };
}
