/**
 * The proxy's Prometheus endpoint: kube-proxy's figures and per-Service / per-endpoint
 * counters, read from a real proxy carrying real connections; and `--metrics-addr` on the daemon.
 */
import http from 'node:http';
import pino from 'pino';
import t from 'tap';
import type { Endpoints } from '../src/api/types.js';
import { MetricsServer, proxyMetrics } from '../src/agent/proxy/index.js';
import { resolveOptions, OptionsError } from '../src/cli/options.js';
import { connect, createService, harness, subsetsOf, tcpBackend, waitFor } from './proxy-helpers.js';
import { startDaemon } from './helpers/daemon.js';

// addresses private to this file: tap runs test files in parallel
const CIDR = '127.96.70.0/24';
const NODE = '127.0.70.254';
const B = (i: number): string => `127.0.70.${i}`;

function get(url: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
      })
      .on('error', reject);
  });
}

/** the value of the first sample line starting with `prefix` (name and labels), or undefined */
function sample(text: string, prefix: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

t.test('/metrics: sync and programming figures, per-Service and per-endpoint counters', async (t) => {
  const h = await harness(t, { serviceCidr: CIDR, nodeAddress: NODE });
  const pm = proxyMetrics(h.proxy, { processMetrics: false });
  const server = new MetricsServer({ registry: pm.registry, log: pino({ level: 'silent' }), address: '127.0.0.1', port: 0 });
  t.teardown(async () => {
    pm.stop();
    await server.stop();
  });
  await server.start();
  t.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);

  const bs = await Promise.all([1, 2].map((i) => tcpBackend(t, B(i), `b${i}`)));
  const svc = await createService(h.store, 'web', { ports: [{ name: 'http', port: 8080, protocol: 'TCP', targetPort: 8080 }] });
  // an Endpoints change triggered 5 s ago: the programming latency it reports is at least that
  const trigger = new Date(Date.now() - 5000).toISOString();
  await h.store.create<Endpoints>({
    apiVersion: 'v1',
    kind: 'Endpoints',
    metadata: { name: 'web', namespace: 'default', annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': trigger } },
    subsets: subsetsOf(bs, 'http'),
  });
  await h.proxy.synced();
  const ip = svc.spec!.clusterIP!;

  // one connection still open (bytes counted live), one closed
  const open = connect(ip, 8080);
  await open.lines(1);
  open.socket.write('ping\n');
  await waitFor(() => open.data.includes('ping'), 'echo through the proxy');
  const closed = connect(ip, 8080);
  await closed.lines(1);
  closed.socket.end();
  await closed.done;
  await waitFor(() => h.proxy.listeners()[0]?.active === 1, 'the closed connection to be gone');

  const res = await get(server.url);
  t.equal(res.status, 200);
  t.match(res.type, /^text\/plain; version=0\.0\.4/);
  const m = res.body;

  t.ok(sample(m, 'kubeproxy_sync_proxy_rules_duration_seconds_count')! >= 1, 'syncs are timed');
  t.ok(sample(m, 'kubeproxy_sync_proxy_rules_last_timestamp_seconds')! > Date.now() / 1000 - 60, 'last sync time');
  t.ok(sample(m, 'kubeproxy_sync_proxy_rules_service_changes_total')! >= 1);
  t.ok(sample(m, 'kubeproxy_sync_proxy_rules_endpoint_changes_total')! >= 1);
  t.equal(sample(m, 'kubeproxy_sync_proxy_rules_endpoint_changes_pending'), 0);
  t.equal(sample(m, 'kubeproxy_network_programming_duration_seconds_count'), 1, 'one programmed Endpoints change with a trigger time');
  t.ok(sample(m, 'kubeproxy_network_programming_duration_seconds_sum')! >= 5, 'measured from the trigger time');
  t.equal(sample(m, 'kubeproxy_network_programming_duration_seconds_bucket{le="2"}'), 0, 'not in a bucket below 5 s');

  const L = `service="default/web",port="http",protocol="TCP",address="${ip}:8080",kind="clusterIP"`;
  t.equal(sample(m, `kubeloop_proxy_connections_total{${L}}`), 2, 'both connections counted');
  t.equal(sample(m, `kubeloop_proxy_connections_active{${L}}`), 1, 'one still open');
  t.equal(sample(m, `kubeloop_proxy_listener_processes{${L}}`), 1, 'one process accepts (no proxy workers)');
  t.equal(sample(m, `kubeloop_proxy_connections_failed_total{${L}}`), 0);
  // client → backend: "ping\n" on the open connection; the closed one sent nothing
  t.equal(sample(m, `kubeloop_proxy_bytes_total{${L},direction="in"}`), 5, 'bytes of the open connection count at once');
  t.ok(sample(m, `kubeloop_proxy_bytes_total{${L},direction="out"}`)! >= 'b1\nping\nb2\n'.length);

  // round robin: one connection to each endpoint
  for (const b of bs) {
    t.equal(sample(m, `kubeloop_proxy_endpoint_connections_total{service="default/web",port="http",endpoint="${b.host}:${b.port}"}`), 1, `one connection to ${b.name}`);
  }
  t.equal(bs.reduce((n, b) => n + b.accepted, 0), 2);

  t.equal((await get(server.url.replace('/metrics', '/healthz'))).body, 'ok\n');
  t.equal((await get(server.url.replace('/metrics', '/nope'))).status, 404);
  open.socket.destroy();
});

t.test('--metrics-addr: validated like the other addresses', async (t) => {
  t.equal(resolveOptions([], '/').metricsAddr, '127.0.0.1:10249', "kube-proxy's default");
  t.equal(resolveOptions(['--metrics-addr', ''], '/').metricsAddr, '', 'empty turns it off');
  t.throws(() => resolveOptions(['--metrics-addr', '10.0.0.1:10249'], '/'), OptionsError);
  try {
    resolveOptions(['--metrics-addr', 'nope'], '/');
    t.fail('a bad address is refused');
  } catch (e) {
    t.match((e as OptionsError).problems.join('\n'), /--metrics-addr "nope": expected IP:PORT/);
  }
});

t.test('the daemon serves /metrics at --metrics-addr and prints where', async (t) => {
  const d = await startDaemon([
    '--service-cidr', '127.154.0.0/16',
    '--pod-cidr', '127.155.0.0/16',
    '--nodeport-addresses', '127.0.154.1',
    '--node-ip', '127.0.154.1',
    '--api-addr', '127.0.0.1:0',
    '--dns-addr', '127.0.0.1:0',
    '--metrics-addr', '127.0.0.1:0',
    '--log-level', 'warn',
  ]);
  t.teardown(() => d.stop('SIGKILL'));
  const url = /Metrics: (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(d.stdout())?.[1];
  t.ok(url, `a Metrics line in:\n${d.stdout()}`);
  const res = await get(url!);
  t.equal(res.status, 200);
  // the system Services (default/kubernetes) are proxied from the start
  t.match(res.body, /kubeloop_proxy_connections_total\{service="default\/kubernetes"/);
  t.match(res.body, /process_resident_memory_bytes \d+/, 'process figures too');
});
