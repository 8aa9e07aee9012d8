/**
 * A data-plane worker process (see workers.ts): accepts on listening sockets the proxy passes it
 * and splices connections exactly as the proxy does (the same `TcpListener` and `RoundRobin`),
 * with its own round-robin position per service port. It has no store and no informers: the
 * proxy tells it the endpoints and source ranges, and it reports its totals back.
 *
 *   node --import tsx src/agent/proxy/worker.ts --dial-timeouts 250,500,1000,2000 --log-level info --data-path uv
 *
 * It exits when the proxy asks (`stop`) or when the IPC channel closes (the proxy died), ending
 * its connections either way.
 */
import pino from 'pino';
import { type PortalSpec, withLive } from './portal.js';
import { type Endpoint, RoundRobin } from './round-robin.js';
import { SourceRanges } from './source-ranges.js';
import { TcpListener } from './tcp.js';
import { NetTcpListener } from './tcp-net.js';
import type { TcpPortalListener } from './portal.js';
import { chooseDataPath } from '../../util/uv.js';
import type { FromWorker, ToWorker, WorkerEndpointStats, WorkerListenerStats } from './worker-messages.js';

/** totals go to the proxy this often, when they changed */
const STATS_INTERVAL_MS = 250;

const send = (m: FromWorker): void => {
  if (process.connected) process.send!(m);
};

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const dialTimeoutsMs = (arg('dial-timeouts') ?? '250,500,1000,2000').split(',').map(Number);
// the proxy's path, so the sockets it passes are of the kind this process expects
const TcpImpl = chooseDataPath(arg('data-path') === 'uv' ? 'uv' : 'net').path === 'uv' ? TcpListener : NetTcpListener;
// one JSON line per record, logged again by the proxy (which knows whether to pretty-print)
const log = pino({ level: arg('log-level') ?? 'info', base: { worker: process.pid } }, { write: (line: string) => send({ t: 'log', line }) });

interface Balancer {
  rr: RoundRobin;
  /** listeners (open or draining) using it */
  refs: number;
}

const balancers = new Map<string, Balancer>();
/** open listeners by portal id */
const listeners = new Map<string, TcpPortalListener>();
/** closed listeners whose connections still drain */
const draining = new Set<TcpPortalListener>();

function release(l: TcpPortalListener): void {
  const b = balancers.get(l.spec.servicePort);
  if (b && --b.refs === 0) balancers.delete(l.spec.servicePort);
}

async function listen(spec: PortalSpec, endpoints: Endpoint[], ranges: readonly string[] | undefined, handle: object | undefined): Promise<void> {
  if (!handle) {
    log.warn({ svc: spec.svc, portal: spec.id }, 'listen message came without its socket');
    return;
  }
  let b = balancers.get(spec.servicePort);
  if (!b) balancers.set(spec.servicePort, (b = { rr: new RoundRobin(), refs: 0 }));
  b.rr.setEndpoints(endpoints);
  b.refs++;
  const l: TcpPortalListener = new TcpImpl({
    spec,
    balancer: b.rr,
    dialTimeoutsMs,
    log,
    sourceRanges: ranges ? new SourceRanges(ranges) : undefined,
    onDrained: (x) => {
      if (draining.delete(x as TcpPortalListener)) release(x as TcpPortalListener);
    },
  });
  try {
    await l.open(handle);
  } catch (err) {
    release(l);
    log.warn({ svc: spec.svc, err }, 'cannot accept on the socket passed by the proxy; the proxy keeps serving the portal');
    return;
  }
  await close(spec.id); // a stale copy (cannot happen unless messages crossed)
  listeners.set(spec.id, l);
}

/** Stops accepting on the portal (its connections drain); returns its totals at that moment. */
async function close(id: string): Promise<WorkerListenerStats | undefined> {
  const l = listeners.get(id);
  if (!l) return undefined;
  const final = totals(l);
  listeners.delete(id);
  draining.add(l);
  await l.close();
  if (l.active === 0 && draining.delete(l)) release(l);
  return final;
}

function totals(l: TcpPortalListener): WorkerListenerStats {
  return { id: l.spec.id, active: l.active, counters: withLive(l) };
}

let stopping: Promise<void> | undefined;
function stop(): Promise<void> {
  stopping ??= (async () => {
    clearInterval(statsTimer);
    const all = [...listeners.values(), ...draining];
    listeners.clear();
    draining.clear();
    await Promise.all(all.map((l) => l.destroy()));
  })();
  return stopping;
}

let lastStats = '';
function reportStats(): void {
  const ls = [...listeners.values()].map(totals);
  const eps: WorkerEndpointStats[] = [];
  for (const [servicePort, b] of balancers) {
    for (const e of b.rr.balanced) eps.push({ servicePort, id: e.id, connections: e.connections, failed: e.failed, bytesIn: e.bytesIn, bytesOut: e.bytesOut });
  }
  const m: FromWorker = { t: 'stats', listeners: ls, endpoints: eps };
  const text = JSON.stringify(m);
  if (text === lastStats) return;
  lastStats = text;
  send(m);
}
const statsTimer = setInterval(reportStats, STATS_INTERVAL_MS);
statsTimer.unref();

async function handle(m: ToWorker, h: unknown): Promise<void> {
  switch (m.t) {
    case 'listen':
      return listen(m.spec, m.endpoints, m.ranges, (h ?? undefined) as object | undefined);
    case 'endpoints':
      balancers.get(m.servicePort)?.rr.setEndpoints(m.endpoints);
      return;
    case 'ranges': {
      const l = listeners.get(m.id);
      if (l) l.sourceRanges = m.ranges ? new SourceRanges(m.ranges) : undefined;
      return;
    }
    case 'close': {
      const final = await close(m.id);
      reportStats();
      send({ t: 'ack', seq: m.seq, final });
      return;
    }
    case 'stop':
      await stop();
      send({ t: 'ack', seq: m.seq });
      process.disconnect();
      return;
  }
}

// messages are handled one at a time, in order (a `close` never overtakes its `listen`)
let queue = Promise.resolve();
process.on('message', (m: ToWorker, h: unknown) => {
  queue = queue.then(() => handle(m, h)).catch((err: unknown) => log.error({ err }, 'worker message failed'));
});
// the proxy is gone: end what is open and leave
process.on('disconnect', () => void stop().then(() => process.exit(0)));
process.on('SIGTERM', () => void stop().then(() => process.exit(0)));
// a terminal's Ctrl-C reaches the whole process group: the proxy decides when workers stop
process.on('SIGINT', () => undefined);
if (!process.connected) process.exit(2);
send({ t: 'ready' });
