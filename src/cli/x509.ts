/**
 * The few X.509 certificates the cluster needs, made with node:crypto alone: ECDSA P-256 keys
 * and ecdsa-with-SHA256 signatures over a DER TBSCertificate written here (RFC 5280, the
 * subset kubeloop uses: v3, a Name of CN/O attributes, basicConstraints, keyUsage,
 * extKeyUsage, subject/authority key identifiers, DNS and IP subjectAltNames). Reading stays
 * with node's X509Certificate, plus `subjectDer`/`subjectKeyId` here, which pick the two raw
 * fields a signer contributes to the certificates it issues.
 *
 * (Before, @peculiar/x509 did this: its ASN.1 stack took about a third of the daemon's module
 * loading on every start, certificates or not.)
 */
import { createHash, createPublicKey, generateKeyPair, randomBytes, sign, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';

// ---- DER writing -------------------------------------------------------------------------

function tlv(tag: number, body: Buffer): Buffer {
  const n = body.length;
  let len: Buffer;
  if (n < 0x80) len = Buffer.from([n]);
  else {
    const bytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
    len = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), len, body]);
}

const seq = (...items: Buffer[]): Buffer => tlv(0x30, Buffer.concat(items));
const set = (...items: Buffer[]): Buffer => tlv(0x31, Buffer.concat(items));
const octets = (b: Buffer): Buffer => tlv(0x04, b);
const utf8 = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));
const TRUE = Buffer.from([0x01, 0x01, 0xff]);

/** A non-negative INTEGER from its big-endian magnitude, minimally encoded. */
function uint(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  const m = b.subarray(i);
  return tlv(0x02, m[0] & 0x80 ? Buffer.concat([Buffer.from([0]), m]) : m);
}

function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const out = [40 * a + b];
  for (const n of rest) {
    const groups = [n & 0x7f];
    for (let v = Math.floor(n / 128); v > 0; v = Math.floor(v / 128)) groups.unshift(0x80 | (v & 0x7f));
    out.push(...groups);
  }
  return tlv(0x06, Buffer.from(out));
}

/** A BIT STRING of whole bytes (a key or a signature). */
const bits = (b: Buffer): Buffer => tlv(0x03, Buffer.concat([Buffer.from([0]), b]));

/** A named-bit BIT STRING (keyUsage): bit 0 is the first byte's top bit; trailing zero bits dropped. */
function namedBits(flags: number[]): Buffer {
  const bytes = Buffer.alloc(Math.floor(Math.max(...flags) / 8) + 1);
  for (const f of flags) bytes[f >> 3] |= 0x80 >> (f & 7);
  const last = bytes[bytes.length - 1];
  let unused = 0;
  while (unused < 7 && !(last & (1 << unused))) unused++;
  return tlv(0x03, Buffer.concat([Buffer.from([unused]), bytes]));
}

/** UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5), whole seconds. */
function time(d: Date): Buffer {
  const iso = d.toISOString(); // 2026-12-07T18:43:20.838Z
  const digits = iso.slice(0, 19).replace(/[-T:]/g, '');
  const year = d.getUTCFullYear();
  return year < 2050 ? tlv(0x17, Buffer.from(`${digits.slice(2)}Z`)) : tlv(0x18, Buffer.from(`${digits}Z`));
}

/** The 4 or 16 bytes of an IP address. */
export function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  if (isIP(ip) !== 6) throw new Error(`not an IP address: ${ip}`);
  let s = ip.replace(/%.*$/, '');
  // a trailing dotted quad (::ffff:1.2.3.4) is two groups
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (quad) {
    const [a, b, c, d] = quad.slice(1).map(Number);
    s = `${s.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = s.includes('::') ? s.split('::') : [s, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

// ---- DER reading (the signer's subject and key identifier) ---------------------------------

interface Tlv {
  tag: number;
  /** the whole element, header included */
  raw: Buffer;
  body: Buffer;
}

function* elements(b: Buffer): Generator<Tlv> {
  let i = 0;
  while (i < b.length) {
    const tag = b[i];
    let len = b[i + 1];
    let hdr = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let k = 0; k < n; k++) len = len * 256 + b[i + 2 + k];
      hdr += n;
    }
    if (i + hdr + len > b.length) throw new Error('truncated DER');
    yield { tag, raw: b.subarray(i, i + hdr + len), body: b.subarray(i + hdr, i + hdr + len) };
    i += hdr + len;
  }
}

const first = (b: Buffer): Tlv => {
  for (const e of elements(b)) return e;
  throw new Error('empty DER');
};

/** The TBSCertificate's fields of a DER certificate, without the optional [0] version. */
function tbsFields(certDer: Buffer): Tlv[] {
  const tbs = first(first(certDer).body);
  const fields = [...elements(tbs.body)];
  return fields[0]?.tag === 0xa0 ? fields.slice(1) : fields;
}

/** The raw subject Name of a DER certificate: the issuer field of what it signs, byte for byte. */
export function subjectDer(certDer: Buffer): Buffer {
  return tbsFields(certDer)[4].raw; // serial, signature, issuer, validity, subject
}

const SKI = '2.5.29.14';

/** The subjectKeyIdentifier of a DER certificate, if it has one. */
export function subjectKeyId(certDer: Buffer): Buffer | undefined {
  const exts = tbsFields(certDer).find((f) => f.tag === 0xa3);
  if (!exts) return undefined;
  const skiOid = oid(SKI);
  for (const ext of elements(first(exts.body).body)) {
    const parts = [...elements(ext.body)];
    if (!parts[0].raw.equals(skiOid)) continue;
    return first(parts[parts.length - 1].body).body; // extnValue OCTET STRING → KeyIdentifier OCTET STRING
  }
  return undefined;
}

// ---- certificates ----------------------------------------------------------------------------

const ECDSA_SHA256 = seq(oid('1.2.840.10045.4.3.2'));
const ATTR = { CN: '2.5.4.3', O: '2.5.4.10' } as const;

/** A Name of one attribute per RDN, in the order given (`[['O', 'system:masters'], ['CN', 'admin']]`). */
export type NameAttrs = ReadonlyArray<readonly [keyof typeof ATTR, string]>;

export const nameDer = (attrs: NameAttrs): Buffer => seq(...attrs.map(([k, v]) => set(seq(oid(ATTR[k]), utf8(v)))));

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return seq(oid(id), ...(critical ? [TRUE] : []), octets(value));
}

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
function keyId(spkiDer: Buffer): Buffer {
  const [, key] = [...elements(first(spkiDer).body)];
  return createHash('sha1').update(key.body.subarray(1)).digest();
}

const KU = { digitalSignature: 0, keyEncipherment: 2, keyCertSign: 5, cRLSign: 6 } as const;

export interface CertSpec {
  subject: NameAttrs;
  /** the issuing CA; none: self-signed (a CA) */
  issuer?: { certDer: Buffer; key: KeyObject };
  /** the subject's key pair (self-signed: also the signing key) */
  keys: { publicKey: KeyObject; privateKey: KeyObject };
  notBefore: Date;
  notAfter: Date;
  /** a CA (pathLen 0) or a leaf for TLS servers, clients, or both (a peer: the node tunnels) */
  usage: 'ca' | 'server' | 'client' | 'peer';
  /** subjectAltNames: IPs and DNS names */
  hosts?: readonly string[];
}

function serial(): Buffer {
  const b = randomBytes(16);
  b[0] = (b[0] & 0x7f) | 0x40; // positive, and 16 bytes long in DER
  return b;
}

/** A new ECDSA P-256 key pair (on libuv's pool: several are made in parallel). */
export function newKeyPair(): Promise<{ publicKey: KeyObject; privateKey: KeyObject }> {
  return new Promise((resolve, reject) => generateKeyPair('ec', { namedCurve: 'P-256' }, (err, publicKey, privateKey) => (err ? reject(err) : resolve({ publicKey, privateKey }))));
}

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

/** The certificate, DER. */
export async function makeCert(s: CertSpec): Promise<Buffer> {
  const spki = s.keys.publicKey.export({ type: 'spki', format: 'der' });
  const exts: Buffer[] = [];
  if (s.usage === 'ca') {
    exts.push(
      extension('2.5.29.19', true, seq(TRUE, uint(Buffer.from([0])))),
      extension('2.5.29.15', true, namedBits([KU.keyCertSign, KU.cRLSign, KU.digitalSignature])),
      extension(SKI, false, octets(keyId(spki))),
    );
  } else {
    exts.push(
      extension('2.5.29.19', true, seq()),
      extension('2.5.29.15', true, namedBits([KU.digitalSignature, KU.keyEncipherment])),
      extension('2.5.29.37', false, seq(...(s.usage === 'peer' ? [SERVER_AUTH, CLIENT_AUTH] : [s.usage === 'server' ? SERVER_AUTH : CLIENT_AUTH]).map(oid))),
    );
    if (s.issuer) {
      const aki = subjectKeyId(s.issuer.certDer) ?? keyId(issuerSpki(s.issuer.key));
      exts.push(extension('2.5.29.35', false, seq(tlv(0x80, aki))));
    }
  }
  if (s.hosts?.length) {
    exts.push(extension('2.5.29.17', false, seq(...s.hosts.map((h) => (isIP(h) ? tlv(0x87, ipBytes(h)) : tlv(0x82, Buffer.from(h, 'ascii')))))));
  }
  const subject = nameDer(s.subject);
  const tbs = seq(
    tlv(0xa0, uint(Buffer.from([2]))), // v3
    uint(serial()),
    ECDSA_SHA256,
    s.issuer ? subjectDer(s.issuer.certDer) : subject,
    seq(time(s.notBefore), time(s.notAfter)),
    subject,
    spki,
    tlv(0xa3, seq(...exts)),
  );
  const signingKey = s.issuer?.key ?? s.keys.privateKey;
  const sig = await new Promise<Buffer>((resolve, reject) => sign('sha256', tbs, signingKey, (err, out) => (err ? reject(err) : resolve(out))));
  return seq(tbs, ECDSA_SHA256, bits(sig));
}

/** The public key of a private key, SPKI DER. */
const issuerSpki = (key: KeyObject): Buffer => createPublicKey(key).export({ type: 'spki', format: 'der' });

export const certPem = (der: Buffer): string => `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{64}(?!$)/g, '$&\n')}\n-----END CERTIFICATE-----\n`;
