/**
 * Issue 14: a daemon out of file descriptors. The real daemon's RLIMIT_NOFILE is lowered (with
 * util-linux prlimit, as a user's `ulimit -n` would) to a little above what it holds, then more
 * Services are created than it can listen for. The proxy must keep descriptors for the API,
 * report each Service it cannot serve (FailedToBind naming the limit and the fix), and converge
 * once Services are deleted: the waiting ones get listeners, the deleted ones' listeners close.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import t from 'tap';
import type { Event, Service } from '../src/api/types.js';
import { type ApiClient, daemonApi, mustRequest, plainService } from './helpers/api.js';
import { type RunningDaemon, startDaemon } from './helpers/daemon.js';
import { waitFor } from './helpers/wait.js';
import { probe } from './services-helpers.js';

const SERVICES = 40;
/** small connection caps: listeners leave them free (util/fd-budget.ts) */
const DNS_CAP = 8;
const API_CAP = 16;
/** descriptors above what the daemon holds once idle: the caps, the proxy's reserve (64 at this limit) and room for 20 listeners */
const ROOM = DNS_CAP + API_CAP + 64 + 20;
const BASE = '/api/v1/namespaces/default';

let daemon: RunningDaemon;
let api: ApiClient;

const fds = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

const call = <T>(method: string, path: string, body?: unknown): Promise<T> => mustRequest<T>(api, method, path, body);

const events = async (name: string): Promise<Event[]> =>
  (await call<{ items: Event[] }>('GET', `${BASE}/events`)).items.filter((e) => e.involvedObject.name === name && e.reason === 'FailedToBind');

t.before(async () => {
  daemon = await startDaemon([
    '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--metrics-addr=', '--log-level', 'warn',
    '--service-cidr', '127.216.0.0/16', '--pod-cidr', '127.215.0.0/16', '--disable-load-balancer',
    '--dns-tcp-max-connections', String(DNS_CAP), '--api-max-connections', String(API_CAP),
  ]);
  const kill = (): void => void (daemon.proc.exitCode === null && daemon.proc.kill('SIGKILL'));
  process.once('exit', kill);
  t.teardown(async () => {
    process.removeListener('exit', kill);
    await daemon.stop();
  });
  api = await daemonApi(daemon);
});

t.test('out of descriptors: the API answers, FailedToBind names the limit, deleting Services converges', async (t) => {
  const pid = daemon.proc.pid!;
  const limit = fds(pid) + ROOM;
  execFileSync('prlimit', [`--pid=${pid}`, `--nofile=${limit}:${limit}`]);

  const ips: string[] = [];
  for (let i = 0; i < SERVICES; i++) {
    const s = await call<Service>('POST', `${BASE}/services`, plainService(`s${i}`));
    ips.push(s.spec!.clusterIP!);
  }
  // every Service ends up either listening or reported, and the API answers meanwhile
  const state = async () => Promise.all(ips.map((ip) => probe(ip, 80)));
  const failed = await waitFor(
    async () => {
      const st = await state();
      const refused = st.flatMap((r, i) => (r === 'refused' ? [i] : []));
      const reported = await Promise.all(refused.map(async (i) => (await events(`s${i}`))[0]));
      return refused.length > 0 && reported.every(Boolean) ? { refused, events: reported as Event[] } : undefined;
    },
    { timeoutMs: 20_000, what: 'Services without a listener, each with a FailedToBind event' },
  );
  t.ok(failed.refused.length >= SERVICES - 30, `${failed.refused.length} of ${SERVICES} Services could not be served`);
  t.ok(failed.refused.length < SERVICES, 'the others were');
  const msg = failed.events[0].message ?? '';
  t.match(msg, new RegExp(`too many open files \\(RLIMIT_NOFILE ${limit}`), 'the event names the limit');
  t.match(msg, /ulimit -n/, 'and the fix');
  t.equal(failed.events[0].type, 'Warning');
  t.ok(fds(pid) <= limit - 32, `descriptors are kept for the API and connections (${fds(pid)} of ${limit} in use)`);

  // retries (every 5 s) do not repeat the event
  await new Promise((r) => setTimeout(r, 6000));
  const again = await events(`s${failed.refused[0]}`);
  t.equal(again.reduce((k, e) => k + (e.count ?? 1), 0), 1, 'one FailedToBind per Service');

  // delete as many listening Services as failed, plus a few: every one left must get its listener
  const served = ips.map((_, i) => i).filter((i) => !failed.refused.includes(i));
  const gone = served.slice(0, failed.refused.length + 5);
  for (const i of gone) await call('DELETE', `${BASE}/services/s${i}`);
  const left = ips.map((_, i) => i).filter((i) => !gone.includes(i));
  await waitFor(
    async () => {
      const st = await state();
      return left.every((i) => st[i] !== 'refused') && gone.every((i) => st[i] === 'refused');
    },
    { timeoutMs: 20_000, what: 'every remaining Service listening, every deleted one closed' },
  );
  t.pass(`${left.length} Services listen, ${gone.length} deleted ones refuse`);
  const k = await api.kubectl('get', 'services', '-o', 'name');
  t.equal(k.code, 0, 'kubectl still works');
});
