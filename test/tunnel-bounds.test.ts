/**
 * The node tunnel's bounds against floods (agent/tunnel/server.ts), in process on loopback:
 *  - strangers (connections without a node certificate, handshaken or not) are at most 64 at
 *    once: a flood of bare TCP connections is closed down to that, oldest first, and a peer
 *    still gets through; a stranger that finished its handshake gets its 403 and is closed soon;
 *  - pod connections open at once through the tunnel are capped: one more gets 503 with the
 *    reason, and a slot freed is usable again.
 * Addresses: 127.249.0.0/24.
 */
import t from 'tap';
import http2, { type ClientHttp2Session } from 'node:http2';
import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { ensurePki, nodeUser } from '../src/cli/pki.js';
import { TunnelServer, UNAUTHENTICATED_CONNECTIONS } from '../src/agent/tunnel/server.js';
import { waitFor } from './helpers/wait.js';

const TUNNEL_IP = '127.249.0.1';
const POD_IP = '127.249.0.2';
const log = pino({ level: 'silent' });

t.test('tunnel bounds', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-tunnel-bounds-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const pki = await ensurePki({ dir, hosts: ['127.0.0.1'], tunnel: { nodeName: 'peer-a', hosts: [TUNNEL_IP] }, log });
  const tls = { cert: pki.tunnelCert!, key: pki.tunnelKey!, ca: pki.ca };

  // the pod: accepts and holds connections
  const held = new Set<net.Socket>();
  const pod = net.createServer((s) => {
    held.add(s);
    s.on('error', () => {});
    s.once('close', () => held.delete(s));
  });
  await new Promise<void>((r) => pod.listen(0, POD_IP, r));
  t.teardown(() => {
    for (const s of held) s.destroy();
    pod.close();
  });
  const podPort = (pod.address() as net.AddressInfo).port;

  const server = new TunnelServer({
    log,
    address: TUNNEL_IP,
    port: 0,
    tls,
    isPeer: (subject) => subject.CN === nodeUser('peer-a'),
    allow: (ip, port) => ip === POD_IP && port === podPort,
    udpIdleTimeoutMs: 5000,
    maxStreams: 3,
  });
  await server.start();
  t.teardown(() => server.stop());

  const sessions: ClientHttp2Session[] = [];
  t.teardown(() => sessions.forEach((s) => s.destroy()));
  const connect = (withCert: boolean): ClientHttp2Session => {
    const s = http2.connect(`https://${TUNNEL_IP}:${server.port}`, { ca: pki.ca, ...(withCert ? { cert: tls.cert, key: tls.key } : {}), checkServerIdentity: () => undefined });
    s.on('error', () => {});
    sessions.push(s);
    return s;
  };
  const open = (s: ClientHttp2Session): Promise<{ status: number; body: string; stream: http2.ClientHttp2Stream }> =>
    new Promise((resolve, reject) => {
      const stream = s.request({ ':method': 'CONNECT', ':authority': `${POD_IP}:${podPort}` }, { endStream: false });
      stream.on('error', reject);
      stream.once('response', (h) => {
        const status = Number(h[':status']);
        if (status === 200) return resolve({ status, body: '', stream });
        let body = '';
        stream.setEncoding('utf8').on('data', (c: string) => (body += c));
        stream.once('end', () => resolve({ status, body, stream }));
      });
    });

  await t.test('a flood of bare connections is closed down to the strangers cap; a peer still gets through', async (t) => {
    const flood: net.Socket[] = [];
    t.teardown(() => flood.forEach((s) => s.destroy()));
    let closed = 0;
    for (let i = 0; i < 200; i++) {
      const s = net.connect({ host: TUNNEL_IP, port: server.port });
      s.on('error', () => {});
      s.once('close', () => closed++);
      flood.push(s);
    }
    // the handshake timeout (10 s) would close them much later: the cap closes them now
    await waitFor(() => closed >= 200 - UNAUTHENTICATED_CONNECTIONS, { what: `at least ${200 - UNAUTHENTICATED_CONNECTIONS} of 200 bare connections closed (closed ${closed})`, timeoutMs: 3000 });
    t.ok(server.stats.strangersClosed >= 200 - UNAUTHENTICATED_CONNECTIONS, `closed by the cap: ${server.stats.strangersClosed}`);
    const r = await open(connect(true));
    t.equal(r.status, 200, 'a peer with a node certificate dials the pod');
    r.stream.close();
  });

  await t.test('a stranger that finished its handshake gets 403 and is closed', async (t) => {
    const s = connect(false);
    const r = await open(s);
    t.equal(r.status, 403);
    t.match(r.body, /serves other nodes only/);
    await waitFor(() => s.closed || s.destroyed, { what: 'the stranger session closed', timeoutMs: 8000 });
    t.pass('closed');
  });

  await t.test('pod connections over the cap get 503, a freed slot is usable again', async (t) => {
    await waitFor(() => held.size === 0, { what: 'earlier pod connections closed', timeoutMs: 5000 });
    const s = connect(true);
    const ok = await Promise.all([open(s), open(s), open(s)]);
    t.same(ok.map((r) => r.status), [200, 200, 200]);
    const over = await open(s);
    t.equal(over.status, 503);
    t.match(over.body, /has 3 connections to its pods open \(its cap\)/);
    ok[0].stream.close(http2.constants.NGHTTP2_CANCEL);
    const again = await waitFor(async () => {
      const r = await open(s);
      return r.status === 200 ? r : undefined;
    }, { what: 'a slot freed', timeoutMs: 5000 });
    t.equal(again.status, 200);
    for (const r of [...ok, again]) r.stream.close();
  });
});
