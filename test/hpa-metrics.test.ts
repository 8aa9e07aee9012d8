/**
 * issue 17 part 3 with the real kubectl 1.32 and one daemon sampling /proc every second:
 * `kubectl top pods/--containers/nodes` see a pod burn CPU; `kubectl autoscale` (an
 * autoscaling/v1 protobuf POST) makes an HPA that scales a Deployment up under real CPU load
 * and back down when it stops (scale-down stabilization made short through autoscaling/v2's
 * behavior); `get hpa` / `describe hpa` show it; validation names fields; a target without CPU
 * requests gets upstream's condition and event.
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import t from 'tap';
import { type ApiClient, daemonApi } from './helpers/api.js';
import { startDaemon } from './helpers/daemon.js';
import { waitFor } from './helpers/wait.js';

const ARGS = [
  '--pod-cidr', '127.134.0.0/16',
  '--service-cidr', '127.135.0.0/16',
  '--lb-pool', '127.136.0.0/16',
  '--node-ip', '127.0.134.1',
  '--nodeport-addresses', '127.0.134.1',
  '--api-addr', '127.0.0.1:0',
  '--dns-addr', '127.0.0.1:0',
  '--metrics-addr=',
  '--log-level', 'warn',
  '--metric-resolution', '1s',
  '--horizontal-pod-autoscaler-sync-period', '1s',
];

const d = await startDaemon(ARGS);
t.teardown(() => d.stop());
const api: ApiClient = await daemonApi(d);

const kubectl = async (...args: string[]): Promise<string> => {
  const r = await api.kubectl(...args);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.code} ${r.stderr}`);
  return r.stdout;
};

/** a Deployment whose pods burn one core for `?ms=` (at most 10 s) when asked over HTTP on $POD_IP:8080 */
const burner = (name: string, requests: boolean): string => `
apiVersion: apps/v1
kind: Deployment
metadata: { name: ${name} }
spec:
  replicas: 1
  selector: { matchLabels: { app: ${name} } }
  template:
    metadata: { labels: { app: ${name} } }
    spec:
      containers:
        - name: main
          image: node
          command: [node, -e]
          args:
            - |
              let until = 0;
              setInterval(() => { while (Date.now() < until) {} }, 20);
              require('http').createServer((q, s) => {
                const ms = Math.min(10000, Number(new URL(q.url, 'http://x').searchParams.get('ms')) || 0);
                until = Date.now() + ms;
                s.end('ok');
              }).listen(8080, process.env.POD_IP);
          ports: [{ containerPort: 8080 }]
${requests ? '          resources: { requests: { cpu: 100m } }' : ''}
`;

const apply = async (yaml: string): Promise<string> => {
  return new Promise((resolve, reject) => {
    const p = spawn('kubectl', ['--kubeconfig', api.kubeconfig, 'apply', '-f', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (c: Buffer) => (out += c));
    p.stderr.on('data', (c: Buffer) => (err += c));
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(err))));
    p.stdin.end(yaml);
  });
};

const burn = (ip: string, ms: number): Promise<void> =>
  new Promise((resolve, reject) => {
    http.get({ host: ip, port: 8080, path: `/?ms=${ms}`, agent: false }, (res) => res.resume().on('end', resolve)).on('error', reject);
  });

const podIPs = async (app: string): Promise<string[]> =>
  (await kubectl('get', 'pods', '-l', `app=${app}`, '--field-selector', 'status.phase=Running', '-o', 'jsonpath={.items[*].status.podIP}')).split(' ').filter(Boolean);

const replicas = async (name: string): Promise<number> => Number(await kubectl('get', 'deploy', name, '-o', 'jsonpath={.spec.replicas}'));

/** millicores of a `kubectl top` cell (`250m`, `1`) */
const milli = (cell: string): number => (cell.endsWith('m') ? Number(cell.slice(0, -1)) : Number(cell) * 1000);

t.test('kubectl top sees a busy pod; autoscale scales up under load and back down', async (t) => {
  await apply(burner('burn', true));
  await waitFor(async () => (await podIPs('burn')).length === 1, { timeoutMs: 20_000, intervalMs: 200, what: 'the burn pod running' });
  const [ip] = await podIPs('burn');
  // metrics appear once a pod has two samples
  await waitFor(async () => (await api.kubectl('top', 'pods', '-l', 'app=burn', '--no-headers')).stdout.includes('burn-'), { timeoutMs: 15_000, intervalMs: 300, what: 'pod metrics' });

  const out = await kubectl('autoscale', 'deploy/burn', '--cpu-percent=50', '--min=1', '--max=4');
  t.match(out, /horizontalpodautoscaler.autoscaling\/burn autoscaled/);
  const v1 = JSON.parse(await kubectl('get', '--raw', '/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/burn')) as { spec: Record<string, unknown> };
  t.same(v1.spec, { scaleTargetRef: { kind: 'Deployment', name: 'burn', apiVersion: 'apps/v1' }, minReplicas: 1, maxReplicas: 4, targetCPUUtilizationPercentage: 50 }, 'the v1 view of what kubectl autoscale created');
  // a short scale-down window through autoscaling/v2 (the v1 object keeps it in an annotation)
  await kubectl('patch', 'hpa', 'burn', '--type=merge', '-p', JSON.stringify({ spec: { behavior: { scaleDown: { stabilizationWindowSeconds: 2 } } } }));
  const v2 = JSON.parse(await kubectl('get', 'hpa', 'burn', '-o', 'json')) as { apiVersion: string; spec: { behavior: Record<string, Record<string, unknown>> } };
  t.equal(v2.apiVersion, 'autoscaling/v2');
  t.same(v2.spec.behavior.scaleDown, { stabilizationWindowSeconds: 2, selectPolicy: 'Max', policies: [{ type: 'Percent', value: 100, periodSeconds: 15 }] }, 'behavior defaulted around the given window');
  t.equal(v2.spec.behavior.scaleUp.stabilizationWindowSeconds, 0);
  await waitFor(async () => /cpu: \d+%\/50%/.test(await kubectl('get', 'hpa', 'burn', '--no-headers')), { timeoutMs: 15_000, intervalMs: 300, what: 'a current utilization' });
  t.equal(await replicas('burn'), 1, 'idle: one replica');

  // load: one core for 8 s against a 100m request
  const loadStart = Date.now();
  const load = burn(ip, 8000);
  await load;
  await waitFor(async () => {
    const lines = (await kubectl('top', 'pods', '-l', 'app=burn', '--no-headers')).trim().split('\n');
    return lines.some((l) => milli(l.split(/\s+/)[1]) >= 200);
  }, { timeoutMs: 8_000, intervalMs: 300, what: 'kubectl top showing the busy pod' });
  const containers = await kubectl('top', 'pods', '-l', 'app=burn', '--containers');
  t.match(containers, /^POD\s+NAME\s+CPU\(cores\)\s+MEMORY\(bytes\)/m);
  t.match(containers, /burn-\S+\s+main\s+\d+m\s+\d+Mi/);
  const nodes = await kubectl('top', 'nodes');
  t.match(nodes, /^NAME\s+CPU\(cores\)\s+CPU\(%\)\s+MEMORY\(bytes\)\s+MEMORY\(%\)/m);
  const nodeCpu = milli(/^node-1\s+(\S+)/m.exec(nodes)?.[1] ?? '0');
  t.ok(nodeCpu > 0, `node CPU is the sum of its pods': ${nodeCpu}m`);

  await waitFor(async () => (await replicas('burn')) > 1, { timeoutMs: 15_000, intervalMs: 250, what: 'a scale-up' });
  const upMs = Date.now() - loadStart;
  const table = await kubectl('get', 'hpa', 'burn');
  t.match(table, /^NAME\s+REFERENCE\s+TARGETS\s+MINPODS\s+MAXPODS\s+REPLICAS\s+AGE$/m);
  t.match(table, /^burn\s+Deployment\/burn\s+cpu: \d+%\/50%\s+1\s+4\s+\d\s+\S+$/m);
  const described = await kubectl('describe', 'hpa', 'burn');
  t.match(described, /SuccessfulRescale\s.*New size: \d; reason: cpu resource utilization \(percentage of request\) above target/);
  t.match(described, /ScalingActive\s+True\s+ValidMetricFound/);
  t.ok((await replicas('burn')) <= 4, 'never above maxReplicas');

  // the load is over: back to one replica after the 2 s window
  await waitFor(async () => (await replicas('burn')) === 1, { timeoutMs: 30_000, intervalMs: 250, what: 'the scale-down' });
  const downMs = Date.now() - (loadStart + 8000);
  const status = JSON.parse(await kubectl('get', 'hpa', 'burn', '-o', 'jsonpath={.status}')) as { lastScaleTime?: string; desiredReplicas: number; conditions: { type: string }[] };
  t.ok(status.lastScaleTime, 'lastScaleTime');
  t.same(status.conditions.map((c) => c.type).sort(), ['AbleToScale', 'ScalingActive', 'ScalingLimited']);
  t.match(await kubectl('describe', 'hpa', 'burn'), /New size: 1; reason: All metrics below target/);
  t.comment(`scale-up ${upMs} ms after the load started (8 s of one core); scale-down ${downMs} ms after it ended (2 s window, 1 s sync, 1 s metric resolution)`);
});

t.test('validation names the fields', async (t) => {
  const r = await api.request('POST', '/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers', {
    body: {
      apiVersion: 'autoscaling/v2',
      kind: 'HorizontalPodAutoscaler',
      metadata: { name: 'bad' },
      spec: {
        scaleTargetRef: { kind: 'Deployment' },
        minReplicas: 0,
        maxReplicas: 0,
        metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 0 } } }, { type: 'Bogus' }],
        behavior: { scaleDown: { stabilizationWindowSeconds: 4000, policies: [{ type: 'Pods', value: 0, periodSeconds: 1801 }] } },
      },
    },
  });
  t.equal(r.status, 422);
  const fields = (r.json<{ details: { causes: { field: string }[] } }>().details.causes ?? []).map((c) => c.field).sort();
  t.same(fields, [
    'spec.behavior.scaleDown.policies[0].periodSeconds',
    'spec.behavior.scaleDown.policies[0].value',
    'spec.behavior.scaleDown.stabilizationWindowSeconds',
    'spec.maxReplicas',
    'spec.metrics[0].resource.target.averageUtilization',
    'spec.metrics[1].type',
    'spec.minReplicas',
    'spec.scaleTargetRef.name',
  ]);
  const k = await apply(`apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: { name: bad2 }
spec: { scaleTargetRef: { apiVersion: apps/v1, kind: Deployment, name: burn }, minReplicas: 5, maxReplicas: 2 }
`).then(() => '', (e: Error) => e.message);
  t.match(k, /HorizontalPodAutoscaler "bad2" is invalid: spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`/, 'kubectl apply shows the field');
});

t.test('a target without CPU requests: ScalingActive False, missing request for cpu', async (t) => {
  await apply(burner('noreq', false));
  await kubectl('autoscale', 'deploy/noreq', '--cpu-percent=50', '--max=3');
  await waitFor(async () => /missing request for cpu in container main of Pod noreq-/.test(await kubectl('get', 'hpa', 'noreq', '-o', 'jsonpath={.status.conditions}')), {
    timeoutMs: 20_000,
    intervalMs: 300,
    what: 'the missing request condition',
  });
  const conds = JSON.parse(await kubectl('get', 'hpa', 'noreq', '-o', 'jsonpath={.status.conditions}')) as { type: string; status: string; reason: string }[];
  t.match(conds.find((c) => c.type === 'ScalingActive'), { status: 'False', reason: 'FailedGetResourceMetric' });
  t.match(await kubectl('describe', 'hpa', 'noreq'), /Warning\s+FailedGetResourceMetric\s.*missing request for cpu in container main of Pod noreq-/);
  t.equal(await replicas('noreq'), 1, 'left alone');
});
