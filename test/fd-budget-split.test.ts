/**
 * Issue 14, must-have 3: one descriptor budget. The proxy's listeners and the connection caps
 * (DNS/TCP, API) share one RLIMIT_NOFILE; listeners used to take everything but an eighth of
 * it (64 here), so once they were at their maximum, filling the caps (100 here) ran the daemon
 * out of descriptors: connections under the caps were dropped at accept, the API and ClusterIPs
 * refused. Now listeners stop at limit − caps − reserve − what is open: with listeners at that
 * budget and both caps filled at the same time, UDP DNS, an existing ClusterIP and the API
 * answer, and the Services over the budget have a FailedToBind event naming the limit.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import t from 'tap';
import type { Event, Service } from '../src/api/types.js';
import { decode, encodeQuery, udpExchange } from './dns-helpers.js';
import { daemonApi, mustRequest, plainService } from './helpers/api.js';
import { WEB_ECHO_MANIFEST, startDaemon } from './helpers/daemon.js';
import { type IdleClient, connectIdle } from './helpers/hostile-kit.js';
import { daemonFdCount, steadyFdCount } from './helpers/procs.js';
import { waitFor } from './helpers/wait.js';
import { probe } from './services-helpers.js';

const DNS_CAP = 40;
const API_CAP = 60;
/** the proxy's reserve at a limit under 512 */
const RESERVE = 64;
/** listeners the budget has room for beyond what the daemon holds when the limit is set */
const LISTENERS = 20;
/** enough that the old budget (all but 64) would leave too few descriptors for the caps */
const SERVICES = 100;
const BASE = '/api/v1/namespaces/default';

function httpStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(0));
  });
}

t.test('listeners at their budget and the DNS/TCP and API caps full at once: the daemon still answers', async (t) => {
  const d = await startDaemon([
    '--pod-cidr', '127.183.0.0/16', '--service-cidr', '127.184.0.0/16', '--node-ip', '127.0.183.1', '--nodeport-addresses', '127.0.183.1', '--disable-load-balancer',
    '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--metrics-addr=', '--log-level', 'warn',
    '--dns-tcp-max-connections', String(DNS_CAP), '--dns-tcp-idle-timeout', '300s', '--api-max-connections', String(API_CAP),
  ]);
  const open: IdleClient[] = [];
  t.teardown(async () => {
    for (const c of open) c.sock.destroy();
    await d.stop();
  });
  const pid = d.proc.pid!;
  const api = await daemonApi(d);
  const call = <T>(method: string, path: string, body?: unknown): Promise<T> => mustRequest<T>(api, method, path, body);
  const dnsPort = Number(/dig @\S+ -p (\d+)/.exec(d.stdout())?.[1]);
  const apiPort = Number(new URL(api.server).port);
  t.ok(dnsPort > 0, 'the daemon printed its DNS port');
  writeFileSync(join(d.stateDir, 'web.yaml'), WEB_ECHO_MANIFEST);
  t.equal((await api.kubectl('apply', '-f', join(d.stateDir, 'web.yaml'))).code, 0, 'web applied');
  const clusterIP = (await api.kubectl('get', 'svc', 'web', '-o', 'jsonpath={.spec.clusterIP}')).stdout.trim();
  await waitFor(async () => (await httpStatus(`http://${clusterIP}/`)) === 200, { what: 'the web Service to answer', timeoutMs: 30_000 });

  const base = await steadyFdCount(pid);
  const limit = base + DNS_CAP + API_CAP + RESERVE + LISTENERS;
  t.ok(limit < 512, `the limit ${limit} keeps the reserve at its minimum of ${RESERVE}`);
  execFileSync('prlimit', [`--pid=${pid}`, `--nofile=${limit}:${limit}`]);

  // more Services than the listener budget holds, created in batches: the event recorder writes
  // at most 50 at once and 10 a second after that (store/events.ts), and a Service is
  // reported once, so each batch waits until every Service so far is served or reported
  /** FailedToBind events by Service name */
  const events = async (): Promise<Map<string, Event>> =>
    new Map((await call<{ items: Event[] }>('GET', `${BASE}/events`)).items.filter((e) => e.reason === 'FailedToBind').map((e) => [e.involvedObject.name!, e]));
  const settled = async (): Promise<{ refused: number[]; events: Event[] } | undefined> => {
    const st = await Promise.all(ips.map((ip) => probe(ip, 80)));
    const refused = st.flatMap((r, i) => (r === 'refused' ? [i] : []));
    const ev = await events();
    const reported = refused.map((i) => ev.get(`s${i}`));
    return reported.every(Boolean) ? { refused, events: reported as Event[] } : undefined;
  };
  const ips: string[] = [];
  let batchStart = Date.now();
  for (let i = 0; i < SERVICES; i++) {
    const s = await call<Service>('POST', `${BASE}/services`, plainService(`s${i}`));
    ips.push(s.spec!.clusterIP!);
    if (ips.length % 10 === 0) {
      await waitFor(settled, { timeoutMs: 20_000, what: `the first ${ips.length} Services served or reported` });
      // pacing, not a condition: the recorder's 10 tokens a second come back with time only
      await new Promise((r) => setTimeout(r, Math.max(0, batchStart + 1100 - Date.now())));
      batchStart = Date.now();
    }
  }
  const failed = await waitFor(async () => {
    const r = await settled();
    return r?.refused.length ? r : undefined;
  }, { timeoutMs: 20_000, what: 'Services over the listener budget, each with a FailedToBind event' });
  const listening = SERVICES - failed.refused.length;
  t.ok(listening > 0 && listening <= LISTENERS, `${listening} Services got a listener (budget ${LISTENERS}), ${failed.refused.length} did not`);
  const msg = failed.events[0].message ?? '';
  t.match(msg, new RegExp(`too many open files \\(RLIMIT_NOFILE ${limit}, of them ${DNS_CAP + API_CAP} kept for the API, DNS/TCP and /metrics connection caps and ${RESERVE} for proxied connections`), 'the event names the limit and its split');
  t.match(msg, /ulimit -n/, 'and the fix');

  // now fill both caps: DNS/TCP completely, the API all but the one connection each check below uses
  const dnsHolders = await connectIdle(dnsPort, DNS_CAP);
  open.push(...dnsHolders);
  // the owner's clients (verified client certificates): strangers get only a small share of the
  // API's cap, so only authenticated connections can fill it
  const apiHolders = await connectIdle(apiPort, API_CAP - 1, api.tls);
  open.push(...apiHolders);
  const held = await waitFor(() => daemonFdCount(pid) >= base + listening + DNS_CAP + API_CAP - 1, { what: 'the daemon to hold every capped connection' }).then(
    () => true,
    () => false,
  );
  t.ok(held, `the daemon holds every capped connection (${daemonFdCount(pid)} descriptors of ${limit})`);
  await new Promise((r) => setTimeout(r, 500)); // a connection dropped at accept is closed right after it: give it time to show
  t.equal(dnsHolders.filter((c) => c.ended).length, 0, `all ${DNS_CAP} DNS/TCP connections under the cap are kept`);
  t.equal(apiHolders.filter((c) => c.ended).length, 0, `all ${API_CAP - 1} API connections under the cap are kept`);

  const r = await udpExchange(dnsPort, encodeQuery('web.default.svc.cluster.local', 1, { id: 42 }));
  t.equal(r && decode(r).rcode, 'NOERROR', 'UDP DNS answers');
  t.equal(await httpStatus(`http://${clusterIP}/`), 200, 'the existing ClusterIP answers');
  t.equal((await api.request('GET', `${BASE}/services/web`)).status, 200, 'the API answers');
  t.ok(daemonFdCount(pid) < limit, `descriptors left (${daemonFdCount(pid)} of ${limit} in use)`);
  t.ok((await events()).has(`s${failed.refused[0]}`), 'the Services over the budget are still reported');
});
