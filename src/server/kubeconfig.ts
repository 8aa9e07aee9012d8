import { stringify } from 'yaml';

/**
 * A kubeconfig for kubeloop's API: context, cluster and user all named `kubeloop`.
 * `insecure-skip-tls-verify` lets @kubernetes/client-node use an `http://` server (kubectl
 * ignores it for http).
 */
export function kubeconfigYaml(o: { server: string; token?: string; namespace?: string }): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'kubeloop', cluster: { server: o.server, 'insecure-skip-tls-verify': true } }],
    users: [{ name: 'kubeloop', user: o.token ? { token: o.token } : {} }],
    contexts: [{ name: 'kubeloop', context: { cluster: 'kubeloop', user: 'kubeloop', namespace: o.namespace ?? 'default' } }],
    'current-context': 'kubeloop',
    preferences: {},
  });
}
