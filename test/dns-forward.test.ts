/**
 * Forwarding to an upstream resolver (only ever a loopback one here): the upstream is a second
 * kubeloop DnsServer serving another zone from its own store.
 */
import t from 'tap';
import dgram from 'node:dgram';
import type { Service } from '../src/api/types.js';
import { ask, endpoints, service, startDns, waitFor } from './dns-helpers.js';

t.test('out-of-zone names go to the upstream; ExternalName targets are chased through it', async (t) => {
  const up = await startDns(t, { zone: 'example.test' });
  const web = await up.store.create<Service>(service('default', 'web', { ports: [{ name: 'http', port: 80 }] }));
  const webIP = web.spec!.clusterIP!;
  await up.store.create(service('default', 'big', { clusterIP: 'None', ports: [{ name: 'http', port: 80 }] }));
  const addresses = Array.from({ length: 60 }, (_, i) => ({ ip: `127.244.3.${i + 1}` }));
  await up.store.create(endpoints('default', 'big', [{ addresses, ports: [{ name: 'http', port: 80 }] }]));
  const main = await startDns(t, { upstream: `127.0.0.1:${up.port}` });
  await main.store.create(service('default', 'ext', { type: 'ExternalName', externalName: 'web.default.svc.example.test' }));
  const target = 'web.default.svc.example.test';
  await waitFor(async () => (await ask(up.port, target, 'A')).rcode === 'NOERROR', 2000, 'upstream data');
  await waitFor(async () => (await ask(main.port, 'ext.default.svc.cluster.local', 'A')).answer.length === 2, 2000, 'chase');

  const fwd = await ask(main.port, target, 'A', { id: 4321 });
  t.equal(fwd.id, 4321, 'client ID restored');
  t.equal(fwd.rcode, 'NOERROR');
  t.same(fwd.answer, [`${target} 5 A ${webIP}`]);
  t.same((await ask(main.port, target, 'A', { tcp: true })).answer, [`${target} 5 A ${webIP}`], 'over TCP');
  t.equal((await ask(main.port, 'nope.default.svc.example.test', 'A')).rcode, 'NXDOMAIN', 'upstream rcode relayed');
  const own = await ask(main.port, 'dns-version.cluster.local', 'TXT');
  t.equal(own.ra, true, 'recursion available when forwarding');

  const chased = await ask(main.port, 'ext.default.svc.cluster.local', 'A');
  t.same(chased.answer, ['ext.default.svc.cluster.local 5 CNAME web.default.svc.example.test', `${target} 5 A ${webIP}`]);
  t.equal(chased.aa, true);

  const big = 'big.default.svc.example.test';
  t.equal((await ask(main.port, big, 'A')).tc, true, 'too big for 512 bytes: TC to the UDP client');
  t.equal((await ask(main.port, big, 'A', { tcp: true })).answer.length, 60, 'TCP client: retried upstream over TCP');
  t.equal((await ask(main.port, big, 'A', { edns: 4096 })).answer.length, 60, 'EDNS client: the size is passed on');
});

t.test('a dead upstream costs a SERVFAIL (or the bare CNAME), nothing else', async (t) => {
  // a bound UDP port that never answers: queries to it time out
  const black = dgram.createSocket('udp4');
  await new Promise<void>((r) => black.bind(0, '127.0.0.1', r));
  t.teardown(() => black.close());
  const main = await startDns(t, { upstream: `127.0.0.1:${black.address().port}` });
  await main.store.create(service('default', 'ext', { type: 'ExternalName', externalName: 'www.example.com' }));
  const [fwd, chased] = await Promise.all([
    ask(main.port, 'www.example.com', 'A', { timeoutMs: 5000 }),
    waitFor(async () => (await ask(main.port, 'ext.default.svc.cluster.local', 'CNAME')).rcode === 'NOERROR', 2000, 'ext').then(() =>
      ask(main.port, 'ext.default.svc.cluster.local', 'A', { timeoutMs: 5000 }),
    ),
  ]);
  t.equal(fwd.rcode, 'SERVFAIL');
  t.same(chased.answer, ['ext.default.svc.cluster.local 5 CNAME www.example.com'], 'the CNAME alone');
  t.equal((await ask(main.port, 'dns-version.cluster.local', 'TXT')).rcode, 'NOERROR', 'the zone is still served');
});

t.test('upstream option is validated', async (t) => {
  await t.rejects(startDns(t, { upstream: 'not-an-address' }), { message: /invalid DNS upstream "not-an-address"/ });
});
