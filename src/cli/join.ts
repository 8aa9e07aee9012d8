/**
 * The join credential of a cluster on a shared store (kubeadm's bootstrap token, simplified):
 *
 * - The first daemon on a store (the one that finds no `kube-system/kubeloop-join` Secret and
 *   creates it: create-if-absent, so of two racing first daemons one wins) makes a random
 *   token, stores only its SHA-256 in that Secret, keeps the token in its state dir (0600) and
 *   prints it once with the command for the next machine.
 * - Every later daemon must present the token (--join, $KUBELOOP_JOIN_TOKEN, or the copy in its
 *   own state dir from an earlier join); a wrong or missing one is refused before the daemon
 *   registers anything. A joined daemon keeps the token in its state dir, so a restart rejoins.
 * - The first daemon also records the cluster's ranges (ConfigMap `kube-system/kubeloop-cluster`);
 *   a joining daemon with other --service-cidr / --pod-cidr / --service-node-port-range /
 *   --cluster-domain / --node-cidr-mask-size values is refused, naming the flag and the value.
 *
 * - The Secret also holds the cluster identity (the CA and the admin credential) sealed with a
 *   key derived from the token (cluster-identity.ts): the first daemon seals its own; a daemon
 *   that presents the token opens it and adopts it, so every daemon serves with one CA and one
 *   kubeconfig works against every machine's API. A cluster made before the identity was
 *   shared gets the identity of the first daemon that joins it with the token.
 *
 * Anyone who can write the store can read the hash and add nodes by hand: the store's own
 * credentials (the Redis password, TLS) are what guard the cluster; the token keeps a daemon
 * from joining the wrong cluster, or one nobody handed the token to.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { isApiError } from '../api/errors.js';
import type { ConfigMap, Secret } from '../api/types.js';
import type { Store } from '../store/types.js';
import { writePrivate } from './state-dir.js';
import { IdentityUnreadable, hasIdentity, openIdentity, sealIdentity } from './cluster-identity.js';
import type { ClusterIdentity } from './pki.js';

/** this daemon's CA and admin credential (made when missing), and how it takes the cluster's */
export interface IdentityStore {
  local(): Promise<ClusterIdentity>;
  adopt(id: ClusterIdentity): Promise<void>;
}

export const JOIN_SECRET = 'kubeloop-join';
export const CLUSTER_CONFIG = 'kubeloop-cluster';
const TOKEN_FILE = 'join-token';

export interface ClusterConfig {
  'service-cidr': string;
  'pod-cidr': string;
  'service-node-port-range': string;
  'cluster-domain': string;
  'node-cidr-mask-size': string;
}

export interface JoinResult {
  /** this daemon created the cluster: the token to print (once) */
  createdToken?: string;
  /** where this daemon keeps the token */
  tokenFile: string;
}

export class JoinRefused extends Error {}

const sha256 = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex');

/** Creates the cluster's credential, or checks this daemon's against it. Throws JoinRefused with the fix. */
export async function joinCluster(store: Store, o: { token: string; stateDir: string; config: ClusterConfig; identity: IdentityStore; log: Logger }): Promise<JoinResult> {
  const tokenFile = join(o.stateDir, TOKEN_FILE);
  const kept = (await readFile(tokenFile, 'utf8').catch(() => '')).trim();
  let secret = await store.tryGet<Secret>('Secret', 'kube-system', JOIN_SECRET);
  if (!secret) {
    const token = randomBytes(24).toString('base64url');
    try {
      await store.create<Secret>({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: JOIN_SECRET, namespace: 'kube-system', labels: { 'app.kubernetes.io/managed-by': 'kubeloop' } },
        type: 'Opaque',
        data: { 'token-sha256': Buffer.from(sha256(token)).toString('base64'), ...(await sealIdentity(token, await o.identity.local())) },
      });
      await store.create<ConfigMap>({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: CLUSTER_CONFIG, namespace: 'kube-system' }, data: { ...o.config } }).catch((e: unknown) => {
        if (!isApiError(e, 'AlreadyExists')) throw e;
      });
      await writePrivate(tokenFile, `${token}\n`);
      o.log.info('created the cluster: its join token is printed once and kept in the state dir');
      return { createdToken: token, tokenFile };
    } catch (e) {
      if (!isApiError(e, 'AlreadyExists')) throw e;
      // another first daemon won the race: join it like any other
      secret = await store.get<Secret>('Secret', 'kube-system', JOIN_SECRET);
    }
  }
  const token = o.token || kept;
  const want = Buffer.from(secret.data?.['token-sha256'] ?? '', 'base64').toString('utf8');
  if (!token) {
    throw new JoinRefused('this store holds a cluster already: add --join TOKEN (the token its first daemon printed; also in that daemon\'s state dir, file join-token) or set KUBELOOP_JOIN_TOKEN');
  }
  const got = sha256(token);
  if (want.length !== got.length || !timingSafeEqual(Buffer.from(want), Buffer.from(got))) {
    throw new JoinRefused(`the join token ${o.token ? 'given' : `in ${tokenFile}`} is not this cluster's: pass --join with the token the cluster's first daemon printed (file join-token in its state dir)`);
  }
  await checkConfig(store, o.config);
  await adoptIdentity(store, token, o.identity);
  if (token !== kept) await writePrivate(tokenFile, `${token}\n`);
  return { tokenFile };
}

/** Opens the cluster's sealed identity and adopts it; a cluster without one gets this daemon's. */
async function adoptIdentity(store: Store, token: string, identity: IdentityStore): Promise<void> {
  let secret = await store.get<Secret>('Secret', 'kube-system', JOIN_SECRET);
  if (!hasIdentity(secret.data)) {
    const sealed = await sealIdentity(token, await identity.local());
    await store.mutate<Secret>('Secret', 'kube-system', JOIN_SECRET, (s) => {
      if (hasIdentity(s.data)) return false;
      s.data = { ...s.data, ...sealed };
    });
    // this daemon's, or the one another daemon stored first
    secret = await store.get<Secret>('Secret', 'kube-system', JOIN_SECRET);
  }
  try {
    await identity.adopt(await openIdentity(token, secret.data ?? {}));
  } catch (e) {
    if (e instanceof IdentityUnreadable) throw new JoinRefused(e.message);
    throw e;
  }
}

async function checkConfig(store: Store, mine: ClusterConfig): Promise<void> {
  const cm = await store.tryGet<ConfigMap>('ConfigMap', 'kube-system', CLUSTER_CONFIG);
  const theirs = cm?.data ?? {};
  const diff = (Object.keys(mine) as Array<keyof ClusterConfig>).filter((k) => theirs[k] !== undefined && theirs[k] !== mine[k]);
  if (diff.length) {
    throw new JoinRefused(`this cluster runs with ${diff.map((k) => `--${k} ${theirs[k]}`).join(' ')}: start this daemon with the same (it has ${diff.map((k) => `--${k} ${mine[k]}`).join(' ')})`);
  }
}

/** the command another machine joins with; the store URL without its password (`$KUBELOOP_REDIS_PASSWORD` then) */
export function joinCommand(storeUrl: string, token: string, hasPassword: boolean): string {
  let url = storeUrl;
  let pw = hasPassword;
  try {
    const u = new URL(storeUrl);
    pw ||= u.password !== '';
    u.username = '';
    u.password = '';
    url = u.toString().replace(/\/$/, '');
  } catch {
    // validated at start: kept as given
  }
  // the token in the environment, not as --join's argument: argv is visible to every local user
  // (ps) for the daemon's whole life; the environment is not
  return `${pw ? 'KUBELOOP_REDIS_PASSWORD=<the password> ' : ''}KUBELOOP_JOIN_TOKEN=${token} npx kubeloop up --store ${url} --node-ip <an address of that machine>`;
}
