/**
 * Another local user (`nobody`) against what issues 17 and 19 added: the node agent endpoint,
 * the node tunnel, the join token, /metrics and the Metrics API, and pod processes. One daemon on
 * a real redis-server (so it creates a cluster and keeps a join token), loopback --node-ip.
 * As `nobody`, holding no credential:
 *  - the node agent endpoint refuses the TLS handshake; even a leaked admin certificate gets 403;
 *    a flood of bare TCP connections costs the daemon at most AGENT_UNAUTHENTICATED_CONNECTIONS
 *    descriptors, and the API still streams logs through the endpoint;
 *  - a daemon with a loopback --node-ip serves no tunnel; a tunnel server (in process, its PKI
 *    from ensurePki) answers a CONNECT without a node certificate with 403, even to an allowed port;
 *  - the join token's file is 0600 and unreadable, is not in the daemon's log, its argv or `ps`,
 *    and the daemon's environment cannot be read; a store without a password is warned of;
 *  - /metrics (documented open on loopback, Prometheus) holds no Secret; the Metrics API: 401;
 *  - a pod's environment (/proc/<pid>/environ, `ps e`) cannot be read.
 * Addresses: pods 127.102.0.0/16, services 127.103.0.0/16, lb 127.104.0.0/16, node and tunnel 127.105.0.0/24.
 */
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import { TunnelServer } from '../src/agent/tunnel/server.js';
import { ensurePki, nodeUser } from '../src/cli/pki.js';
import { daemonApi } from './helpers/api.js';
import { startDaemon } from './helpers/daemon.js';
import { fdCount } from './helpers/hostile-kit.js';
import { podProcesses } from './helpers/procs.js';
import { startRedisServer } from './helpers/redis-server.js';
import { otherUser, run } from './helpers/other-user.js';
import { waitFor } from './helpers/wait.js';

const NODE_IP = '127.105.0.1';
const TUNNEL_IP = '127.105.0.2';
const POD_SECRET = 'pod-env-secret-4f1c9a';
const FLOOD = 400;



const other = otherUser();

t.test('another local user against the agent endpoint, the tunnel, the join token, metrics and pods', { skip: typeof other === 'string' ? other : false }, async (t) => {
  const who = other as Exclude<typeof other, string>;
  const as = (cmd: string, ...args: string[]) => run('setpriv', [`--reuid=${who.uid}`, `--regid=${who.gid}`, '--clear-groups', '--', cmd, ...args]);
  /** a node script run as the other user (its stdout) */
  const nodeAs = (script: string, ...args: string[]) => as(process.execPath, '-e', script, ...args);
  // a place the other user may read: for what we hand it on purpose
  const shared = mkdtempSync(join(tmpdir(), 'kubeloop-other-user-'));
  chmodSync(shared, 0o755);
  t.teardown(() => rmSync(shared, { recursive: true, force: true }));

  const redis = await startRedisServer();
  let daemon;
  try {
    daemon = await startDaemon([
      '--store', redis.url,
      '--node-name', 'ou-a', '--node-ip', NODE_IP, '--nodeport-addresses', NODE_IP,
      '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0',
      '--pod-cidr', '127.102.0.0/16', '--service-cidr', '127.103.0.0/16', '--lb-pool', '127.104.0.0/16',
      '--tunnel-port', '0', '--log-level', 'debug', '--ready-timeout', '1s',
    ]);
  } catch (err) {
    await redis.close();
    throw err;
  }
  const d = daemon;
  const pid = d.proc.pid!;
  t.teardown(async () => {
    await d.stop();
    await redis.close();
    rmSync(d.stateDir, { recursive: true, force: true });
  });
  const api = await daemonApi(d, { kubectlCacheDir: join(d.stateDir, 'kubectl-cache') });
  const create = async (path: string, body: unknown) => {
    const r = await api.request('POST', path, { body });
    t.equal(r.status, 201, `created ${path}${r.status === 201 ? '' : `: ${r.body}`}`);
  };
  await create('/api/v1/namespaces/default/secrets', { metadata: { name: 'db' }, stringData: { password: 'hunter2-other-user' } });
  await create('/api/v1/namespaces/default/pods', {
    metadata: { name: 'talker' },
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [{ name: 'c', image: 'shell', env: [{ name: 'POD_SECRET', value: POD_SECRET }], command: ['sh', '-c', 'echo pod-says-hello; exec sleep 600'] }],
    },
  });
  const logs = async () => (await api.request('GET', '/api/v1/namespaces/default/pods/talker/log')).body;
  await waitFor(async () => (await logs()).includes('pod-says-hello'), { what: 'the pod log', timeoutMs: 20_000 });
  const nodeObj = (await api.request('GET', '/api/v1/nodes/ou-a')).json<{ metadata: { annotations?: Record<string, string> }; status: { daemonEndpoints: { kubeletEndpoint: { Port: number } } } }>();
  const agentPort = nodeObj.status.daemonEndpoints.kubeletEndpoint.Port;
  t.ok(agentPort > 0, 'the node agent endpoint has a port');
  const agentUrl = `https://${NODE_IP}:${agentPort}`;
  t.equal((await as('id', '-u')).stdout.trim(), String(who.uid), `commands run as ${who.name}`);

  await t.test('the node agent endpoint: no handshake without a certificate, 403 with the admin one', async (t) => {
    let r = await as('curl', '-sk', '-w', '\n%{http_code}', `${agentUrl}/containerLogs/default/talker`);
    t.not(r.code, 0, `curl -k without a certificate fails (exit ${r.code})`);
    t.notMatch(r.stdout, /pod-says-hello/);
    r = await as('cat', join(d.stateDir, 'pki', 'admin.key'));
    t.match(r.stderr, /Permission denied/, 'the admin key is unreadable');
    r = await as('cat', join(d.stateDir, 'kubeconfig'));
    t.match(r.stderr, /Permission denied/, 'the kubeconfig is unreadable');
    // had it leaked anyway: the endpoint serves the API server's certificate only
    for (const f of ['admin.crt', 'admin.key']) {
      writeFileSync(join(shared, f), readFileSync(join(d.stateDir, 'pki', f)));
      chownSync(join(shared, f), who.uid, who.gid);
    }
    for (const path of ['/containerLogs/default/talker', '/metrics/resource']) {
      r = await as('curl', '-sk', '--cert', join(shared, 'admin.crt'), '--key', join(shared, 'admin.key'), '-w', '\n%{http_code}', `${agentUrl}${path}`);
      t.match(r.stdout, /"reason":"Forbidden"[\s\S]*\n403$/, `the admin certificate: 403 on ${path}`);
      t.notMatch(r.stdout, /pod-says-hello/);
    }
    rmSync(join(shared, 'admin.key'));
  });

  await t.test('a flood of bare connections to the agent endpoint costs the daemon a bounded number of descriptors', async (t) => {
    const before = fdCount(pid);
    // opens FLOOD connections, prints how many are open once each connected or failed, then holds them until stdin ends
    const script = `
      const net = require('net');
      const [host, port, n] = process.argv.slice(1);
      let settled = 0, open = 0;
      const socks = [];
      for (let i = 0; i < Number(n); i++) {
        const s = net.connect(Number(port), host);
        s.on('error', () => {});
        s.once('connect', () => { open++; if (++settled === Number(n)) report(); });
        s.once('close', () => { if (!s.connecting) return; if (++settled === Number(n)) report(); });
        socks.push(s);
      }
      function report() { setTimeout(() => { console.log('connected', open, 'still-open', socks.filter((s) => !s.destroyed).length); }, 500); }
      process.stdin.on('data', () => {}).on('end', () => process.exit(0));
    `;
    const child = execFile('setpriv', [`--reuid=${who.uid}`, `--regid=${who.gid}`, '--clear-groups', '--', process.execPath, '-e', script, NODE_IP, String(agentPort), String(FLOOD)], { timeout: 30_000 });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
    t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
    await waitFor(() => /still-open/.test(out), { what: 'the flood connected', timeoutMs: 20_000 });
    const during = fdCount(pid);
    t.comment(`daemon descriptors: ${before} before, ${during} with ${FLOOD} bare connections open (${out.trim()})`);
    t.ok(during - before <= 64 + 16, `the flood holds at most 64 (+16 slack) of the daemon's descriptors (held ${during - before})`);
    t.match(await logs(), /pod-says-hello/, 'the API still streams logs through the endpoint');
    child.stdin!.end();
    await new Promise((r) => (child.exitCode === null ? child.once('exit', r) : r(undefined)));
  });

  await t.test('the node tunnel: none on a loopback node IP; a CONNECT without a node certificate gets 403', async (t) => {
    t.notOk(nodeObj.metadata.annotations?.['tunnel.kubeloop.dev/port'], 'a daemon with a loopback --node-ip publishes no tunnel port');
    const dir = mkdtempSync(join(tmpdir(), 'kubeloop-other-tunnel-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const pki = await ensurePki({ dir, hosts: ['127.0.0.1'], tunnel: { nodeName: 'ou-peer', hosts: [TUNNEL_IP] }, log: pino({ level: 'silent' }) });
    const pod = net.createServer((s) => s.end('pod-data\n'));
    await new Promise<void>((r) => pod.listen(0, TUNNEL_IP, r));
    t.teardown(() => pod.close());
    const podPort = (pod.address() as net.AddressInfo).port;
    const server = new TunnelServer({
      log: pino({ level: 'silent' }),
      address: TUNNEL_IP,
      port: 0,
      tls: { cert: pki.tunnelCert!, key: pki.tunnelKey!, ca: pki.ca },
      isPeer: (subject) => subject.CN === nodeUser('ou-peer'),
      // every target allowed: a refusal can only be the certificate's
      allow: () => true,
      udpIdleTimeoutMs: 5000,
    });
    await server.start();
    t.teardown(() => server.stop());
    const r = await as('ls', dir);
    t.match(r.stderr, /Permission denied/, "the tunnel's key dir is unreadable");
    const script = `
      const http2 = require('http2');
      const [url, authority] = process.argv.slice(1);
      const s = http2.connect(url, { rejectUnauthorized: false });
      s.on('error', (e) => { console.log('session-error', e.message); process.exit(0); });
      const st = s.request({ ':method': 'CONNECT', ':authority': authority }, { endStream: false });
      st.on('error', (e) => { console.log('stream-error', e.message); process.exit(0); });
      let body = '';
      st.on('response', (h) => { body += 'status ' + h[':status'] + '\\n'; });
      st.setEncoding('utf8').on('data', (c) => (body += c));
      st.on('end', () => { console.log(body); process.exit(0); });
      setTimeout(() => { console.log('timeout', body); process.exit(0); }, 10000);
    `;
    const out = await nodeAs(script, `https://${TUNNEL_IP}:${server.port}`, `${TUNNEL_IP}:${podPort}`);
    t.match(out.stdout, /^status 403\n.*present a node's tunnel certificate/m, 'CONNECT without a certificate: 403');
    t.notMatch(out.stdout, /pod-data/);
    t.equal(server.stats.tcp, 0, 'nothing was dialed');
    t.equal(server.stats.unauthenticated, 1);
  });

  await t.test('the join token: 0600, not in the log, argv, ps, or a readable environment', async (t) => {
    const file = join(d.stateDir, 'join-token');
    const token = readFileSync(file, 'utf8').trim();
    t.ok(token.length >= 24, 'the daemon created the cluster and kept its token');
    t.equal(statSync(file).mode & 0o777, 0o600);
    let r = await as('cat', file);
    t.match(r.stderr, /Permission denied/, 'the token file is unreadable');
    t.ok(d.stdout().includes(token), 'the token is printed once, on the terminal');
    t.notOk(d.stderr().includes(token), 'the log (debug level) does not hold the token');
    r = await as('ps', '-eww', '-o', 'args');
    t.ok(r.stdout.includes(d.stateDir), 'ps as the other user lists the daemon');
    t.notOk(r.stdout.includes(token), 'ps shows no token');
    // a password-less Redis is every local user's: the daemon says so (checked by hand: nobody's redis-cli reads and writes it)
    t.match(d.stderr(), /has no password: every local user .* can read its Secrets/, 'the daemon warns that its store has no password');
    r = await as('cat', `/proc/${pid}/environ`);
    t.not(r.code, 0, "the daemon's environment is unreadable");
    t.match(r.stderr, /Permission denied/);
  });

  await t.test('/metrics holds no Secret; the Metrics API asks for a credential', async (t) => {
    const m = /http:\/\/[0-9.]+:\d+\/metrics/.exec(d.stdout());
    t.ok(m, 'the metrics URL is printed');
    let r = await as('curl', '-s', '-w', '\n%{http_code}', m![0]);
    t.match(r.stdout, /\n200$/, '/metrics is open on loopback (README: Prometheus, --metrics-addr)');
    t.notMatch(r.stdout, /hunter2|aHVudGVyMi|pod-says-hello|POD_SECRET|pod-env-secret/);
    for (const path of ['/apis/metrics.k8s.io/v1beta1/pods', '/apis/metrics.k8s.io/v1beta1/nodes', '/api/v1/nodes/ou-a/proxy/metrics/resource']) {
      r = await as('curl', '-sk', '-w', '\n%{http_code}', `${api.server}${path}`);
      t.match(r.stdout, /\n401$/, `${path}: 401`);
    }
  });

  await t.test("a pod's environment cannot be read", async (t) => {
    const procs = podProcesses('127.102.').filter((p) => p.podName === 'talker');
    t.ok(procs.length > 0, 'the pod process is there');
    const podPid = procs[0].pid;
    t.ok(readFileSync(`/proc/${podPid}/environ`, 'utf8').includes(POD_SECRET), 'the pod has the variable');
    let r = await as('cat', `/proc/${podPid}/environ`);
    t.match(r.stderr, /Permission denied/, '/proc/<pid>/environ is unreadable');
    r = await as('ps', 'eww', '-p', String(podPid), '-o', 'args');
    t.notMatch(r.stdout, new RegExp(POD_SECRET), 'ps e does not show it');
  });
});
