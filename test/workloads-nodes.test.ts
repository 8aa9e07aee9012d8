/**
 * `kubeloop up --nodes 3`: three node agents with their own loopback IPs and pod CIDR slices, a
 * DaemonSet with a pod on each, and its NodePort open on every node IP.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { OptionsError, nodeLayout, resolveOptions } from '../src/cli/options.js';
import { startDaemon, tableAddresses } from './helpers/daemon.js';
import { get } from './helpers/http.js';
import { waitFor } from './helpers/wait.js';

t.test('node layout: names, IPs and pod CIDR slices; NodePorts default to every node IP', async (t) => {
  t.same(nodeLayout({ nodes: 1, nodeName: 'node-1', nodeIP: '127.0.0.1', podCidr: '127.244.0.0/16' }), [
    { name: 'node-1', ip: '127.0.0.1', podCidr: '127.244.0.0/16' },
  ]);
  t.same(nodeLayout({ nodes: 3, nodeName: 'node-1', nodeIP: '127.0.0.1', podCidr: '127.244.0.0/16' }), [
    { name: 'node-1', ip: '127.0.0.1', podCidr: '127.244.0.0/18' },
    { name: 'node-2', ip: '127.0.1.1', podCidr: '127.244.64.0/18' },
    { name: 'node-3', ip: '127.0.2.1', podCidr: '127.244.128.0/18' },
  ]);
  t.same(
    nodeLayout({ nodes: 2, nodeName: 'worker', nodeIP: '127.0.9.1', podCidr: '127.244.0.0/16' }).map((n) => n.name),
    ['worker', 'worker-2'],
  );
  const o = resolveOptions(['--nodes', '3'], '/tmp');
  t.same(o.nodePortAddresses, ['127.0.0.1', '127.0.1.1', '127.0.2.1'], 'NodePorts on every node IP');
  const given = resolveOptions(['--nodes', '3', '--nodeport-addresses', '127.0.0.1'], '/tmp');
  t.same(given.nodePortAddresses, ['127.0.0.1'], '--nodeport-addresses wins');
  t.throws(() => resolveOptions(['--nodes', '0'], '/tmp'), OptionsError);
  t.throws(() => resolveOptions(['--nodes', '65'], '/tmp'), /--nodes 65: give a whole number from 1 to 64/);
  t.throws(() => resolveOptions(['--nodes', '8', '--pod-cidr', '127.244.0.0/28'], '/tmp'), /too small for 8 nodes/);
  t.throws(() => resolveOptions(['--nodes', '3', '--node-ip', '127.255.254.1'], '/tmp'), /outside 127\.0\.0\.0\/8/);
  t.throws(() => resolveOptions(['--nodes', '2', '--node-ip', '127.243.255.1'], '/tmp'), /node IP 127\.244\.0\.1 \(node-2\) falls inside --pod-cidr/);
});

t.test('kubeloop up --nodes 3: a DaemonSet pod per node, NodePort on each node IP', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-nodes-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(
    join(dir, 'agent.yaml'),
    `apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: echo
        image: kubeloop/echo
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: agent
spec:
  type: NodePort
  selector: {app: agent}
  ports: [{port: 80, targetPort: 8080, nodePort: 30123}]
`,
  );
  const d = await startDaemon([
    '-f', dir,
    '--nodes', '3',
    '--node-ip', '127.0.90.1',
    '--service-cidr', '127.126.0.0/16',
    '--pod-cidr', '127.252.0.0/16',
    '--lb-pool', '127.143.0.0/16',
    '--api-addr', '127.0.0.1:0',
    '--dns-addr', '127.0.0.1:0',
    '--log-level', process.env.KUBELOOP_TEST_LOG ?? 'warn',
  ]);
  t.teardown(() => d.stop());
  const nodeIPs = ['127.0.90.1', '127.0.91.1', '127.0.92.1'];
  const addrs = tableAddresses(d.stdout(), 'default/agent');
  for (const ip of nodeIPs) t.ok(addrs.includes(`${ip}:30123`), `NodePort listed on ${ip}`);
  const seen = new Map<string, string>();
  const answered = new Set<string>();
  // each node IP answers; the round robin reaches the pod of every node
  await waitFor(async () => {
    for (const ip of nodeIPs) {
      const r = await get(`http://${ip}:30123/`).catch(() => undefined);
      if (r?.status !== 200) continue;
      answered.add(ip);
      const m = /pod=(\S+) namespace=\S+ ip=(\S+) node=(\S+)/.exec(r.body)!;
      seen.set(m[3], m[2]);
    }
    return answered.size === 3 && seen.size === 3;
  }, { what: `answers from every node through every node IP (so far ${[...seen.keys()]})\n${d.stdout()}`, timeoutMs: 10_000 }).catch(() => undefined);
  t.equal(answered.size, 3, 'the NodePort answers on every node IP');
  t.same([...seen.keys()].sort(), ['node-1', 'node-2', 'node-3'], 'one daemon pod on each node answered');
  t.match(seen.get('node-1'), /^127\.252\.([0-9]|[1-5][0-9]|6[0-3])\./, 'node-1 pod IP in the first slice (127.252.0.0/18)');
  t.match(seen.get('node-2'), /^127\.252\.(6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7])\./, 'node-2 pod IP in the second slice');
});
