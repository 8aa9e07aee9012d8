// The proxy's TCP cases, run once per data path: test/proxy.test.ts (auto: the libuv path where
// it loads cleanly) and test/proxy-net.test.ts (net), each on addresses of its own.
import net from 'node:net';
import os from 'node:os';
import t from 'tap';
import type { Mutable, Service } from '../src/api/types.js';
import {
  connect,
  createService,
  harness,
  setEndpoints,
  stopBackend,
  subsetsOf,
  tcpBackend,
  waitFor,
  whoAnswers,
} from './proxy-helpers.js';
import type { Harness, Tap } from './proxy-helpers.js';
import { type DataPathPreference, proxyMetrics } from '../src/agent/proxy/index.js';

export interface ProxyCasesOptions {
  dataPath: DataPathPreference;
  /** third octet of every address the cases use (127.0.<subnet>.x, 127.96.<subnet>.x) */
  subnet: number;
  /** names of cases to leave out (those that do not touch the data path) */
  skip?: readonly string[];
}

export function proxyCases(o: ProxyCasesOptions): void {
  const { dataPath, subnet } = o;
  const skip = new Set(o.skip);
  const test = ((name: string, fn: never) => (skip.has(name) ? undefined : t.test(name, fn))) as unknown as typeof t.test;

  // addresses private to the calling file (tap runs test files in parallel): 127.0.<subnet>.x, 127.96.<subnet>.x
  const CIDR = `127.96.${subnet}.0/24`;
  const NODE = `127.0.${subnet}.254`;
  const opts = { serviceCidr: CIDR, nodeAddress: NODE, dataPath };
  const B = (i: number): string => `127.0.${subnet}.${i}`;

  async function freePort(host: string): Promise<number> {
    const s = net.createServer();
    await new Promise<void>((r) => s.listen({ host, port: 0 }, () => r()));
    const port = (s.address() as net.AddressInfo).port;
    await new Promise<void>((r) => s.close(() => r()));
    return port;
  }

  const tcp = (name: string, port: number) => ({ name, port, protocol: 'TCP' as const, targetPort: port });

  /** A harness with backends b1…bN (greeting + echo) behind Service default/web, port `http` 8080. */
  async function webService(t: Parameters<typeof harness>[0], n: number) {
    const h = await harness(t, opts);
    const bs = await Promise.all(Array.from({ length: n }, (_, i) => tcpBackend(t, B(i + 1), `b${i + 1}`)));
    const svc = await createService(h.store, 'web', { ports: [tcp('http', 8080)] });
    await setEndpoints(h.store, 'web', subsetsOf(bs, 'http'));
    await h.proxy.synced();
    return { h, bs, ip: svc.spec!.clusterIP! };
  }

  test('round robin over three backends through clusterIP and nodePort, one balancer', async (t) => {
    const h = await harness(t, opts);
    const bs = await Promise.all([1, 2, 3].map((i) => tcpBackend(t, B(i), `b${i}`)));
    const svc = await createService(h.store, 'web', { type: 'NodePort', ports: [tcp('http', 8080)] });
    await setEndpoints(h.store, 'web', subsetsOf(bs, 'http'));
    await h.proxy.synced();
    const ip = svc.spec!.clusterIP!;
    const nodePort = svc.spec!.ports![0]!.nodePort!;
    if (dataPath !== 'auto') t.equal(h.proxy.dataPath.path, dataPath, `the ${dataPath} data path serves`);
    t.equal(h.lines.filter((l) => /^proxy data path: /.test(String(l.msg))).length, 1, 'the data path is logged once, with its reason');
    const pm = proxyMetrics(h.proxy, { processMetrics: false });
    const text = await pm.registry.metrics();
    pm.stop();
    const used = h.proxy.dataPath.path;
    const other = used === 'uv' ? 'net' : 'uv';
    t.match(text, new RegExp(`^kubeloop_proxy_data_path\\{path="${used}"\\} 1$`, 'm'), `/metrics: kubeloop_proxy_data_path{path="${used}"} 1`);
    t.match(text, new RegExp(`^kubeloop_proxy_data_path\\{path="${other}"\\} 0$`, 'm'), `/metrics: kubeloop_proxy_data_path{path="${other}"} 0`);

    const ls = h.proxy.listeners().map((l) => `${l.kind} ${l.svc}:${l.port} ${l.protocol} ${l.address}:${l.portNumber}`);
    t.same(ls.sort(), [`clusterIP default/web:http TCP ${ip}:8080`, `nodePort default/web:http TCP ${NODE}:${nodePort}`]);

    const seq: string[] = [];
    for (let i = 0; i < 6; i++) seq.push(await whoAnswers(ip, 8080));
    t.equal(new Set(seq.slice(0, 3)).size, 3, 'three connections reach three backends');
    t.same(seq.slice(3), seq.slice(0, 3), 'and the rotation repeats');
    const viaNode: string[] = [];
    for (let i = 0; i < 3; i++) viaNode.push(await whoAnswers(NODE, nodePort));
    t.same(viaNode, seq.slice(0, 3), 'the nodePort portal continues the same rotation');
  });

  test('a removed endpoint gets no new connections; an established one keeps working', async (t) => {
    const { h, bs, ip } = await webService(t, 3);

    const held = connect(ip, 8080);
    const [who] = await held.lines(1);
    const gone = bs.find((b) => b.name === who)!;
    t.ok(gone, `the held connection reached a backend (${who})`);
    await setEndpoints(h.store, 'web', subsetsOf(bs.filter((b) => b !== gone), 'http'));
    await h.proxy.synced();

    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add(await whoAnswers(ip, 8080));
    t.notOk(seen.has(gone.name), 'no new connection reaches the removed endpoint');
    t.equal(seen.size, 2);

    held.socket.write('still there\n');
    const lines = await held.lines(2);
    t.equal(lines[1], 'still there', 'the established connection drains normally');
    held.socket.end();
    const end = await held.done;
    t.equal(end.error, undefined);
    t.match(end.data, `bye ${gone.name}`);
  });

  test('a deleted service stops accepting; its open connections drain until stop() ends them', async (t) => {
    const h = await harness(t, opts);
    const b = await tcpBackend(t, B(1), 'b1');
    const svc = await createService(h.store, 'web', { ports: [tcp('http', 8080)] });
    await setEndpoints(h.store, 'web', subsetsOf([b], 'http'));
    await h.proxy.synced();
    const ip = svc.spec!.clusterIP!;
    const held = connect(ip, 8080);
    await held.lines(1);
    await h.store.delete('Service', 'default', 'web');
    await h.proxy.synced();
    t.same(h.proxy.listeners(), [], 'the listener is gone');
    t.equal((await connect(ip, 8080).done).error, 'ECONNREFUSED', 'new connections are refused');
    held.socket.write('draining\n');
    t.equal((await held.lines(2))[1], 'draining', 'the open connection still works');
    await h.proxy.stop();
    await held.ended;
    t.ok(held.socket.readableEnded || held.socket.destroyed, 'stop() ended the draining connection');
    held.socket.destroy();
    await waitFor(() => b.sockets.size === 0, 'the backend side to close');
  });

  test('no endpoints or only dead ones: the client is closed at once, other services still work', async (t) => {
    const h = await harness(t, opts);
    const live = await tcpBackend(t, B(1), 'live');
    const deadPorts = await Promise.all([2, 3].map((i) => freePort(B(i))));
    const empty = await createService(h.store, 'empty', { ports: [tcp('http', 8080)] });
    const dead = await createService(h.store, 'dead', { ports: [tcp('http', 8080)] });
    const ok = await createService(h.store, 'ok', { ports: [tcp('http', 8080)] });
    await setEndpoints(h.store, 'dead', subsetsOf([{ host: B(2), port: deadPorts[0]! }, { host: B(3), port: deadPorts[1]! }], 'http'));
    await setEndpoints(h.store, 'ok', subsetsOf([live], 'http'));
    await h.proxy.synced();

    const r1 = await connect(empty.spec!.clusterIP!, 8080).done;
    t.equal(r1.data, '', 'nothing is served without endpoints');
    t.equal(r1.error, 'ECONNRESET', 'the client sees a reset');
    const r2 = await connect(dead.spec!.clusterIP!, 8080).done;
    t.equal(r2.data, '');
    t.equal(r2.error, 'ECONNRESET', 'every dial failed: reset');
    t.equal(await whoAnswers(ok.spec!.clusterIP!, 8080), 'live', 'another service is unaffected');
    const failed = h.proxy.listeners().find((l) => l.svc === 'default/dead')!;
    t.equal(failed.counters.failed, 1, 'the failure is counted');
    t.ok(
      h.lines.some((l) => l.level === 20 && l.svc === 'default/dead' && /every endpoint dial failed/.test(String(l.msg))),
      'logged at debug with the service key',
    );
  });

  test('a dead endpoint is skipped by the dial retry', async (t) => {
    const h = await harness(t, opts);
    const bs = await Promise.all([1, 2].map((i) => tcpBackend(t, B(i), `b${i}`)));
    const deadPort = await freePort(B(3));
    const svc = await createService(h.store, 'web', { ports: [tcp('http', 8080)] });
    await setEndpoints(h.store, 'web', subsetsOf([...bs, { host: B(3), port: deadPort }], 'http'));
    await h.proxy.synced();
    const answers: string[] = [];
    for (let i = 0; i < 6; i++) answers.push(await whoAnswers(svc.spec!.clusterIP!, 8080));
    t.same([...new Set(answers)].sort(), ['b1', 'b2'], 'every connection is answered by a live backend');
  });

  test('half-close: the client stops writing, the backend still answers, then closes', async (t) => {
    const h = await harness(t, opts);
    const b = await tcpBackend(t, B(1), 'b1');
    const svc = await createService(h.store, 'web', { ports: [tcp('http', 8080)] });
    await setEndpoints(h.store, 'web', subsetsOf([b], 'http'));
    await h.proxy.synced();
    const c = connect(svc.spec!.clusterIP!, 8080);
    await c.lines(1);
    c.socket.end('hello\n');
    const r = await c.done;
    t.equal(r.error, undefined, 'no reset');
    t.equal(r.data, 'b1\nhello\nbye b1\n', 'data sent after the client FIN arrives, then the backend FIN');
    await waitFor(() => h.proxy.listeners()[0]?.active === 0 && b.sockets.size === 0, 'both sides closed');
    t.equal(h.proxy.listeners()[0]!.counters.bytesIn, 'hello\n'.length, 'bytes counted client → backend');
  });

  test('many connections leave no socket behind; a client reset reaches the backend', async (t) => {
    const { h, bs, ip } = await webService(t, 2);
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => {
        const c = connect(ip, 8080);
        c.socket.end(`m${i}\n`);
        return c.done;
      }),
    );
    t.ok(
      results.every((r, i) => r.error === undefined && new RegExp(`^b\\d\\nm${i}\\nbye b\\d\\n$`).test(r.data)),
      'forty concurrent half-closed exchanges complete',
    );
    const listener = () => h.proxy.listeners()[0]!;
    await waitFor(() => listener().active === 0 && bs.every((b) => b.sockets.size === 0), 'every socket closed');
    t.equal(listener().counters.accepted, 40);

    const c = connect(ip, 8080);
    await c.lines(1);
    t.equal(listener().active, 1);
    c.socket.resetAndDestroy();
    await waitFor(() => listener().active === 0 && bs.every((b) => b.sockets.size === 0), 'the reset to propagate');
    t.pass('the backend side closed after the client reset');
  });

  test('ClientIP affinity pins each client address to one backend, until that backend fails', async (t) => {
    const h = await harness(t, opts);
    const bs = await Promise.all([1, 2, 3].map((i) => tcpBackend(t, B(i), `b${i}`)));
    const svc = await createService(h.store, 'web', {
      ports: [tcp('http', 8080)],
      sessionAffinity: 'ClientIP',
      sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } },
    });
    await setEndpoints(h.store, 'web', subsetsOf(bs, 'http'));
    await h.proxy.synced();
    const ip = svc.spec!.clusterIP!;
    const clients = [B(101), B(102), B(103)];
    const pinned = new Map<string, string>();
    for (let round = 0; round < 3; round++) {
      for (const c of clients) {
        const who = await whoAnswers(ip, 8080, c);
        if (round === 0) pinned.set(c, who);
        else t.equal(who, pinned.get(c), `${c} stays on ${pinned.get(c)}`);
      }
    }
    t.equal(new Set(pinned.values()).size, 3, 'three new clients were spread round robin');

    const first = bs.find((b) => b.name === pinned.get(clients[0]!))!;
    await stopBackend(first);
    const moved = await whoAnswers(ip, 8080, clients[0]);
    t.not(moved, first.name, 'a failed dial re-pins the client elsewhere');
    t.equal(await whoAnswers(ip, 8080, clients[0]), moved, 'and the new pin holds');
  });

  test('a port already taken fails only that listener, is reported, and is retried', async (t) => {
    const h = await harness(t, { ...opts, bindRetryIntervalMs: 100 });
    const squatter = net.createServer();
    await new Promise<void>((r) => squatter.listen({ host: `127.96.${subnet}.200`, port: 8081 }, () => r()));
    t.teardown(() => new Promise<void>((r) => (squatter.listening ? squatter.close(() => r()) : r())));
    const b = await tcpBackend(t, B(1), 'b1');
    await createService(h.store, 'taken', { clusterIP: `127.96.${subnet}.200`, ports: [tcp('http', 8081)] });
    const free = await createService(h.store, 'free', { ports: [tcp('http', 8080)] });
    await setEndpoints(h.store, 'taken', subsetsOf([b], 'http'));
    await setEndpoints(h.store, 'free', subsetsOf([b], 'http'));
    await h.proxy.synced();

    t.equal(h.errors.length, 1, 'the error callback fired once');
    t.match(h.errors[0], { svc: 'default/taken', address: `127.96.${subnet}.200`, port: 8081 });
    t.match(h.errors[0]!.err.message, /port in use: stop the other process or choose another port/);
    const warn = h.lines.filter((l) => l.level === 40 && l.svc === 'default/taken');
    t.equal(warn.length, 1, 'one log line');
    t.match(String(warn[0]?.msg), new RegExp(`127\\.96\\.${subnet}\\.200:8081`));
    t.same(h.proxy.listenerErrors().map((e) => [e.svc, e.code]), [['default/taken', 'EADDRINUSE']]);
    t.equal(await whoAnswers(free.spec!.clusterIP!, 8080), 'b1', 'the other service works');

    await new Promise<void>((r) => squatter.close(() => r()));
    await waitFor(() => h.proxy.listeners().some((l) => l.svc === 'default/taken'), 'the retry to succeed');
    t.equal(await whoAnswers(`127.96.${subnet}.200`, 8081), 'b1', 'served once the port is free');
    t.equal(h.errors.length, 1, 'failed retries were not reported again');
    t.same(h.proxy.listenerErrors(), []);
  });

  test('a service update reopens only its changed portals; other connections survive', async (t) => {
    const h = await harness(t, opts);
    const b = await tcpBackend(t, B(1), 'b1');
    const a = await createService(h.store, 'a', { ports: [tcp('http', 8080), tcp('admin', 9090)] });
    const other = await createService(h.store, 'other', { ports: [tcp('http', 8080)] });
    await setEndpoints(h.store, 'a', [
      { addresses: [{ ip: b.host }], ports: [{ name: 'http', port: b.port }, { name: 'admin', port: b.port }] },
    ]);
    await setEndpoints(h.store, 'other', subsetsOf([b], 'http'));
    await h.proxy.synced();

    const heldOther = connect(other.spec!.clusterIP!, 8080);
    const heldAdmin = connect(a.spec!.clusterIP!, 9090);
    await heldOther.lines(1);
    await heldAdmin.lines(1);

    const updated: Service = structuredClone(a);
    updated.spec!.ports = [tcp('http', 8088), tcp('admin', 9090)];
    await h.store.update(updated);
    await h.proxy.synced();

    const aIP = a.spec!.clusterIP!;
    t.equal(await whoAnswers(aIP, 8088), 'b1', 'the new port is served');
    t.equal((await connect(aIP, 8080).done).error, 'ECONNREFUSED', 'the old port is closed');
    const admin = h.proxy.listeners().find((l) => l.svc === 'default/a' && l.port === 'admin')!;
    t.equal(admin.counters.accepted, 1, 'the unchanged portal of the same service is the same listener');
    const o = h.proxy.listeners().find((l) => l.svc === 'default/other')!;
    t.equal(o.counters.accepted, 1, 'the other service keeps its listener');
    t.equal(o.active, 1);

    for (const held of [heldOther, heldAdmin]) {
      held.socket.write('ping\n');
      t.same((await held.lines(2))[1], 'ping', 'an established connection keeps working');
      held.socket.destroy();
    }
  });

  test('headless and ExternalName services get no listener; LB ingress IPs are served when local', async (t) => {
    // documentation addresses that are not this machine's (never bound, never dialled)
    const local = new Set(Object.values(os.networkInterfaces()).flatMap((l) => (l ?? []).map((a) => a.address)));
    const [far1, far2] = ['198.51.100.7', '203.0.113.7', '192.0.2.77', '198.51.100.8'].filter((a) => !local.has(a));
    const h = await harness(t, opts);
    const b = await tcpBackend(t, B(1), 'b1');
    await createService(h.store, 'headless', { clusterIP: 'None', ports: [tcp('http', 8080)] });
    await createService(h.store, 'ext', { type: 'ExternalName', externalName: 'example.com' });
    const svc = await createService(h.store, 'web', {
      type: 'LoadBalancer',
      ports: [tcp('http', 8080)],
      // the store rejects loopback externalIPs
      externalIPs: [far1!],
    });
    await setEndpoints(h.store, 'web', subsetsOf([b], 'http'));
    await setEndpoints(h.store, 'headless', subsetsOf([b], 'http'));
    const withStatus: Mutable<Service> = structuredClone(svc);
    withStatus.status = { loadBalancer: { ingress: [{ ip: B(200) }, { ip: far2! }, { hostname: 'lb.example' }] } };
    await h.store.update(withStatus, { subresource: 'status' });
    await h.proxy.synced();
    t.same(
      h.proxy
        .listeners()
        .map((l) => `${l.svc} ${l.kind} ${l.address}`)
        .sort(),
      [
        `default/web clusterIP ${svc.spec!.clusterIP}`,
        `default/web loadBalancer ${B(200)}`,
        `default/web nodePort ${NODE}`,
      ],
    );
    t.equal(await whoAnswers(B(200), 8080), 'b1', 'served on the load-balancer IP');
    t.ok(
      h.lines.some((l) => l.svc === 'default/web' && JSON.stringify(l.addresses) === JSON.stringify([far2, far1])),
      'the addresses that are not local are reported',
    );
    t.same(h.errors, [], 'and are not errors');
  });

  test('stop() closes every listener and ends open connections', async (t) => {
    const h = await harness(t, opts);
    const b = await tcpBackend(t, B(1), 'b1');
    const svc = await createService(h.store, 'web', { type: 'NodePort', ports: [tcp('http', 8080)] });
    await setEndpoints(h.store, 'web', subsetsOf([b], 'http'));
    await h.proxy.synced();
    const held = connect(svc.spec!.clusterIP!, 8080);
    await held.lines(1);
    await h.proxy.stop();
    t.same(h.proxy.listeners(), []);
    await held.ended;
    t.ok(held.socket.readableEnded || held.socket.destroyed, 'the open connection was ended');
    held.socket.destroy();
    t.equal((await connect(svc.spec!.clusterIP!, 8080).done).error, 'ECONNREFUSED', 'clusterIP refused');
    t.equal((await connect(NODE, svc.spec!.ports![0]!.nodePort!).done).error, 'ECONNREFUSED', 'nodePort refused');
    await waitFor(() => b.sockets.size === 0, 'the backend side closed too');
    await h.proxy.stop();
    t.pass('stop is idempotent');
  });

  test('bulk both ways, with a slow reader: every byte arrives in order, and the proxy lets go of it', async (t) => {
    const { h, ip } = await webService(t, 2);
    const SIZE = 24 * 1024 * 1024;
    // deterministic, incompressible-looking payloads, a different one per stream
    const payload = (seed: number): Buffer => {
      const b = Buffer.allocUnsafe(SIZE);
      let x = seed * 2654435761;
      for (let i = 0; i < SIZE; i += 4) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        b.writeInt32LE(x | 0, i);
      }
      return b;
    };
    const stream = (seed: number) =>
      new Promise<{ ok: boolean; got: number; err?: string }>((resolve) => {
        const data = payload(seed);
        const chunks: Buffer[] = [];
        let got = 0;
        let nextPause = 4 * 1024 * 1024;
        const s = net.connect({ host: ip, port: 8080, allowHalfOpen: true });
        s.on('error', (e: NodeJS.ErrnoException) => resolve({ ok: false, got, err: e.code ?? e.message }));
        s.on('data', (d: Buffer) => {
          chunks.push(d);
          got += d.length;
          if (got >= nextPause) {
            // the reader stalls: the proxy's writes to it stay pending and it must stop reading the backend
            nextPause += 4 * 1024 * 1024;
            s.pause();
            setTimeout(() => s.resume(), 60);
          }
        });
        s.on('end', () => {
          const all = Buffer.concat(chunks);
          const head = all.subarray(0, 3).toString();
          const body = all.subarray(3, 3 + SIZE);
          const tail = all.subarray(3 + SIZE).toString();
          resolve({ ok: /^b\d\n$/.test(head) && body.equals(data) && /^bye b\d\n$/.test(tail), got });
          s.end();
        });
        s.end(data);
      });
    const results = await Promise.all([1, 2, 3, 4].map(stream));
    for (const [i, r] of results.entries()) t.ok(r.ok, `stream ${i + 1}: ${SIZE} bytes echoed intact (${r.got} received${r.err ? `, ${r.err}` : ''})`);
    const l = () => h.proxy.listeners()[0]!;
    await waitFor(() => l().active === 0, 'every connection closed');
    t.equal(l().counters.bytesIn, 4 * SIZE, 'client → backend bytes counted');
    t.equal(l().counters.bytesOut, 4 * (SIZE + 3 + 7), 'backend → client bytes counted');
  });

  /**
   * A backend of our own on B(1) behind Service `web` (port 8080): `onPeer` gets each connection;
   * the peers are tracked and destroyed at teardown. Resolves with the ClusterIP and the peers.
   */
  async function ownBackend(
    t: Tap,
    h: Harness,
    onPeer: (s: net.Socket) => void,
    serverOpts: net.ServerOpts = {},
  ): Promise<{ ip: string; peers: Set<net.Socket> }> {
    const peers = new Set<net.Socket>();
    const server = net.createServer(serverOpts, (s) => {
      peers.add(s);
      s.on('error', () => {});
      s.on('close', () => peers.delete(s));
      onPeer(s);
    });
    await new Promise<void>((r) => server.listen({ host: B(1), port: 0 }, () => r()));
    t.teardown(() => {
      for (const s of peers) s.destroy();
      server.close();
    });
    const port = (server.address() as net.AddressInfo).port;
    const svc = await createService(h.store, 'web', { ports: [tcp('http', 8080)] });
    await setEndpoints(h.store, 'web', [{ addresses: [{ ip: B(1) }], ports: [{ name: 'http', port, protocol: 'TCP' }] }]);
    await h.proxy.synced();
    return { ip: svc.spec!.clusterIP!, peers };
  }

  test('many small messages to a stalled reader: the bytes of pending writes are never overwritten', async (t) => {
    // Small reads are copied into a buffer kept per length and used again once its write is done;
    // a write that stays pending must keep its bytes while other connections read the same lengths.
    const h = await harness(t, opts);
    const records = (seed: number): Buffer[] =>
      Array.from({ length: 40_000 }, (_, i) => {
        const len = 17 + ((i * 7 + seed * 13) % 400); // many distinct lengths, each seen often
        const b = Buffer.alloc(len, 0x61 + ((i + seed) % 26));
        b.writeUInt32BE(i, 0);
        b.writeUInt32BE(seed, 4);
        return b;
      });
    const { ip } = await ownBackend(t, h, (s) => {
      s.once('data', async (d) => {
        // one record per write, yielding after each, so most reach the proxy as separate small reads
        const recs = records(d[0]!);
        for (const rec of recs) {
          s.write(rec);
          await new Promise((r) => setImmediate(r));
        }
        s.end();
      });
    });
    const read = (seed: number, stallMs: number) =>
      new Promise<Buffer>((resolve, reject) => {
        const chunks: Buffer[] = [];
        const s = net.connect({ host: ip, port: 8080 });
        s.on('error', reject);
        s.on('data', (d: Buffer) => {
          chunks.push(d);
          if (chunks.length === 1) {
            // stall: the proxy's writes to us pile up and stay pending
            s.pause();
            setTimeout(() => s.resume(), stallMs);
          }
        });
        s.on('end', () => resolve(Buffer.concat(chunks)));
        s.write(Buffer.from([seed]));
      });
    const got = await Promise.all([read(1, 1500), read(2, 0), read(3, 1000)]);
    for (const [i, b] of got.entries()) t.ok(b.equals(Buffer.concat(records(i + 1))), `stream ${i + 1}: ${b.length} bytes in order and intact`);
  });

  test('half-closed connections are ended too: by stop(), and by a reset from the side still open', async (t) => {
    const h = await harness(t, opts);
    // a backend that greets and then ignores the client's FIN: the connection stays half-open
    const { ip, peers } = await ownBackend(t, h, (s) => s.write('hi\n'), { allowHalfOpen: true });
    const l = () => h.proxy.listeners()[0]!;

    // 1: the client half-closes, then the backend resets: the client gets the reset, nothing is left
    const a = connect(ip, 8080);
    await a.lines(1);
    a.socket.end();
    await waitFor(() => peers.size === 1 && [...peers][0]!.readableEnded, 'the FIN reached the backend');
    [...peers][0]!.resetAndDestroy();
    const ra = await a.done;
    t.equal(ra.error, 'ECONNRESET', 'the reset is passed on to the half-closed client');
    await waitFor(() => l().active === 0, 'the proxy let go of the connection');

    // 2: half-closed connections are ended by stop()
    const held = [connect(ip, 8080), connect(ip, 8080)];
    for (const c of held) await c.lines(1);
    for (const c of held) c.socket.end();
    await waitFor(() => peers.size === 2 && [...peers].every((s) => s.readableEnded), 'both FINs reached the backend');
    t.equal(l().active, 2, 'two half-closed connections open');
    const stopped = h.proxy.stop().then(() => 'stopped');
    const r = await Promise.race([stopped, new Promise((res) => setTimeout(() => res('timeout'), 3000))]);
    t.equal(r, 'stopped', 'stop() resolves with half-closed connections open');
    const ends = await Promise.all(held.map((c) => c.done));
    t.ok(ends.every((e) => e.data === 'hi\n'), 'and the half-closed clients see their connections end');
  });
}
