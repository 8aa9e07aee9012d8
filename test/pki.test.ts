/**
 * The cluster PKI (cli/pki.ts): made once, reused across restarts, the serving certificate
 * remade when its SANs change, and the CA never remade behind the user's back.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import { ensurePki } from '../src/cli/pki.js';

const log = pino({ level: 'silent' });

t.test('made once, reused, serving certificate follows the SANs, CA kept', async (t) => {
  const dir = join(mkdtempSync(join(tmpdir(), 'kubeloop-pki-')), 'pki');
  t.teardown(() => rmSync(join(dir, '..'), { recursive: true, force: true }));
  const hosts = ['127.0.0.1', 'localhost', '::1'];
  const a = await ensurePki({ dir, hosts, log });
  t.equal(statSync(dir).mode & 0o777, 0o700, 'pki dir 0700');
  for (const f of ['ca.crt', 'ca.key', 'apiserver.crt', 'apiserver.key', 'admin.crt', 'admin.key']) t.equal(statSync(join(dir, f)).mode & 0o777, 0o600, `${f} 0600`);

  const ca = new X509Certificate(a.ca);
  t.ok(ca.ca, 'the CA is a CA');
  const server = new X509Certificate(a.serverCert);
  t.ok(server.checkIssued(ca) && server.verify(ca.publicKey), 'serving certificate signed by the CA');
  t.same(server.subjectAltName?.split(', ').sort(), ['DNS:localhost', 'IP Address:0:0:0:0:0:0:0:1', 'IP Address:127.0.0.1']);
  t.equal(server.publicKey.asymmetricKeyType, 'ec');
  const client = new X509Certificate(a.clientCert);
  t.ok(client.checkIssued(ca) && client.verify(ca.publicKey), 'client certificate signed by the CA');
  t.match(client.subject, /CN=kubeloop-admin/);
  t.match(client.subject, /O=system:masters/);
  t.notOk(client.checkHost('localhost'), 'the client certificate serves no host');

  const b = await ensurePki({ dir, hosts: [...hosts].reverse(), log });
  t.same(b, a, 'a restart with the same SANs (in any order) reuses everything');

  const c = await ensurePki({ dir, hosts: [...hosts, '10.1.2.3', 'devbox'], log });
  t.equal(c.ca, a.ca, 'the CA stays');
  t.equal(c.clientCert, a.clientCert, 'the client certificate stays (kubeconfigs keep working)');
  t.not(c.serverCert, a.serverCert, 'new SANs: a new serving certificate');
  const sans = new X509Certificate(c.serverCert).subjectAltName?.split(', ') ?? [];
  t.ok(sans.includes('DNS:devbox') && sans.includes('IP Address:10.1.2.3'), 'the new SANs are in it');

  unlinkSync(join(dir, 'ca.key'));
  await t.rejects(ensurePki({ dir, hosts, log }), /ca\.crt has no key next to it \(ca\.key\): restore it, or delete .* to make a new CA/);
  t.equal(readFileSync(join(dir, 'ca.crt'), 'utf8'), a.ca, 'the CA certificate was not replaced');
});
