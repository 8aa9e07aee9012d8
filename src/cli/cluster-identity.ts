/**
 * One cluster identity for every daemon on a shared store, as k3s shares its CA between servers:
 * the first daemon seals its CA (certificate and key) and the admin credential with a key only the
 * join token's holder can derive, and stores the sealed bundle beside the token's hash in the
 * join Secret (join.ts). A daemon that presents the token opens it and serves with that CA.
 *
 *   key    = scrypt(token, salt, 32 bytes; N 2^14, r 8, p 1)     salt: 16 random bytes
 *   sealed = AES-256-GCM(key, iv: 12 random bytes, aad: AAD)(JSON bundle) ‖ 16-byte tag
 *
 * The Secret's data holds `identity.salt`, `identity.iv` and `identity.sealed`. Without the token, what the store holds (the token's SHA-256 and the sealed
 * bundle) gives neither the CA key nor the admin key; with a wrong token the tag does not verify.
 */
import { createCipheriv, createDecipheriv, randomBytes, scrypt } from 'node:crypto';
import type { ClusterIdentity } from './pki.js';

const AAD = Buffer.from('kubeloop cluster identity v1', 'utf8');
const SCRYPT = { N: 1 << 14, r: 8, p: 1, maxmem: 64 << 20 } as const;
const TAG_BYTES = 16;

export const IDENTITY_KEYS = { salt: 'identity.salt', iv: 'identity.iv', sealed: 'identity.sealed' } as const;

/** the token's holder could not open the bundle: a wrong token, or a bundle that was tampered with */
export class IdentityUnreadable extends Error {}

function deriveKey(token: string, salt: Buffer): Promise<Buffer> {
  // on libuv's pool: the event loop stays free while scrypt works (~50 ms)
  return new Promise((resolve, reject) => scrypt(token, salt, 32, SCRYPT, (err, key) => (err ? reject(err) : resolve(key))));
}

const b64 = (b: Buffer): string => b.toString('base64');

/** the Secret `data` fields (base64 of the bytes, as every Secret value) */
export async function sealIdentity(token: string, id: ClusterIdentity): Promise<Record<string, string>> {
  const salt = randomBytes(16);
  const iv = randomBytes(12);
  const key = await deriveKey(token, salt);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(AAD);
  const body = Buffer.concat([c.update(JSON.stringify(id), 'utf8'), c.final(), c.getAuthTag()]);
  return { [IDENTITY_KEYS.salt]: b64(salt), [IDENTITY_KEYS.iv]: b64(iv), [IDENTITY_KEYS.sealed]: b64(body) };
}

/** does this Secret data hold a sealed identity? */
export const hasIdentity = (data: Record<string, string> | undefined): boolean => !!data?.[IDENTITY_KEYS.sealed];

/** Opens what `sealIdentity` made. Throws IdentityUnreadable (one line) for a wrong token or damaged data. */
export async function openIdentity(token: string, data: Record<string, string>): Promise<ClusterIdentity> {
  const field = (k: string): Buffer => Buffer.from(data[k] ?? '', 'base64');
  const salt = field(IDENTITY_KEYS.salt);
  const iv = field(IDENTITY_KEYS.iv);
  const sealed = field(IDENTITY_KEYS.sealed);
  if (salt.length !== 16 || iv.length !== 12 || sealed.length <= TAG_BYTES) {
    throw new IdentityUnreadable('the cluster identity in the store is damaged (salt, iv or sealed data missing or cut)');
  }
  const key = await deriveKey(token, salt);
  const d = createDecipheriv('aes-256-gcm', key, iv);
  d.setAAD(AAD);
  d.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  let plain: Buffer;
  try {
    plain = Buffer.concat([d.update(sealed.subarray(0, sealed.length - TAG_BYTES)), d.final()]);
  } catch {
    throw new IdentityUnreadable('this token cannot decrypt the cluster identity: it is not the token the cluster was made with (or the sealed data in kube-system/kubeloop-join was changed)');
  }
  let id: Partial<ClusterIdentity>;
  try {
    id = JSON.parse(plain.toString('utf8')) as Partial<ClusterIdentity>;
  } catch {
    throw new IdentityUnreadable('the cluster identity decrypts to something that is not JSON');
  }
  for (const k of ['caCert', 'caKey', 'adminCert', 'adminKey'] as const) {
    if (typeof id[k] !== 'string' || !id[k]) throw new IdentityUnreadable(`the cluster identity has no ${k}`);
  }
  return id as ClusterIdentity;
}
