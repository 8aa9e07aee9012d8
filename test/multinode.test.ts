/**
 * One cluster on two machines (issue 19): two network namespaces as hosts (198.18.0.1 and
 * 198.18.0.2), a real redis-server in host 1, a kubeloop daemon in each on that store. Pod IPs
 * are loopback addresses of their own host, so everything below crosses hosts only through the
 * node tunnels (src/agent/tunnel):
 *  - a ClusterIP answered, from each host, by every pod of a Deployment spread over both hosts;
 *  - a NodePort on host 2's address answered by pods of both hosts;
 *  - a headless Service's DNS answers (every pod IP) connectable from the other host;
 *  - UDP through a ClusterIP to a pod on the other host;
 *  - a LoadBalancer Service's ingress lists both hosts' addresses (as k3s' ServiceLB), and each
 *    host's address answers on the Service's port from the other host;
 *  - a port of a host-2 pod that nothing listens on: from host 1 the first connection is reset
 *    (the tunnel learns of the refusal after the local handshake), the next ones are refused as
 *    next to the pod (the refusal is mirrored for a while);
 *  - the tunnel refuses a client without a node's certificate, and a target that is not a pod
 *    port of that node (its own API port), and carries a node's CONNECT to one of its pods.
 */
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type RunningDaemon, ROOT, startDaemon } from './helpers/daemon.js';
import { type NetnsHost, startNetnsHosts } from './helpers/netns-hosts.js';
import { waitFor } from './helpers/wait.js';

const SERVICE_CIDR = '127.208.0.0/16';
const POD_CIDR = '127.207.0.0/16';
const NODE_PORT = 30_207;
const TUNNEL_PORT = 10251;
const LB_PORT = 8207;

const MANIFEST = `
apiVersion: apps/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 4
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
        - name: echo
          image: echo
          ports: [{ containerPort: 8080 }, { containerPort: 5353, protocol: UDP }]
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec:
  type: NodePort
  selector: { app: web }
  ports:
    - { name: http, port: 80, targetPort: 8080, nodePort: ${NODE_PORT} }
    - { name: dns, port: 53, targetPort: 5353, protocol: UDP }
---
apiVersion: v1
kind: Service
metadata: { name: web-lb }
spec:
  type: LoadBalancer
  selector: { app: web }
  ports: [{ port: ${LB_PORT}, targetPort: 8080 }]
---
apiVersion: v1
kind: Service
metadata: { name: web-headless }
spec:
  clusterIP: None
  selector: { app: web }
  ports: [{ port: 8080 }]
`;

interface PodInfo {
  name: string;
  ip: string;
  node: string;
}

t.test('two hosts, one cluster, pods reachable from both', async (t) => {
  const lan = await startNetnsHosts(t, { hosts: 2, redis: true });
  const [h1, h2] = lan.hosts;
  const daemons: RunningDaemon[] = [];
  t.teardown(async () => {
    for (const d of daemons.reverse()) await d.stop();
  });
  const common = ['--store', lan.redisUrl!, '--service-cidr', SERVICE_CIDR, '--lb-pool', '127.209.0.0/16', '--api-addr', '127.0.0.1:6443', '--dns-addr', '127.0.0.1:1053', '--tunnel-port', String(TUNNEL_PORT), '--log-level', 'warn', '--pod-cidr', POD_CIDR];
  const up = async (h: NetnsHost, i: number, extra: string[] = []): Promise<RunningDaemon> => {
    const d = await startDaemon([...common, '--node-name', `host-${i + 1}`, '--node-ip', h.ip, ...extra], { prefix: h.wrap([]), timeoutMs: 60_000 });
    daemons.push(d);
    return d;
  };
  const d1 = await up(h1, 0);
  // the join token the first daemon made (kept in its state dir)
  const token = (await readFile(join(d1.stateDir, 'join-token'), 'utf8')).trim();
  const d2 = await up(h2, 1, ['--join', token]);
  const kubectl = (h: NetnsHost, d: RunningDaemon, ...args: string[]) => h.run(['kubectl', '--kubeconfig', join(d.stateDir, 'kubeconfig'), ...args]);

  const apply = await h1.run(['kubectl', '--kubeconfig', join(d1.stateDir, 'kubeconfig'), 'apply', '-f', '-'], { input: MANIFEST });
  t.equal(apply.code, 0, `apply: ${apply.stderr}`);

  const pods = await waitFor(async () => {
    const r = await kubectl(h2, d2, 'get', 'pods', '-l', 'app=web', '-o', 'json');
    const items = (JSON.parse(r.stdout || '{"items":[]}') as { items: Array<{ metadata: { name: string }; spec: { nodeName?: string }; status: { podIP?: string; conditions?: Array<{ type: string; status: string }> } }> }).items;
    const ready = items.filter((p) => p.status.podIP && p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
    return ready.length === 4 ? ready.map((p): PodInfo => ({ name: p.metadata.name, ip: p.status.podIP!, node: p.spec.nodeName ?? '' })) : undefined;
  }, { what: '4 ready web pods', timeoutMs: 60_000, intervalMs: 500 });
  const onHost = (i: number) => pods.filter((p) => p.node === `host-${i + 1}`);
  t.ok(onHost(0).length >= 1 && onHost(1).length >= 1, `pods on both hosts: ${pods.map((p) => `${p.name}@${p.node}`).join(', ')}`);
  const names = new Set(pods.map((p) => p.name));

  const svc = JSON.parse((await kubectl(h1, d1, 'get', 'service', 'web', '-o', 'json')).stdout) as { spec: { clusterIP: string } };
  const clusterIP = svc.spec.clusterIP;

  /** GETs url from host h until every pod has answered (or `tries` are spent); the pod names seen */
  const answering = async (h: NetnsHost, url: string, tries = 40): Promise<Set<string>> => {
    const seen = new Set<string>();
    for (let i = 0; i < tries && seen.size < names.size; i++) {
      const r = await h.run(['curl', '-s', '--max-time', '3', url]);
      const m = /pod=(\S+)/.exec(r.stdout);
      if (m) seen.add(m[1]);
    }
    return seen;
  };

  await t.test('each host answers on every remote pod IP', async (t) => {
    for (const [i, h] of [h1, h2].entries()) {
      for (const p of onHost(1 - i)) {
        const body = await waitFor(async () => {
          const r = await h.run(['curl', '-s', '--max-time', '3', `http://${p.ip}:8080/`]);
          return r.stdout.includes(`pod=${p.name}`) ? r.stdout : undefined;
        }, { what: `${p.name} (${p.ip}, on host ${2 - i}) from host ${i + 1}`, timeoutMs: 20_000, intervalMs: 200 });
        t.match(body, `node=host-${2 - i}`, `host ${i + 1} reaches ${p.name} on host ${2 - i} at its pod IP`);
      }
    }
  });

  await t.test('the ClusterIP from each host: every pod answers', async (t) => {
    for (const [i, h] of [h1, h2].entries()) {
      const seen = await answering(h, `http://${clusterIP}/`);
      t.same([...seen].sort(), [...names].sort(), `from host ${i + 1}: all 4 pods through ${clusterIP}`);
    }
  });

  await t.test('the NodePort on host 2 address, from host 1: every pod answers', async (t) => {
    const seen = await answering(h1, `http://${h2.ip}:${NODE_PORT}/`);
    t.same([...seen].sort(), [...names].sort(), `${h2.ip}:${NODE_PORT} reaches the pods of both hosts`);
  });

  await t.test("a headless Service's DNS answer, from the other host, is connectable", async (t) => {
    const dig = await waitFor(async () => {
      const r = await h2.run(['dig', '+short', '@127.0.0.1', '-p', '1053', 'web-headless.default.svc.cluster.local', 'A']);
      const ips = r.stdout.trim().split('\n').filter(Boolean);
      return ips.length === 4 ? ips : undefined;
    }, { what: 'four A records from host 2', timeoutMs: 10_000, intervalMs: 200 });
    t.same([...dig].sort(), pods.map((p) => p.ip).sort(), 'the pod IPs of both hosts');
    for (const ip of dig) {
      const r = await h2.run(['curl', '-s', '--max-time', '3', `http://${ip}:8080/`]);
      t.match(r.stdout, /pod=web-/, `${ip} answers on host 2`);
    }
  });

  await t.test('UDP through the ClusterIP reaches a pod on the other host', async (t) => {
    // the UDP port of host 1's ClusterIP, round robin: ask until a host-2 pod has echoed
    const remote = new Set(onHost(1).map((p) => p.name));
    const seen = new Set<string>();
    for (let i = 0; i < 30 && ![...remote].every((n) => seen.has(n)); i++) {
      const r = await h1.run([process.execPath, '-e', UDP_ASK, clusterIP, '53', `hello-${i}`], { timeoutMs: 5000 });
      const m = /pod=(\S+)/.exec(r.stdout);
      if (m) {
        seen.add(m[1]);
        t.match(r.stdout, `hello-${i}`, 'the datagram came back echoed');
      }
    }
    t.ok([...remote].every((n) => seen.has(n)), `host-2 pods echoed over UDP from host 1 (seen: ${[...seen].join(', ')})`);
  });

  await t.test("a LoadBalancer Service: both hosts' addresses in its ingress, each answers from the other host", async (t) => {
    const ingress = await waitFor(async () => {
      const r = await kubectl(h2, d2, 'get', 'service', 'web-lb', '-o', 'jsonpath={.status.loadBalancer.ingress[*].ip}');
      const ips = r.stdout.trim().split(/\s+/).filter(Boolean);
      return ips.length === 2 ? ips : undefined;
    }, { what: 'two ingress IPs on web-lb', timeoutMs: 20_000, intervalMs: 200 });
    t.same(ingress, [h1.ip, h2.ip], 'the ingress is the Ready nodes\' InternalIPs, sorted (no pool address)');
    for (const [from, to] of [[h1, h2], [h2, h1]] as const) {
      const url = `http://${to.ip}:${LB_PORT}/`;
      const body = await waitFor(async () => {
        const r = await from.run(['curl', '-s', '--max-time', '3', url]);
        return /pod=web-/.test(r.stdout) ? r.stdout : undefined;
      }, { what: `${url} from ${from.ip}`, timeoutMs: 15_000, intervalMs: 200 });
      t.match(body, /pod=web-/, `${url} answers from host ${from.ip}`);
    }
    const seen = await answering(h2, `http://${h1.ip}:${LB_PORT}/`);
    t.same([...seen].sort(), [...names].sort(), `${h1.ip}:${LB_PORT} reaches the pods of both hosts`);
  });

  await t.test('a port nothing listens on, on a pod of the other host: refused here too after the first reset', async (t) => {
    const apply = await h1.run(['kubectl', '--kubeconfig', join(d1.stateDir, 'kubeconfig'), 'apply', '-f', '-'], {
      input: `apiVersion: v1
kind: Pod
metadata: { name: quiet }
spec:
  nodeName: host-2
  containers: [{ name: c, image: busybox, command: [sleep, '600'], ports: [{ containerPort: 8089 }] }]
`,
    });
    t.equal(apply.code, 0, `apply: ${apply.stderr}`);
    const ip = await waitFor(async () => {
      const r = await kubectl(h1, d1, 'get', 'pod', 'quiet', '-o', 'jsonpath={.status.phase} {.status.podIP}');
      const [phase, podIP] = r.stdout.trim().split(' ');
      return phase === 'Running' && podIP ? podIP : undefined;
    }, { what: 'pod quiet Running on host 2', timeoutMs: 30_000, intervalMs: 200 });
    // curl's exit codes: 7 connection refused, 56 connection reset (accepted, then cut)
    const codes: number[] = [];
    const refused = await waitFor(async () => {
      const r = await h1.run(['curl', '-s', '--max-time', '3', `http://${ip}:8089/`]);
      codes.push(r.code);
      return r.code === 7 ? true : undefined;
    }, { what: `${ip}:8089 refused from host 1`, timeoutMs: 15_000, intervalMs: 50 });
    t.ok(refused, `refused from host 1 after ${codes.length} tries (curl exit codes ${codes.join(',')})`);
    t.notOk(codes.includes(0), 'never answered');
    await kubectl(h1, d1, 'delete', 'pod', 'quiet', '--grace-period=0', '--force', '--wait=false');
  });

  await t.test('the tunnel: a node may reach its pods, nothing else and nobody else', async (t) => {
    const probe = join(ROOT, 'test', 'fixtures', 'tunnel-probe.mjs');
    const pki = join(d2.stateDir, 'pki');
    const cert = join(pki, 'tunnel.crt');
    const key = join(pki, 'tunnel.key');
    const target = onHost(0)[0];
    const run = async (...args: string[]) => JSON.parse((await h2.run([process.execPath, probe, `${h1.ip}:${TUNNEL_PORT}`, ...args])).stdout) as { status: number; body: string };

    const ok = await run(`${target.ip}:8080`, cert, key);
    t.equal(ok.status, 200, "host 2's node certificate reaches a pod of host 1");
    t.match(ok.body, `pod=${target.name}`);

    const anon = await run(`${target.ip}:8080`);
    t.equal(anon.status, 403, 'no client certificate: 403');
    t.notMatch(anon.body, /pod=/);
    // signed by the cluster CA, but not a node's: the admin credential
    const admin = await run(`${target.ip}:8080`, join(pki, 'admin.crt'), join(pki, 'admin.key'));
    t.equal(admin.status, 403, 'a cluster certificate that is not a node tunnel certificate: 403');

    const api = await run('127.0.0.1:6443', cert, key);
    t.equal(api.status, 403, "host 1's own API port is not a pod port: 403");
    const otherPort = await run(`${target.ip}:22`, cert, key);
    t.equal(otherPort.status, 403, 'a port the pod does not declare: 403');
    const remoteIP = await run(`${onHost(1)[0].ip}:8080`, cert, key);
    t.equal(remoteIP.status, 403, "a pod of another node (host 2's own): 403");
    const udp = await run(`${target.ip}:5353`, cert, key, 'udp', 'ping-udp');
    t.equal(udp.status, 200, 'CONNECT-UDP to the pod UDP port');
    t.match(udp.body, /ping-udp/);
    const udpBad = await run('127.0.0.1:1053', cert, key, 'udp', 'x');
    t.equal(udpBad.status, 403, "CONNECT-UDP to host 1's DNS port: 403");
  });
});

/** sends argv[2] to host argv[0] port argv[1] over UDP, prints the first reply (or nothing after 2 s) */
const UDP_ASK = `
const s = require('dgram').createSocket('udp4');
const [host, port, msg] = process.argv.slice(1);
s.on('message', (m) => { process.stdout.write(m.toString()); process.exit(0); });
s.send(msg, Number(port), host);
setTimeout(() => process.exit(0), 2000);
`;
