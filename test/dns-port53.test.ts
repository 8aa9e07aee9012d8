/**
 * The cluster DNS answers on port 53 of the kube-dns Service's ClusterIP (UDP and TCP), as
 * kube-dns does in every cluster, besides --dns-addr; where port 53 cannot be bound, the
 * start-up output names the fix.
 */
import t from 'tap';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { Service } from '../src/api/types.js';
import { createEmbeddedStore } from '../src/store/embedded.js';
import { ensureObjects, systemObjects } from '../src/cli/system-objects.js';
import { ROOT, startDaemon, tableAddresses } from './helpers/daemon.js';
import { waitFor } from './helpers/wait.js';

const dig = (...args: string[]): Promise<string> =>
  new Promise((res) => execFile('dig', ['+short', '+time=2', '+tries=1', ...args], (_e, so, se) => res(`${String(so)}${String(se)}`.trim())));

t.test('dig @<kube-dns ClusterIP> -p 53, UDP and TCP', async (t) => {
  const d = await startDaemon([
    '--pod-cidr', '127.71.0.0/16', '--service-cidr', '127.72.0.0/16', '--lb-pool', '127.73.0.0/16',
    '--node-ip', '127.0.71.1', '--nodeport-addresses', '127.0.71.1',
    '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--log-level', 'warn',
  ]);
  t.teardown(() => d.stop());
  const out = d.stdout();
  // the 10th address of the range, as upstream's kube-dns (10.96.0.10)
  t.same(tableAddresses(out, 'kube-system/kube-dns').sort(), ['127.72.0.10:53', '127.72.0.10:53/udp'], `kube-dns row in:\n${out}`);
  t.notMatch(out, /not listening/, 'every listener is up');
  const tryLine = /^kube-system\/kube-dns .*?(dig @\S+ \S+)$/m.exec(out)?.[1];
  t.equal(tryLine, 'dig @127.72.0.10 kubernetes.default.svc.cluster.local', 'the TRY column offers a dig');
  t.equal(await dig(...(tryLine ?? '').split(' ').slice(1)), '127.72.0.1', 'which works as printed');
  for (const proto of ['+notcp', '+tcp']) {
    t.equal(await dig('@127.72.0.10', '-p', '53', proto, 'kubernetes.default.svc.cluster.local'), '127.72.0.1', `the kubernetes Service over ${proto}`);
    t.equal(await dig('@127.72.0.10', '-p', '53', proto, 'kube-dns.kube-system.svc.cluster.local'), '127.72.0.10', `kube-dns names its own ClusterIP over ${proto}`);
  }
  // what a pod's resolver does: a short name with the search list of its namespace
  t.equal(await dig('@127.72.0.10', '+search', '+domain=default.svc.cluster.local', '+ndots=5', 'kubernetes'), '127.72.0.1', 'short name through the search list');
});

t.test('without the privilege to bind port 53, kube-dns stays headless, up says what to run once, DNS on --dns-addr answers', async (t) => {
  // a user namespace without the host's capabilities: binding below 1024 is EACCES there, as for a normal user
  const stateDir = await mkdtemp(join(tmpdir(), 'kubeloop-dns53-'));
  const proc: ChildProcess = spawn(
    'unshare',
    ['--user', '--map-current-user', process.execPath, join(ROOT, 'bin', 'kubeloop.mjs'), 'up', '--state-dir', stateDir,
      '--pod-cidr', '127.74.0.0/16', '--service-cidr', '127.75.0.0/16', '--lb-pool', '127.76.0.0/16',
      '--node-ip', '127.0.74.1', '--nodeport-addresses', '127.0.74.1', '--metrics-addr=',
      '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--log-level', 'warn'],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } },
  );
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise((r) => proc.once('exit', r));
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGINT');
    const kill = setTimeout(() => proc.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(kill);
    await rm(stateDir, { recursive: true, force: true });
  });
  await waitFor(() => out.includes('kubeloop is running') || proc.exitCode !== null, { timeoutMs: 30_000 });
  t.match(out, 'kubeloop is running', `up runs:\n${err}`);
  // no ClusterIP that nothing answers on: pods would stall on it; kube-dns stays headless
  t.same(tableAddresses(out, 'kube-system/kube-dns'), ['headless:'], `kube-dns is headless in:\n${out}`);
  t.notMatch(out.split('\n').filter((l) => !l.startsWith('cluster DNS is not')).join('\n'), '127.75.0.10:53', 'no port-53 address is offered');
  const line = out.split('\n').find((l) => l.startsWith('cluster DNS is not on 127.75.0.10:53'));
  t.ok(line, `one line says so in:\n${out}`);
  t.match(line ?? '', 'pods resolve names through this machine\'s /etc/resolv.conf', 'what it means for pods');
  t.match(line ?? '', 'sudo sysctl -w net.ipv4.ip_unprivileged_port_start=0', 'the sysctl fix');
  t.match(line ?? '', 'sudo setcap cap_net_bind_service=+ep', 'or the setcap fix');
  const port = /dig @127\.0\.0\.1 -p (\d+)/.exec(out)?.[1];
  t.ok(port, 'the DNS line names the real port');
  t.equal(await dig('@127.0.0.1', '-p', port ?? '1', 'kubernetes.default.svc.cluster.local'), '127.75.0.1', 'the server answers on --dns-addr');
});

t.test('kube-dns turns from headless to ClusterIP and back when the privilege comes and goes', async (t) => {
  const stateDir = await mkdtemp(join(tmpdir(), 'kubeloop-dns53-store-'));
  let store: Awaited<ReturnType<typeof createEmbeddedStore>> | undefined;
  t.teardown(async () => {
    await store?.close();
    await rm(stateDir, { recursive: true, force: true });
  });
  store = await createEmbeddedStore({ serviceCidr: '127.77.0.0/16', podCidr: '127.78.0.0/16', nodePortRange: '30000-32767', stateDir, hostAddresses: ['127.0.0.1'], log: pino({ level: 'silent' }) });
  const [oldSvc, oldEp] = systemObjects({ dnsHost: '127.0.0.1', dnsPort: 1053 });
  await store.create({ ...oldSvc, spec: { ...(oldSvc as Service).spec, type: undefined, clusterIP: 'None' } } as Service);
  await store.create(oldEp);
  await ensureObjects(store, systemObjects({ dnsHost: '127.0.0.1', dnsPort: 1054, dnsClusterIP: '127.77.0.10' }));
  const svc = await store.get<Service>('Service', 'kube-system', 'kube-dns');
  t.equal(svc.spec?.clusterIP, '127.77.0.10', 'a ClusterIP now');
  t.same(svc.spec?.ports?.map((p) => [p.protocol, p.port, p.targetPort]), [['UDP', 53, 1054], ['TCP', 53, 1054]], 'port 53 to the real port');
  // a second start changes nothing but the ports
  await ensureObjects(store, systemObjects({ dnsHost: '127.0.0.1', dnsPort: 1055, dnsClusterIP: '127.77.0.10' }));
  const again = await store.get<Service>('Service', 'kube-system', 'kube-dns');
  t.equal(again.metadata.uid, svc.metadata.uid, 'kept, not recreated');
  t.equal(again.spec?.ports?.[0].targetPort, 1055, 'the new port');
  // started without the privilege: headless again
  await ensureObjects(store, systemObjects({ dnsHost: '127.0.0.1', dnsPort: 1056, dnsClusterIP: 'None' }));
  t.equal((await store.get<Service>('Service', 'kube-system', 'kube-dns')).spec?.clusterIP, 'None', 'headless again');
});
