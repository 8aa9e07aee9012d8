/**
 * `processes > 1`: worker processes accept on the TCP portals too (agent/proxy/workers.ts).
 *
 * How a test knows a worker served a connection: the client runs with `spawnSync`, which blocks
 * this process's event loop (and so the proxy in it) until the client exits. The backends are
 * processes of their own. An answer therefore came through a worker; with no worker sharing the
 * portal, the connection waits in the accept queue and the client times out.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import t from 'tap';
import type { Mutable, Service } from '../src/api/types.js';
import { createService, harness, setEndpoints, waitFor, whoAnswers } from './proxy-helpers.js';
import { alive } from './helpers/procs.js';

const CIDR = '127.96.78.0/24';
const NODE = '127.0.78.254';
const B = (i: number): string => `127.0.78.${i}`;
const BACKEND_PORT = 7801;

/** backend processes b1..bN on 127.0.78.i:7801, each greeting with its name */
async function backends(tt: Parameters<typeof harness>[0], n: number): Promise<Array<{ host: string; port: number }>> {
  // stdin is a lifeline: a backend ends with this test process, even one killed by a timeout
  const src = `const [host, name] = process.argv.slice(1);
    process.stdin.on('end', () => process.exit(0)).resume();
    require('net').createServer((s) => { s.on('error', () => {}); s.end(name + '\\n'); })
      .listen(${BACKEND_PORT}, host, () => process.stdout.write('up\\n'));`;
  const out: Array<{ host: string; port: number }> = [];
  for (let i = 1; i <= n; i++) {
    const p: ChildProcess = spawn(process.execPath, ['-e', src, B(i), `b${i}`], { stdio: ['pipe', 'pipe', 'inherit'] });
    tt.teardown(() => void p.kill('SIGKILL'));
    await new Promise<void>((r, j) => {
      p.stdout!.once('data', () => r());
      p.once('exit', (c) => j(new Error(`backend b${i} exited ${c}`)));
    });
    out.push({ host: B(i), port: BACKEND_PORT });
  }
  return out;
}

/**
 * A client process: connects to every `host:port` given, and after `waitMs` (or once every
 * connection has closed) prints `[{ connected, answer }]` for each, in order.
 */
const CLIENT = `const [waitMs, ...targets] = process.argv.slice(1);
  const out = targets.map(() => ({ connected: false, answer: '' }));
  let open = targets.length;
  const done = () => { process.stdout.write(JSON.stringify(out)); process.exit(0); };
  setTimeout(done, +waitMs);
  targets.forEach((t, i) => {
    const s = require('net').connect(+t.split(':')[1], t.split(':')[0]);
    s.setEncoding('utf8');
    s.on('connect', () => (out[i].connected = true));
    s.on('data', (x) => (out[i].answer += x));
    s.on('error', () => {});
    s.on('close', () => { out[i].answer = out[i].answer.trim(); if (--open === 0) done(); });
  });`;

interface Probe {
  connected: boolean;
  answer: string;
}

/**
 * Connections from another process while this one is blocked, one per target; each result says
 * whether it connected and what answered ('' when nothing did within `waitMs`).
 */
function probeBlocked(targets: Array<[string, number]>, waitMs: number): Probe[] {
  const r = spawnSync(process.execPath, ['-e', CLIENT, String(waitMs), ...targets.map(([h, p]) => `${h}:${p}`)], {
    timeout: waitMs + 10_000,
    encoding: 'utf8',
  });
  try {
    return JSON.parse(r.stdout) as Probe[];
  } catch {
    return targets.map(() => ({ connected: false, answer: '' }));
  }
}

/** One connection while this process is blocked: the greeting, or '' (an answer returns at once) */
function whoAnswersBlocked(host: string, port: number, waitMs = 5000): string {
  return probeBlocked([[host, port]], waitMs)[0]!.answer;
}

const tcp = (name: string, port: number) => ({ name, port, protocol: 'TCP' as const, targetPort: BACKEND_PORT });
const subsets = (bs: Array<{ host: string }>) => bs.map((b) => ({ addresses: [{ ip: b.host }], ports: [{ name: 'http', port: BACKEND_PORT, protocol: 'TCP' as const }] }));

/**
 * The worker is up and accepting once a blocked client gets an answer (attempts counted). The
 * pauses between attempts let this process pass the worker its sockets.
 */
async function untilWorkerServes(host: string, port: number): Promise<{ answer: string; connected: number }> {
  let connected = 0;
  for (let attempts = 1; attempts <= 20; attempts++) {
    await new Promise((r) => setTimeout(r, 100));
    const [p] = probeBlocked([[host, port]], 1000);
    if (p!.connected) connected++;
    if (p!.answer) return { answer: p!.answer, connected };
  }
  return { answer: '', connected };
}

/** A proxy with one worker process, and backends b1..bN behind Service `name`, port `http` = `port`. */
async function withWorker(t: Parameters<typeof harness>[0], n: number, name: string, port: number, dataPath: 'auto' | 'net' = 'auto') {
  const h = await harness(t, { serviceCidr: CIDR, nodeAddress: NODE, processes: 2, dataPath });
  const bs = await backends(t, n);
  const svc = await createService(h.store, name, { ports: [tcp('http', port)] });
  await setEndpoints(h.store, name, subsets(bs));
  await h.proxy.synced();
  return { h, bs, ip: svc.spec!.clusterIP! };
}

// the file blocks its own event loop on purpose (spawnSync) and waits out unanswered probes:
// ~40 s alone, 130–240 s when the suite's other files share the 2 cores
t.setTimeout(480_000);

t.test('a worker process serves the portal while the proxy process is busy, and totals add up', async (t) => {
  const { h, ip } = await withWorker(t, 3, 'web', 8080);
  t.equal(h.proxy.workerPids().length, 1, 'one worker process');

  const first = await untilWorkerServes(ip, 8080);
  t.match(first.answer, /^b[123]$/, 'a connection made while this process is blocked is answered');
  const processes = await waitFor(() => {
    const l = h.proxy.listeners().find((x) => x.kind === 'clusterIP');
    return l?.processes === 2 ? 2 : undefined;
  }, 'the worker reported taking the portal');
  t.equal(processes, 2, 'the listener counts two processes accepting on it');
  const seen = new Set<string>();
  for (let i = 0; i < 9; i++) seen.add(whoAnswersBlocked(ip, 8080));
  t.same([...seen].sort(), ['b1', 'b2', 'b3'], 'the worker balances over every endpoint');

  // every connection made was accepted by one of the two processes (the unanswered ones by this
  // process, once it ran again); the totals the proxy reports include the worker's
  const made = first.connected + 9;
  const accepted = await waitFor(() => {
    const l = h.proxy.listeners().find((x) => x.kind === 'clusterIP');
    return l && l.counters.accepted === made ? l.counters.accepted : undefined;
  }, `${made} accepted connections in the totals`);
  t.equal(accepted, made);
  const byEndpoint = await waitFor(() => {
    const stats = h.proxy.endpointStats().filter((e) => e.svc === 'default/web');
    const sum = stats.reduce((a, e) => a + e.connections, 0);
    return sum >= 9 ? stats : undefined;
  }, 'endpoint totals');
  t.ok(byEndpoint.every((e) => e.connections >= 3), `each endpoint counted its share: ${byEndpoint.map((e) => e.connections).join(' ')}`);
});

t.test('endpoint changes reach the workers; a closed portal is free at once in every process', async (t) => {
  const { h, bs, ip } = await withWorker(t, 2, 'ends', 8081);
  t.ok((await untilWorkerServes(ip, 8081)).answer, 'worker serving');

  await setEndpoints(h.store, 'ends', subsets([bs[1]!]));
  await h.proxy.synced();
  // endpoint updates reach a worker asynchronously: soon, every answer is b2
  const after = await waitFor(async () => {
    await new Promise((r) => setTimeout(r, 50));
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) seen.add(whoAnswersBlocked(ip, 8081));
    return seen.size === 1 && seen.has('b2') ? [...seen] : undefined;
  }, 'only b2 through the worker');
  t.same(after, ['b2'], 'only the remaining endpoint answers through the worker');

  await h.store.delete('Service', 'default', 'ends');
  await h.proxy.synced();
  const s = net.createServer();
  const bound = await new Promise<string>((r) => {
    s.once('error', (e: NodeJS.ErrnoException) => r(e.code ?? e.message));
    s.listen(8081, ip, () => r('bound'));
  });
  if (s.listening) await new Promise((r) => s.close(r));
  t.equal(bound, 'bound', 'the port is released by both processes when the sync returns');
});

t.test('ClientIP affinity keeps a Service in the proxy process; switching it off shares it', async (t) => {
  // a shared portal first, so the worker is known to be up
  const { h, bs, ip: otherIp } = await withWorker(t, 2, 'other', 8083);
  const svc = await createService(h.store, 'sticky', { ports: [tcp('http', 8082)], sessionAffinity: 'ClientIP' });
  await setEndpoints(h.store, 'sticky', subsets(bs));
  await h.proxy.synced();
  const ip = svc.spec!.clusterIP!;
  t.ok((await untilWorkerServes(otherIp, 8083)).answer, 'worker serving');
  // both in one blocked window: the shared Service answering shows the worker was there to answer
  const [sticky, shared] = probeBlocked([[ip, 8082], [otherIp, 8083]], 1500);
  t.ok(shared!.answer, 'while this process is blocked the shared Service answers…');
  t.equal(sticky!.answer, '', '…and the sticky one does not');
  const pinned = new Set<string>();
  for (let i = 0; i < 4; i++) pinned.add(await whoAnswers(ip, 8082));
  t.equal(pinned.size, 1, 'and one client stays on one endpoint');
  const stickyListener = () => h.proxy.listeners().find((x) => x.svc === 'default/sticky' && x.kind === 'clusterIP')!;
  t.equal(stickyListener().processes, 1, 'one process accepts on the sticky Service');

  const cur = structuredClone(await h.store.get<Service>('Service', 'default', 'sticky')) as Mutable<Service>;
  cur.spec!.sessionAffinity = 'None';
  await h.store.update(cur);
  await h.proxy.synced();
  t.ok((await untilWorkerServes(ip, 8082)).answer, 'affinity off: the worker serves it too');
  t.equal(await waitFor(() => (stickyListener().processes === 2 ? 2 : undefined), 'two processes'), 2, 'and two processes are counted');
  const totals = () => {
    const l = h.proxy.listeners().find((x) => x.svc === 'default/sticky' && x.kind === 'clusterIP')!;
    const conns = h.proxy.endpointStats().filter((e) => e.svc === 'default/sticky').reduce((n, e) => n + e.connections, 0);
    return { accepted: l.counters.accepted, conns };
  };
  await new Promise((r) => setTimeout(r, 600)); // the worker's totals have reached the proxy
  const before = totals();

  const again = structuredClone(await h.store.get<Service>('Service', 'default', 'sticky')) as Mutable<Service>;
  again.spec!.sessionAffinity = 'ClientIP';
  await h.store.update(again);
  await h.proxy.synced();
  const [again1, shared1] = probeBlocked([[ip, 8082], [otherIp, 8083]], 1500);
  t.ok(shared1!.answer && !again1!.answer, 'affinity on again: back in the proxy process only');
  t.equal(stickyListener().processes, 1, 'one process counted again when the sync returns');
  // what the worker counted for the portal stays in the totals after it left the worker (and
  // after its balancer for the port went, which it reports within 250 ms)
  await new Promise((r) => setTimeout(r, 600));
  const after = totals();
  // the one blocked probe of the sticky Service since was accepted by this process afterwards
  const plus = again1!.connected ? 1 : 0;
  t.same(after, { accepted: before.accepted + plus, conns: before.conns + plus }, `totals kept the worker's share: ${JSON.stringify(before)} → ${JSON.stringify(after)}`);
  t.ok(before.accepted > 4, `the worker's connections were counted (${before.accepted} accepted)`);
});

t.test('a killed worker is replaced; stop ends the workers and their connections', async (t) => {
  const { h, ip } = await withWorker(t, 1, 'crash', 8084);
  t.ok((await untilWorkerServes(ip, 8084)).answer, 'worker serving');
  const [pid] = h.proxy.workerPids();
  process.kill(pid!, 'SIGKILL');
  t.equal(await whoAnswers(ip, 8084), 'b1', 'the proxy process goes on serving alone');
  const next = await waitFor(() => h.proxy.workerPids().find((p) => p !== pid), 'a new worker', 10_000);
  t.not(next, pid, 'another worker was started');
  t.ok((await untilWorkerServes(ip, 8084)).answer, 'and it serves the portal');

  const pids = h.proxy.workerPids();
  await h.proxy.stop();
  t.ok(pids.every((p) => !alive(p)), 'no worker process is left after stop');
  t.equal(await whoAnswers(ip, 8084), '', 'the port is closed (refused, nothing answers)');
});

t.test('net data path: the listening net.Server is passed to the worker, which serves and balances', async (t) => {
  const { h, ip } = await withWorker(t, 2, 'webnet', 8082, 'net');
  t.equal(h.proxy.dataPath.path, 'net');
  const first = await untilWorkerServes(ip, 8082);
  t.match(first.answer, /^b[12]$/, 'a connection made while this process is blocked is answered by the worker');
  const seen = new Set<string>();
  for (let i = 0; i < 6; i++) seen.add(whoAnswersBlocked(ip, 8082));
  t.same([...seen].sort(), ['b1', 'b2'], 'the worker balances over every endpoint');
});
