import { stringify } from 'yaml';

export interface KubeconfigOptions {
  /** `https://127.0.0.1:6443` */
  server: string;
  /** PEM of the cluster CA (what clients trust); omitted for the plain-HTTP test mode */
  ca?: string;
  /** PEMs of the admin client certificate and its key */
  clientCert?: string;
  clientKey?: string;
  token?: string;
  namespace?: string;
}

const b64 = (pem: string): string => Buffer.from(pem, 'utf8').toString('base64');

/**
 * A kubeconfig for kubeloop's API: context, cluster and user all named `kubeloop`, with the CA
 * and the credential inline (`*-data`), as kind and k3s write theirs. The file holds a private
 * key: whoever writes it must make it 0600.
 */
export function kubeconfigYaml(o: KubeconfigOptions): string {
  const user: Record<string, string> = {};
  if (o.clientCert && o.clientKey) {
    user['client-certificate-data'] = b64(o.clientCert);
    user['client-key-data'] = b64(o.clientKey);
  }
  if (o.token) user.token = o.token;
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    // the plain-HTTP test mode: @kubernetes/client-node refuses an http:// server unless told to skip TLS checks (kubectl ignores the key)
    clusters: [{ name: 'kubeloop', cluster: { server: o.server, ...(o.ca ? { 'certificate-authority-data': b64(o.ca) } : o.server.startsWith('http:') ? { 'insecure-skip-tls-verify': true } : {}) } }],
    users: [{ name: 'kubeloop', user }],
    contexts: [{ name: 'kubeloop', context: { cluster: 'kubeloop', user: 'kubeloop', namespace: o.namespace ?? 'default' } }],
    'current-context': 'kubeloop',
    preferences: {},
  });
}
