/**
 * The cluster's certificates, made at first start and kept in `<stateDir>/pki/` (dir 0700,
 * files 0600), as kind and k3s do: a CA, the API's serving certificate (SANs: every name and
 * address the API answers on), and an admin client certificate (O=system:masters) for the
 * kubeconfig. Keys are ECDSA P-256. Reused across restarts; the serving certificate is remade
 * when its SAN set changes or it nears expiry, the client certificate when it nears expiry.
 * The CA is never remade silently: a CA certificate without its key is an error that names the fix.
 * On a shared store the CA and admin credential are the cluster's (cluster-identity.ts): the first
 * daemon's, adopted by every daemon that joins (`adoptClusterIdentity`) before `ensurePki` makes
 * its leaves from them; a node other machines reach also gets a tunnel certificate.
 */
import { type KeyObject, X509Certificate as NodeX509, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { checkOwnedPaths, ensurePrivateDir, writePrivate } from './state-dir.js';
import { type NameAttrs, certPem, makeCert, newKeyPair } from './x509.js';

const DAY = 86_400_000;
const CA_DAYS = 3650;
const LEAF_DAYS = 365;
/** a leaf certificate with less than this left is remade at start */
const RENEW_BEFORE_MS = 30 * DAY;

export const ADMIN_USER = 'kubeloop-admin';
export const ADMIN_GROUP = 'system:masters';
/** the API server's identity towards the node agents, as upstream's apiserver-kubelet-client */
export const AGENT_CLIENT_USER = 'kube-apiserver-kubelet-client';

export interface Pki {
  /** PEM of the cluster CA: what clients trust and what client certificates are checked against */
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /**
   * the node agents' endpoint (the kubelet's port): its serving certificate (SANs: the node
   * addresses) and the one client certificate it accepts, the API server's (CN
   * AGENT_CLIENT_USER), so nothing else on the machine can exec into a pod through it
   */
  agentCert: string;
  agentKey: string;
  agentClientCert: string;
  agentClientKey: string;
  /**
   * the node's tunnel certificate (server and client: CN system:node:<name>, O system:nodes,
   * SANs the node IP), when asked for with `tunnel`
   */
  tunnelCert?: string;
  tunnelKey?: string;
  dir: string;
}

export interface PkiOptions {
  /** `<stateDir>/pki` */
  dir: string;
  /** SANs of the serving certificate: IPs and DNS names, in any order */
  hosts: readonly string[];
  /** SANs of the node agents' serving certificate (the node addresses); default `hosts` */
  agentHosts?: readonly string[];
  /** the node whose tunnel certificate to make (a node other machines reach), and its SANs */
  tunnel?: { nodeName: string; hosts: readonly string[] };
  log: Logger;
}

const FILES = {
  caCert: 'ca.crt',
  caKey: 'ca.key',
  serverCert: 'apiserver.crt',
  serverKey: 'apiserver.key',
  clientCert: 'admin.crt',
  clientKey: 'admin.key',
  agentCert: 'kubelet.crt',
  agentKey: 'kubelet.key',
  agentClientCert: 'apiserver-kubelet-client.crt',
  agentClientKey: 'apiserver-kubelet-client.key',
  tunnelCert: 'tunnel.crt',
  tunnelKey: 'tunnel.key',
} as const;

async function readIfThere(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

const keyPem = (k: KeyObject): string => k.export({ type: 'pkcs8', format: 'pem' }) as string;

/** IPv6 in its short form (node prints `0:0:0:0:0:0:0:1` for `::1`), names lower-case */
const canonical = (h: string): string => (isIP(h) === 6 ? new URL(`http://[${h}]/`).hostname.slice(1, -1) : h.toLowerCase());

const sortedSans = (hosts: readonly string[]): string[] => [...new Set(hosts.map(canonical))].sort();

/** The SANs of a PEM certificate in the same form as `sortedSans` (node prints `DNS:a, IP Address:b`). */
function sansOf(cert: NodeX509): string[] {
  const raw = cert.subjectAltName ?? '';
  return sortedSans(
    raw
      .split(', ')
      .filter(Boolean)
      .map((s) => s.slice(s.indexOf(':') + 1)),
  );
}

function usable(certPem: string | undefined, keyPem: string | undefined, ca: NodeX509): certPem is string {
  if (!certPem || !keyPem) return false;
  try {
    const c = new NodeX509(certPem);
    return c.checkIssued(ca) && c.verify(ca.publicKey) && Date.parse(c.validTo) - Date.now() > RENEW_BEFORE_MS;
  } catch {
    return false;
  }
}

interface Signer {
  certDer: Buffer;
  key: KeyObject;
}

async function leaf(o: { signer: Signer; subject: NameAttrs; days: number; usage: 'server' | 'client' | 'peer'; hosts?: readonly string[] }): Promise<{ cert: string; key: string }> {
  const keys = await newKeyPair();
  const now = Date.now();
  const der = await makeCert({
    subject: o.subject,
    issuer: o.signer,
    keys,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + o.days * DAY),
    usage: o.usage,
    hosts: o.hosts,
  });
  return { cert: certPem(der), key: keyPem(keys.privateKey) };
}

async function newCa(): Promise<{ cert: string; key: string }> {
  const keys = await newKeyPair();
  const now = Date.now();
  const der = await makeCert({ subject: [['CN', 'kubeloop-ca']], keys, notBefore: new Date(now - 60_000), notAfter: new Date(now + CA_DAYS * DAY), usage: 'ca' });
  return { cert: certPem(der), key: keyPem(keys.privateKey) };
}

/** What makes one cluster of several daemons (cluster-identity.ts shares it): the CA and the admin credential. */
export interface ClusterIdentity {
  caCert: string;
  caKey: string;
  adminCert: string;
  adminKey: string;
}

/** the subject of a node's tunnel certificate (upstream's kubelet client identity) */
export const nodeUser = (nodeName: string): string => `system:node:${nodeName}`;
export const NODES_GROUP = 'system:nodes';

const pathsOf = (dir: string) => (k: keyof typeof FILES): string => join(dir, FILES[k]);

/** the CA of `dir` as a signer; throws with the fix when it is unreadable or expired */
function caSigner(dir: string, caCert: string, caKey: string): { caNode: NodeX509; signer: Signer } {
  let caNode: NodeX509;
  let signer: Signer;
  try {
    caNode = new NodeX509(caCert);
    signer = { certDer: caNode.raw, key: createPrivateKey(caKey) };
  } catch (e) {
    throw new Error(`${dir}: the CA certificate or key cannot be read (${(e as Error).message}): restore them, or delete ${dir} to make a new CA`);
  }
  if (Date.parse(caNode.validTo) <= Date.now()) {
    throw new Error(`the cluster CA in ${dir} expired on ${caNode.validTo}: delete ${dir} to make a new one (then use the new kubeconfig)`);
  }
  return { caNode, signer };
}

/**
 * The CA and admin credential of `dir`, made when missing (the admin certificate also when it
 * is stale). What a daemon that creates a cluster on a shared store hands to the others.
 */
export async function ensureClusterIdentity(dir: string, log: Logger): Promise<ClusterIdentity> {
  await checkOwnedPaths([dir, ...Object.values(FILES).map((n) => join(dir, n))], dir);
  await ensurePrivateDir(dir);
  const f = pathsOf(dir);
  let caCert = await readIfThere(f('caCert'));
  let caKey = await readIfThere(f('caKey'));
  if (caCert === undefined) {
    ({ cert: caCert, key: caKey } = await newCa());
    await writePrivate(f('caKey'), caKey);
    await writePrivate(f('caCert'), caCert);
    log.info({ dir }, 'made a cluster CA');
  } else if (caKey === undefined) {
    throw new Error(`${f('caCert')} has no key next to it (${FILES.caKey}): restore it, or delete ${dir} to make a new CA (kubeconfigs made from the old one stop working)`);
  }
  const { caNode, signer } = caSigner(dir, caCert, caKey!);
  let clientCert = await readIfThere(f('clientCert'));
  let clientKey = await readIfThere(f('clientKey'));
  if (!usable(clientCert, clientKey, caNode)) {
    ({ cert: clientCert, key: clientKey } = await leaf({ signer, subject: [['O', ADMIN_GROUP], ['CN', ADMIN_USER]], days: LEAF_DAYS, usage: 'client' }));
    await writePrivate(f('clientKey'), clientKey);
    await writePrivate(f('clientCert'), clientCert);
    log.info({ user: ADMIN_USER }, 'made the admin client certificate');
  }
  return { caCert, caKey: caKey!, adminCert: clientCert!, adminKey: clientKey! };
}

/**
 * Makes `id` the CA and admin credential of `dir` (a daemon joining a cluster). A different CA
 * that was there is kept beside it as `ca.crt.replaced`/`ca.key.replaced`; the leaf certificates
 * it signed are remade by `ensurePki`. Returns whether anything changed.
 */
export async function adoptClusterIdentity(dir: string, id: ClusterIdentity, log: Logger): Promise<boolean> {
  await checkOwnedPaths([dir, ...Object.values(FILES).map((n) => join(dir, n))], dir);
  await ensurePrivateDir(dir);
  const f = pathsOf(dir);
  caSigner(dir, id.caCert, id.caKey);
  const [caCert, caKey, adminCert, adminKey] = await Promise.all([readIfThere(f('caCert')), readIfThere(f('caKey')), readIfThere(f('clientCert')), readIfThere(f('clientKey'))]);
  if (caCert === id.caCert && caKey === id.caKey && adminCert === id.adminCert && adminKey === id.adminKey) return false;
  if (caCert !== undefined && caCert !== id.caCert) {
    await writePrivate(`${f('caCert')}.replaced`, caCert);
    if (caKey !== undefined) await writePrivate(`${f('caKey')}.replaced`, caKey);
    log.warn({ dir }, "this state dir's own CA is replaced by the cluster's (kept as ca.crt.replaced): kubeconfigs made from it stop working; the new kubeconfig is written at start");
  }
  await writePrivate(f('caKey'), id.caKey);
  await writePrivate(f('caCert'), id.caCert);
  await writePrivate(f('clientKey'), id.adminKey);
  await writePrivate(f('clientCert'), id.adminCert);
  log.info('using the cluster CA and admin credential');
  return true;
}

/** Loads the PKI from `dir`, making what is missing, stale or for other SANs. Throws with the fix. */
export async function ensurePki(o: PkiOptions): Promise<Pki> {
  const { dir, log } = o;
  const id = await ensureClusterIdentity(dir, log);
  const f = pathsOf(dir);
  const read = async (k: keyof typeof FILES) => readIfThere(f(k));
  const { caNode, signer } = caSigner(dir, id.caCert, id.caKey);
  const caCert = id.caCert;
  const clientCert = id.adminCert;
  const clientKey = id.adminKey;

  const hosts = sortedSans(o.hosts);
  let serverCert = await read('serverCert');
  let serverKey = await read('serverKey');
  const serverOk = usable(serverCert, serverKey, caNode) && sansOf(new NodeX509(serverCert!)).join() === hosts.join();
  if (!serverOk) {
    ({ cert: serverCert, key: serverKey } = await leaf({ signer, subject: [['CN', 'kube-apiserver']], days: LEAF_DAYS, usage: 'server', hosts }));
    await writePrivate(f('serverKey'), serverKey);
    await writePrivate(f('serverCert'), serverCert);
    log.info({ sans: hosts }, 'made the API serving certificate');
  }

  const agentHosts = sortedSans(o.agentHosts ?? o.hosts);
  let agentCert = await read('agentCert');
  let agentKey = await read('agentKey');
  if (!(usable(agentCert, agentKey, caNode) && sansOf(new NodeX509(agentCert!)).join() === agentHosts.join())) {
    ({ cert: agentCert, key: agentKey } = await leaf({ signer, subject: [['CN', 'kubeloop-node-agent']], days: LEAF_DAYS, usage: 'server', hosts: agentHosts }));
    await writePrivate(f('agentKey'), agentKey);
    await writePrivate(f('agentCert'), agentCert);
    log.info({ sans: agentHosts }, 'made the node agent serving certificate');
  }
  let agentClientCert = await read('agentClientCert');
  let agentClientKey = await read('agentClientKey');
  if (!usable(agentClientCert, agentClientKey, caNode)) {
    ({ cert: agentClientCert, key: agentClientKey } = await leaf({ signer, subject: [['CN', AGENT_CLIENT_USER]], days: LEAF_DAYS, usage: 'client' }));
    await writePrivate(f('agentClientKey'), agentClientKey);
    await writePrivate(f('agentClientCert'), agentClientCert);
    log.info({ user: AGENT_CLIENT_USER }, 'made the API server\'s client certificate for the node agents');
  }
  let tunnelCert: string | undefined;
  let tunnelKey: string | undefined;
  if (o.tunnel) {
    const tunnelHosts = sortedSans(o.tunnel.hosts);
    const cn = nodeUser(o.tunnel.nodeName);
    tunnelCert = await read('tunnelCert');
    tunnelKey = await read('tunnelKey');
    const same = (c: string): boolean => {
      const x = new NodeX509(c);
      return x.subject.split('\n').includes(`CN=${cn}`) && sansOf(x).join() === tunnelHosts.join();
    };
    if (!(usable(tunnelCert, tunnelKey, caNode) && same(tunnelCert))) {
      ({ cert: tunnelCert, key: tunnelKey } = await leaf({ signer, subject: [['O', NODES_GROUP], ['CN', cn]], days: LEAF_DAYS, usage: 'peer', hosts: tunnelHosts }));
      await writePrivate(f('tunnelKey'), tunnelKey);
      await writePrivate(f('tunnelCert'), tunnelCert);
      log.info({ user: cn, sans: tunnelHosts }, "made the node's tunnel certificate");
    }
  }
  return {
    ...(tunnelCert && tunnelKey ? { tunnelCert, tunnelKey } : {}),
    ca: caCert,
    serverCert: serverCert!,
    serverKey: serverKey!,
    clientCert: clientCert!,
    clientKey: clientKey!,
    agentCert: agentCert!,
    agentKey: agentKey!,
    agentClientCert: agentClientCert!,
    agentClientKey: agentClientKey!,
    dir,
  };
}
