/**
 * The foundation, as a user runs it: `kubeloop up -f config/`, curl through the ClusterIP and
 * the NodePort, kill a pod's process, Ctrl-C, and nothing left behind.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, tableAddresses } from './helpers/daemon.js';
import { get, podOf } from './helpers/http.js';
import { type PodProcess, alive, podProcesses } from './helpers/procs.js';
import { waitFor } from './helpers/wait.js';

const NODE = '127.0.31.8';
const require_write = (s: string) => writeFileSync(join(tmpdir(), 'e2e-up-daemon.log'), s);
const POD_PREFIX = '127.231.';

t.test('kubeloop up with the demo manifests', async (t) => {
  const d = await startDaemon([
    '-f', 'config/',
    '--service-cidr', '127.131.0.0/16',
    '--pod-cidr', '127.231.0.0/16',
    '--lb-pool', '127.141.0.0/16',
    '--nodeport-addresses', NODE,
    '--node-ip', NODE,
    '--api-addr', '127.0.0.1:0',
    '--dns-addr', '127.0.0.1:0',
    '--crashloop-backoff', '100ms',
    '--log-level', process.env.KUBELOOP_TEST_LOG ?? 'warn',
  ]);
  let stopped = false;
  t.teardown(async () => {
    if (process.env.KUBELOOP_TEST_LOG) require_write(d.stderr());
    if (!stopped) await d.stop('SIGKILL');
  });

  const out = d.stdout();
  const cluster = tableAddresses(out, 'default/myapp-service');
  t.equal(cluster.length, 1, `one address for myapp-service in:\n${out}`);
  t.match(cluster[0], /^127\.131\.\d+\.\d+:80$/, 'a ClusterIP from --service-cidr');
  t.match(out, /curl http:\/\/127\.131\.\d+\.\d+:80\//, 'a ready-to-paste curl line');
  t.match(out, /default\/myapp-service\s+ClusterIP\s+3\/3/, 'three ready endpoints');
  // the API's row offers a curl that verifies the cluster CA through the kubernetes ClusterIP
  const apiTry = /^default\/kubernetes .*?(curl --cacert \S+ https:\/\/\S+\/version)$/m.exec(out)?.[1];
  t.ok(apiTry, `a verifying curl line for default/kubernetes in:\n${out}`);
  if (apiTry) {
    const [, ca, url] = /--cacert (\S+) (\S+)/.exec(apiTry)!;
    const r = await new Promise<string>((res) => execFile('curl', ['-sS', '--max-time', '5', '--cacert', ca, url], (_e, so, se) => res(String(so) + String(se))));
    t.match(r, /"gitVersion"/, 'the printed curl line works as printed');
  }
  const nodePortAddrs = tableAddresses(out, 'default/myapp-service-nodeport');
  t.ok(nodePortAddrs.includes(`${NODE}:30008`), 'the NodePort address is listed');

  await t.test('round robin through the ClusterIP', async (t) => {
    const seq: string[] = [];
    for (let i = 0; i < 9; i++) seq.push(podOf((await get(`http://${cluster[0]}/`)).body));
    const pods = new Set(seq);
    t.equal(pods.size, 3, `three pods answer: ${seq.join(' ')}`);
    for (let i = 3; i < 9; i++) t.equal(seq[i], seq[i - 3], 'in rotation');
  });

  await t.test('the NodePort answers, and the multi-port service on both ports', async (t) => {
    const r = await get(`http://${NODE}:30008/`);
    t.equal(r.status, 200);
    t.match(r.body, /pod=myapp-/);
    const mp = tableAddresses(out, 'default/myapp-service-multiport');
    t.equal(mp.length, 2);
    for (const a of mp) t.match((await get(`http://${a}/`)).body, /pod=myapp-/, `answers on ${a}`);
  });

  await t.test('a pod reaches a Service by its name through the cluster DNS', async (t) => {
    // the echo image's /dial (agnhost netexec's) GETs from inside the pod; the short name goes
    // through the pod's search list <ns>.svc.cluster.local like /etc/resolv.conf in a pod
    const r = await get(`http://${cluster[0]}/dial?host=myapp-service-multiport&port=443&request=hostname&tries=3`);
    const out = JSON.parse(r.body) as { responses: string[]; errors: string[] };
    t.same(out.errors, [], 'no dial errors');
    t.equal(out.responses.length, 3);
    for (const line of out.responses) t.match(line, /^pod=myapp-/, 'answered by a pod through the Service');
    const fqdn = await get(`http://${cluster[0]}/dial?host=myapp-service.default.svc.cluster.local.&port=80&request=x`);
    t.match(JSON.parse(fqdn.body).responses[0], /^pod=myapp-/, 'the fully qualified name works too');
  });

  await t.test('kubectl apply of the same files afterwards changes nothing', async (t) => {
    // up -f records the last-applied annotation as kubectl apply does
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile('kubectl', ['--kubeconfig', join(d.stateDir, 'kubeconfig'), '--cache-dir', join(d.stateDir, 'kubectl-cache'), 'apply', '-f', 'config/'], { timeout: 30_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? 1 : 0, stdout, stderr }),
      ),
    );
    t.equal(r.code, 0, r.stderr);
    t.notMatch(r.stderr, /last-applied-configuration/, 'no missing-annotation warning');
    const lines = r.stdout.trim().split('\n');
    t.ok(lines.length >= 7 && lines.every((l) => l.endsWith(' unchanged')), `every object unchanged:\n${r.stdout}`);
  });

  await t.test('a killed pod restarts and traffic keeps flowing', async (t) => {
    const procs = podProcesses(POD_PREFIX);
    t.equal(new Set(procs.map((p) => p.podName)).size, 3, 'three pod processes');
    const victim = programs(procs)[0];
    t.ok(victim, 'a pod program found');
    process.kill(victim.pid, 'SIGKILL');
    // A SIGKILLed process keeps its listening sockets until its last thread is gone (after the
    // leader already shows as a zombie): connections that reach it then are accepted by the
    // kernel and reset, on any host. Measure from the moment the daemon has reaped it.
    await waitFor(() => !existsSync(`/proc/${victim.pid}`), { timeoutMs: 5000 });
    for (let i = 0; i < 12; i++) {
      const r = await get(`http://${cluster[0]}/`);
      t.equal(r.status, 200, 'every request is answered');
    }
    await waitFor(() => programs(podProcesses(POD_PREFIX)).some((p) => p.podName === victim.podName && p.pid !== victim.pid), {
      timeoutMs: 10_000,
    });
    t.pass('the pod was restarted');
    await waitFor(async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 6; i++) seen.add(podOf((await get(`http://${cluster[0]}/`)).body));
      return seen.has(victim.podName);
    }, { timeoutMs: 10_000 });
    t.pass('the restarted pod serves again');
  });

  await t.test('Ctrl-C stops everything and leaves no pod process', async (t) => {
    const pids = podProcesses(POD_PREFIX).map((p) => p.pid);
    t.ok(pids.length >= 3);
    // under `npm start` a terminal's Ctrl-C arrives twice: from the terminal and, a moment
    // later, forwarded by npm (apart, so the kernel does not merge the two into one)
    d.proc.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 5));
    const code = await d.stop('SIGINT');
    stopped = true;
    t.equal(code, 0, 'exit 0: the repeated SIGINT did not cut the graceful stop short');
    t.same(pids.filter(alive), [], 'every pod process is gone');
    t.same(podProcesses(POD_PREFIX), [], 'no process with a pod IP of this daemon');
    await t.rejects(get(`http://${cluster[0]}/`, { timeoutMs: 1000 }), 'the ClusterIP listener is closed');
  });
});

/**
 * The pods' own programs among their processes, not the sandbox around each (unshare and flock
 * carry the pod's environment too): a crash of the program is what the restart test is about.
 */
function programs(procs: PodProcess[]): PodProcess[] {
  return procs.filter((p) => {
    try {
      return !['unshare', 'flock', 'setpriv'].includes(readFileSync(`/proc/${p.pid}/comm`, 'utf8').trim());
    } catch {
      return false;
    }
  });
}
