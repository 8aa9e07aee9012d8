/**
 * One cluster identity on two machines: two network namespaces as hosts (198.18.0.1 and
 * 198.18.0.2), a real redis-server in host 1, a daemon in each. Host 2 joins with host 1's
 * token, opens the CA and admin credential host 1 sealed with it, and serves with them, so:
 *  - both state dirs hold the same CA and admin certificate, and host 1's kubeconfig works
 *    against host 2's API on its node IP (and host 2's against host 1's);
 *  - host 1's API forwards kubectl logs, exec and port-forward to the node agent of a pod on
 *    host 2 (verified against the cluster CA);
 *  - a pod on host 2 resolves and reaches kubernetes.default and the kube-dns ClusterIP: host 2
 *    runs its API and DNS on other ports than host 1 (6444, 1054), so only the Services'
 *    internalTrafficPolicy Local keeps host 2's proxy off host 1's loopback endpoints (UDP DNS
 *    to 127.0.0.1:1053 on host 2 would go unanswered);
 *  - a daemon with a wrong token is refused in one line.
 */
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type RunningDaemon, startDaemon } from './helpers/daemon.js';
import { type NetnsHost, startNetnsHosts } from './helpers/netns-hosts.js';
import { waitFor } from './helpers/wait.js';

const SERVICE_CIDR = '127.226.0.0/16';
const POD_CIDR = '127.227.0.0/16';
const LB_POOL = '127.228.0.0/16';
const KUBE_DNS_IP = '127.226.0.10';
const FORWARD_PORT = 18_226;

const POD = `
apiVersion: v1
kind: Pod
metadata: { name: ident, labels: { app: ident } }
spec:
  nodeName: host-2
  containers:
    - name: echo
      image: echo
      ports: [{ containerPort: 8080 }, { containerPort: 5353, protocol: UDP }]
`;

t.test('one CA, one admin credential, every API reaches every node', async (t) => {
  const lan = await startNetnsHosts(t, { hosts: 2, redis: true });
  const [h1, h2] = lan.hosts;
  const daemons: RunningDaemon[] = [];
  t.teardown(async () => {
    for (const d of daemons.reverse()) await d.stop();
  });
  const common = ['--store', lan.redisUrl!, '--service-cidr', SERVICE_CIDR, '--lb-pool', LB_POOL, '--pod-cidr', POD_CIDR, '--tunnel-port', '10251', '--log-level', 'warn'];
  const up = async (h: NetnsHost, name: string, extra: string[]): Promise<RunningDaemon> => {
    const d = await startDaemon([...common, '--node-name', name, '--node-ip', h.ip, ...extra], { prefix: h.wrap([]), timeoutMs: 60_000 });
    daemons.push(d);
    return d;
  };
  const d1 = await up(h1, 'host-1', ['--api-addr', '127.0.0.1:6443', '--dns-addr', '127.0.0.1:1053']);
  const token = (await readFile(join(d1.stateDir, 'join-token'), 'utf8')).trim();
  const d2 = await up(h2, 'host-2', ['--api-addr', '127.0.0.1:6444', '--dns-addr', '127.0.0.1:1054', '--join', token]);
  const kc1 = join(d1.stateDir, 'kubeconfig');
  const kc2 = join(d2.stateDir, 'kubeconfig');
  const k1 = (...args: string[]) => h1.run(['kubectl', '--kubeconfig', kc1, ...args]);

  const apply = await h1.run(['kubectl', '--kubeconfig', kc1, 'apply', '-f', '-'], { input: POD });
  t.equal(apply.code, 0, `apply: ${apply.stderr}`);

  await t.test("both state dirs hold the cluster's CA and admin credential; each kubeconfig works on the other host's API", async (t) => {
    const file = (d: RunningDaemon, f: string) => readFile(join(d.stateDir, 'pki', f), 'utf8');
    t.equal(await file(d2, 'ca.crt'), await file(d1, 'ca.crt'), 'one CA certificate');
    t.equal(await file(d2, 'ca.key'), await file(d1, 'ca.key'), 'one CA key');
    t.equal(await file(d2, 'admin.crt'), await file(d1, 'admin.crt'), 'one admin certificate');
    const onB = await h1.run(['kubectl', '--kubeconfig', kc1, '--server', `https://${h2.ip}:6444`, 'get', 'nodes', '-o', 'name']);
    t.equal(onB.code, 0, `host 1's kubeconfig against ${h2.ip}:6444: ${onB.stderr}`);
    t.same(onB.stdout.trim().split('\n').sort(), ['node/host-1', 'node/host-2'], 'both nodes, through host 2 API');
    const onA = await h2.run(['kubectl', '--kubeconfig', kc2, '--server', `https://${h1.ip}:6443`, 'get', 'nodes', '-o', 'name']);
    t.equal(onA.code, 0, `host 2's kubeconfig against ${h1.ip}:6443: ${onA.stderr}`);
    const secret = JSON.parse((await k1('get', 'secret', '-n', 'kube-system', 'kubeloop-join', '-o', 'json')).stdout) as { data: Record<string, string> };
    t.same(Object.keys(secret.data).sort(), ['identity.iv', 'identity.salt', 'identity.sealed', 'token-sha256'], 'the join Secret: the token hash and the sealed identity');
    const sealed = Buffer.from(secret.data['identity.sealed'], 'base64').toString('latin1');
    t.notOk(sealed.includes('PRIVATE KEY') || sealed.includes('CERTIFICATE'), 'no PEM in the clear');
  });

  const pod = await waitFor(async () => {
    const r = await k1('get', 'pod', 'ident', '-o', 'json');
    const p = JSON.parse(r.stdout || '{}') as { status?: { podIP?: string; conditions?: Array<{ type: string; status: string }> } };
    return p.status?.podIP && p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? { ip: p.status.podIP } : undefined;
  }, { what: 'pod ident Ready on host-2', timeoutMs: 40_000, intervalMs: 300 });

  await t.test("host 1's API: logs, exec and port-forward of a pod on host 2", async (t) => {
    const logs = await waitFor(async () => {
      const r = await k1('logs', 'ident');
      return r.code === 0 && r.stdout.includes('listening') ? r : undefined;
    }, { what: 'kubectl logs ident through host 1', timeoutMs: 10_000, intervalMs: 300 });
    t.match(logs.stdout, `listening on ${pod.ip}:5353/udp`, 'kubectl logs: the container log, from host 2');

    const exec = await k1('exec', 'ident', '--', 'sh', '-c', 'echo "$POD_NAME on $NODE_NAME"');
    t.equal(exec.code, 0, `kubectl exec: ${exec.stderr}`);
    t.equal(exec.stdout.trim(), 'ident on host-2', 'kubectl exec runs in the pod on host 2');

    const pf = h1.spawn(['kubectl', '--kubeconfig', kc1, 'port-forward', 'pod/ident', `${FORWARD_PORT}:8080`], { stdio: ['ignore', 'pipe', 'pipe'] });
    t.teardown(() => void pf.kill('SIGKILL'));
    let out = '';
    pf.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
    pf.stderr!.setEncoding('utf8').on('data', (c: string) => (out += c));
    await waitFor(() => out.includes('Forwarding from'), { what: `kubectl port-forward to listen (${out})`, timeoutMs: 15_000, intervalMs: 100 });
    const curl = await h1.run(['curl', '-s', '--max-time', '5', `http://127.0.0.1:${FORWARD_PORT}/`]);
    t.match(curl.stdout, 'pod=ident', 'port-forward on host 1 reaches the pod on host 2');
    t.match(curl.stdout, 'node=host-2');
    pf.kill('SIGTERM');
  });

  await t.test('a pod on host 2 resolves and reaches kubernetes.default and kube-dns (internalTrafficPolicy Local)', async (t) => {
    const svc = JSON.parse((await k1('get', 'service', '-n', 'kube-system', 'kube-dns', '-o', 'json')).stdout) as { spec: { clusterIP: string; internalTrafficPolicy?: string } };
    t.equal(svc.spec.clusterIP, KUBE_DNS_IP, 'kube-dns has its ClusterIP');
    t.equal(svc.spec.internalTrafficPolicy, 'Local', 'kube-dns is internalTrafficPolicy Local');
    const api = JSON.parse((await k1('get', 'service', 'kubernetes', '-o', 'json')).stdout) as { spec: { clusterIP: string; internalTrafficPolicy?: string; ports: Array<{ port: number }> } };
    t.equal(api.spec.internalTrafficPolicy, 'Local', 'kubernetes is internalTrafficPolicy Local');
    const eps = JSON.parse((await k1('get', 'endpoints', 'kubernetes', '-o', 'json')).stdout) as { subsets: Array<{ addresses?: Array<{ ip: string; nodeName?: string }>; ports: Array<{ port: number }> }> };
    const listed = eps.subsets.flatMap((s) => (s.addresses ?? []).map((a) => `${a.nodeName}=${a.ip}:${s.ports[0].port}`)).sort();
    t.same(listed, ['host-1=127.0.0.1:6443', 'host-2=127.0.0.1:6444'], 'each node lists its own API under its name');

    const resolv = await k1('exec', 'ident', '--', 'cat', '/etc/resolv.conf');
    t.match(resolv.stdout, `nameserver ${KUBE_DNS_IP}`, "the pod's nameserver is the kube-dns ClusterIP");
    // UDP through host 2's kube-dns portal, several times: a Cluster policy would send some to 127.0.0.1:1053, where host 2 has nothing
    let answered = 0;
    for (let i = 0; i < 6; i++) {
      const r = await k1('exec', 'ident', '--', 'dig', '+short', '+search', '+tries=1', '+time=2', 'kubernetes.default');
      if (r.stdout.trim() === api.spec.clusterIP) answered++;
    }
    t.equal(answered, 6, `6 of 6 lookups of kubernetes.default through ${KUBE_DNS_IP} answered ${api.spec.clusterIP}`);
    const version = await k1('exec', 'ident', '--', 'curl', '-sk', '--max-time', '5', `https://kubernetes.default.svc.cluster.local:${api.spec.ports[0].port}/version`);
    t.match(version.stdout, /"gitVersion"/, `the pod reaches the API at kubernetes.default: ${version.stdout.slice(0, 120)} ${version.stderr}`);
    const tcpDns = await k1('exec', 'ident', '--', 'dig', '+short', '+tcp', `@${KUBE_DNS_IP}`, 'kube-dns.kube-system.svc.cluster.local');
    t.equal(tcpDns.stdout.trim(), KUBE_DNS_IP, 'DNS over TCP to the kube-dns ClusterIP from the pod');
  });

  await t.test('a daemon with a wrong token is refused in one line', async (t) => {
    const err = await startDaemon([...common, '--node-name', 'host-3', '--node-ip', h2.ip, '--api-addr', '127.0.0.1:6445', '--dns-addr', '127.0.0.1:1055', '--tunnel-port', '10252', '--join', 'not-the-token'], { prefix: h2.wrap([]), timeoutMs: 30_000 }).then(
      (d) => (daemons.push(d), undefined),
      (e: Error) => e.message,
    );
    t.ok(err, 'the daemon exits');
    const lines = (err ?? '').split('\n').filter((l) => /cannot join/.test(l));
    t.equal(lines.length, 1, `one line: ${err}`);
    t.match(lines[0], /the join token given is not this cluster's/);
    const nodes = await k1('get', 'nodes', '-o', 'name');
    t.notMatch(nodes.stdout, 'host-3', 'no Node registered');
  });
});
