/**
 * cli/x509.ts: certificates written with node:crypto alone are ones node, OpenSSL's TLS and a
 * CA made by the earlier @peculiar/x509 code (a state dir from before) agree with.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import t, { type Test } from 'tap';
import { certPem, ipBytes, makeCert, newKeyPair, subjectDer, subjectKeyId } from '../src/cli/x509.js';

const DAY = 86_400_000;
const keyPem = (k: import('node:crypto').KeyObject): string => k.export({ type: 'pkcs8', format: 'pem' }) as string;

t.test('ipBytes', async (t) => {
  const cases: Array<[string, string]> = [
    ['127.0.0.1', '7f000001'],
    ['::1', '00000000000000000000000000000001'],
    ['::', '00000000000000000000000000000000'],
    ['fd00::a:1', 'fd0000000000000000000000000a0001'],
    ['2001:db8:0:0:1:0:0:1', '20010db8000000000001000000000001'],
    ['1::', '00010000000000000000000000000000'],
    ['::ffff:192.0.2.1', '00000000000000000000ffffc0000201'],
  ];
  for (const [ip, hex] of cases) t.equal(ipBytes(ip).toString('hex'), hex, ip);
  t.throws(() => ipBytes('example'), /not an IP address/);
});

async function ca(): Promise<{ der: Buffer; pem: string; key: import('node:crypto').KeyObject }> {
  const keys = await newKeyPair();
  const now = Date.now();
  const der = await makeCert({ subject: [['CN', 'test-ca']], keys, notBefore: new Date(now - 60_000), notAfter: new Date(now + 10 * DAY), usage: 'ca' });
  return { der, pem: certPem(der), key: keys.privateKey };
}

t.test('a CA and its leaves, as node reads them', async (t) => {
  const c = await ca();
  const caX = new X509Certificate(c.pem);
  t.ok(caX.ca, 'CA:TRUE');
  t.equal(caX.subject, 'CN=test-ca');
  t.ok(caX.verify(caX.publicKey), 'self-signed');
  t.equal(subjectKeyId(c.der)?.length, 20, 'a SHA-1 subject key identifier');
  t.ok(caX.raw.equals(c.der), 'PEM round trip');

  const keys = await newKeyPair();
  const hosts = ['localhost', '127.0.0.1', '::1', 'kubernetes.default.svc.cluster.local', '10.96.0.1'];
  const now = Date.now();
  const der = await makeCert({ subject: [['O', 'system:masters'], ['CN', 'someone']], issuer: { certDer: c.der, key: c.key }, keys, notBefore: new Date(now - 1000), notAfter: new Date(now + 400 * DAY), usage: 'server', hosts });
  const leaf = new X509Certificate(certPem(der));
  t.ok(leaf.checkIssued(caX) && leaf.verify(caX.publicKey), 'signed by the CA');
  t.notOk(leaf.ca);
  t.equal(leaf.issuer, 'CN=test-ca');
  t.match(leaf.subject, /O=system:masters/);
  t.match(leaf.subject, /CN=someone/);
  t.same(leaf.subjectAltName?.split(', ').sort(), ['DNS:kubernetes.default.svc.cluster.local', 'DNS:localhost', 'IP Address:0:0:0:0:0:0:0:1', 'IP Address:10.96.0.1', 'IP Address:127.0.0.1']);
  t.equal(leaf.checkHost('localhost'), 'localhost');
  t.equal(leaf.checkIP('10.96.0.1'), '10.96.0.1');
  t.ok(subjectDer(der).equals(subjectDer(der)) && !subjectDer(der).equals(subjectDer(c.der)), 'subjectDer picks the subject, not the issuer');
  t.ok(Math.abs(Date.parse(leaf.validTo) - (now + 400 * DAY)) < 2000, 'notAfter as asked');
  t.equal(leaf.keyUsage?.join(), '1.3.6.1.5.5.7.3.1', 'serverAuth');
  // a date past 2049 is a GeneralizedTime
  const far = await makeCert({ subject: [['CN', 'far']], issuer: { certDer: c.der, key: c.key }, keys, notBefore: new Date(now), notAfter: new Date(Date.UTC(2061, 0, 2)), usage: 'client' });
  t.equal(new X509Certificate(far).validTo, 'Jan  2 00:00:00 2061 GMT');
});

/**
 * A TLS connection on loopback: the client checks the server's certificate against the CA and
 * its name; the server reports whether the client's certificate verified against the CA.
 */
async function handshake(t: Test, caPem: string, server: { cert: string; key: string }, client: { cert: string; key: string }): Promise<{ authorized: boolean; peerCN: string; clientAuthorized: boolean; clientCN: string }> {
  const srv = tls.createServer({ cert: server.cert, key: server.key, ca: caPem, requestCert: true, rejectUnauthorized: false }, (s) =>
    s.end(JSON.stringify({ clientAuthorized: s.authorized, clientCN: String(s.getPeerCertificate().subject?.CN) })),
  );
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  const port = (srv.address() as import('node:net').AddressInfo).port;
  return new Promise((resolve, reject) => {
    let authorized = false;
    let peerCN = '';
    let body = '';
    const s = tls.connect({ host: '127.0.0.1', port, ca: caPem, cert: client.cert, key: client.key, servername: 'localhost' }, () => {
      authorized = s.authorized;
      peerCN = String(s.getPeerCertificate().subject.CN);
    });
    s.setEncoding('utf8').on('data', (c: string) => (body += c));
    s.on('end', () => resolve({ authorized, peerCN, ...(JSON.parse(body) as { clientAuthorized: boolean; clientCN: string }) }));
    s.on('error', reject);
  });
}

t.test('OpenSSL (node:tls) accepts them both ways, from a new CA and from one the earlier code made', async (t) => {
  const fixture = join(import.meta.dirname, 'fixtures', 'pki-peculiar');
  const old = { pem: readFileSync(join(fixture, 'ca.crt'), 'utf8'), key: createPrivateKey(readFileSync(join(fixture, 'ca.key'), 'utf8')) };
  const fresh = await ca();
  for (const [name, c] of [['new CA', { pem: fresh.pem, key: fresh.key }], ['@peculiar/x509 CA', old]] as const) {
    const certDer = new X509Certificate(c.pem).raw;
    const now = Date.now();
    const mk = async (usage: 'server' | 'client', cn: string, hosts?: string[]) => {
      const keys = await newKeyPair();
      const der = await makeCert({ subject: [['CN', cn]], issuer: { certDer, key: c.key }, keys, notBefore: new Date(now - 60_000), notAfter: new Date(now + DAY), usage, hosts });
      return { cert: certPem(der), key: keyPem(keys.privateKey) };
    };
    const r = await handshake(t, c.pem, await mk('server', 'srv', ['localhost', '127.0.0.1']), await mk('client', 'me'));
    t.ok(r.authorized, `${name}: the client verified the server's chain and name`);
    t.equal(r.peerCN, 'srv', name);
    t.ok(r.clientAuthorized, `${name}: the server verified the client's certificate`);
    t.equal(r.clientCN, 'me', name);
    if (name !== 'new CA') t.ok(subjectKeyId(certDer), 'the old CA has a subject key identifier the leaves name');
  }
  // a client certificate from another CA is refused by the server
  const other = await ca();
  const keys = await newKeyPair();
  const now = Date.now();
  const srvKeys = await newKeyPair();
  const srv = { cert: certPem(await makeCert({ subject: [['CN', 'srv']], issuer: { certDer: fresh.der, key: fresh.key }, keys: srvKeys, notBefore: new Date(now - 60_000), notAfter: new Date(now + DAY), usage: 'server', hosts: ['localhost'] })), key: keyPem(srvKeys.privateKey) };
  const foreign = { cert: certPem(await makeCert({ subject: [['CN', 'x']], issuer: { certDer: other.der, key: other.key }, keys, notBefore: new Date(now - 60_000), notAfter: new Date(now + DAY), usage: 'client' })), key: keyPem(keys.privateKey) };
  const r = await handshake(t, fresh.pem, srv, foreign);
  t.ok(r.authorized, 'the server is still fine');
  t.notOk(r.clientAuthorized, 'a client certificate from another CA does not verify');
});
