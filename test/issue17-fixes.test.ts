/**
 * issue 17 part 5: boolean query parameters as Go's strconv.ParseBool (the official Python
 * client sends `watch=True`), and `kubectl apply --server-side` twice on objects whose ports omit
 * `protocol` (the list-map key `port`+`protocol` takes the defaulted TCP). One daemon.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { type ApiClient, daemonApi } from './helpers/api.js';
import { startDaemon } from './helpers/daemon.js';

const ARGS = [
  '--pod-cidr', '127.121.0.0/16',
  '--service-cidr', '127.122.0.0/16',
  '--lb-pool', '127.123.0.0/16',
  '--node-ip', '127.0.121.1',
  '--nodeport-addresses', '127.0.121.1',
  '--api-addr', '127.0.0.1:0',
  '--dns-addr', '127.0.0.1:0',
  '--metrics-addr=',
  '--log-level', 'warn',
];

const d = await startDaemon(ARGS);
t.teardown(() => d.stop());
const api: ApiClient = await daemonApi(d);
const dir = await mkdtemp(join(tmpdir(), 'kubeloop-i17-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

t.test('boolean query parameters: every strconv.ParseBool spelling, 400 naming the parameter otherwise', async (t) => {
  // a watch answers with a stream, bounded by timeoutSeconds=1: all six at once
  const trues = ['1', 't', 'T', 'TRUE', 'true', 'True'];
  const watches = await Promise.all(trues.map((v) => api.request('GET', `/api/v1/namespaces/default/configmaps?watch=${v}&timeoutSeconds=1`)));
  for (const [i, r] of watches.entries()) {
    t.equal(r.status, 200, `watch=${trues[i]}`);
    t.notOk(r.body.includes('"kind":"ConfigMapList"'), `watch=${trues[i]} is a watch, not a list`);
  }
  for (const v of ['0', 'f', 'F', 'FALSE', 'false', 'False']) {
    const r = await api.request('GET', `/api/v1/namespaces/default/configmaps?watch=${v}`);
    t.equal(r.status, 200);
    t.equal(r.json<{ kind: string }>().kind, 'ConfigMapList', `watch=${v} is a list`);
  }
  for (const [param, path] of [
    ['watch', '/api/v1/namespaces/default/configmaps'],
    ['allowWatchBookmarks', '/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1'],
  ] as const) {
    const r = await api.request('GET', `${path}${path.includes('?') ? '&' : '?'}${param}=yes`);
    t.equal(r.status, 400, `${param}=yes`);
    t.match(r.json<{ message: string }>().message, new RegExp(`query parameter ${param}: must be a boolean`));
  }
});

t.test('the official Python client: list, and watch.Watch().stream(list_namespaced_pod) receives events', async (t) => {
  const script = `
import sys, threading
from kubernetes import client, config, watch
config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
print("LIST", len(v1.list_namespaced_config_map("default").items), flush=True)
w = watch.Watch()
def make():
    import time
    time.sleep(0.3)
    v1.create_namespaced_config_map("default", {"metadata": {"name": "py-cm"}, "data": {"a": "1"}})
threading.Thread(target=make).start()
for ev in w.stream(v1.list_namespaced_config_map, "default", timeout_seconds=10):
    print("EVENT", ev["type"], ev["object"].metadata.name, flush=True)
    if ev["object"].metadata.name == "py-cm":
        w.stop()
`;
  const file = join(dir, 'watch.py');
  await writeFile(file, script);
  const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const p = spawn('/usr/bin/python3', [file, api.kubeconfig], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
  t.equal(out.code, 0, out.stderr);
  t.match(out.stdout, /^LIST \d+$/m);
  t.match(out.stdout, /^EVENT ADDED py-cm$/m, 'the watch delivered the create');
});

const SVC = (extra: string) => `apiVersion: v1
kind: Service
metadata: { name: ssa-svc }
spec:
  selector: { app: ssa }
  ports:
    - { name: http, port: 80, targetPort: 8080 }
    - { name: metrics, port: 9090${extra} }
`;
const DEPLOY = `apiVersion: apps/v1
kind: Deployment
metadata: { name: ssa-deploy }
spec:
  replicas: 0
  selector: { matchLabels: { app: ssa } }
  template:
    metadata: { labels: { app: ssa } }
    spec:
      containers:
        - name: echo
          image: echo
          ports: [{ name: http, containerPort: 8080 }, { name: metrics, containerPort: 9090 }]
`;

t.test('kubectl apply --server-side twice (and after a client-side apply) with ports that omit protocol', async (t) => {
  const svc = join(dir, 'svc.yaml');
  const dep = join(dir, 'deploy.yaml');
  await writeFile(svc, SVC(''));
  await writeFile(dep, DEPLOY);
  for (const f of [svc, dep]) {
    for (let i = 0; i < 2; i++) {
      const r = await api.kubectl('apply', '--server-side', '-f', f);
      t.equal(r.code, 0, `server-side apply #${i + 1} of ${f}: ${r.stderr}`);
    }
  }
  // a changed port through SSA: merged into the same item, not a second one
  await writeFile(svc, SVC(', targetPort: 9091'));
  const r = await api.kubectl('apply', '--server-side', '-f', svc);
  t.equal(r.code, 0, r.stderr);
  const got = await api.kubectl('get', 'svc', 'ssa-svc', '-o', 'jsonpath={range .spec.ports[*]}{.name}/{.protocol}/{.targetPort};{end}');
  t.equal(got.stdout, 'http/TCP/8080;metrics/TCP/9091;');

  // client-side first, then server-side
  await writeFile(svc, SVC('').replace('ssa-svc', 'csa-svc'));
  await writeFile(dep, DEPLOY.replace('ssa-deploy', 'csa-deploy'));
  for (const f of [svc, dep]) {
    const c = await api.kubectl('apply', '-f', f);
    t.equal(c.code, 0, c.stderr);
    for (let i = 0; i < 2; i++) {
      const s = await api.kubectl('apply', '--server-side', '-f', f);
      t.equal(s.code, 0, `server-side apply #${i + 1} after a client-side apply of ${f}: ${s.stderr}`);
    }
  }
  const ports = await api.kubectl('get', 'deploy', 'csa-deploy', '-o', 'jsonpath={range .spec.template.spec.containers[0].ports[*]}{.name}/{.protocol};{end}');
  t.equal(ports.stdout, 'http/TCP;metrics/TCP;');
  // an item with an explicit protocol owned by the applier stays one item too
  const mf = await api.kubectl('get', 'svc', 'ssa-svc', '-o', 'jsonpath={.metadata.managedFields[?(@.manager=="kubectl")].fieldsV1}');
  t.match(mf.stdout, /k:\{\\?"port\\?":80,\\?"protocol\\?":\\?"TCP\\?"\}/, 'the applier owns the item by its defaulted key');
});

t.test('kubectl logs --timestamps / --since-time / --since: per-line times recorded when the line was written', async (t) => {
  const pod = join(dir, 'clock.yaml');
  await writeFile(
    pod,
    `apiVersion: v1
kind: Pod
metadata: { name: clock }
spec:
  containers:
    - name: c
      image: busybox
      command: [sh, -c, 'echo first; sleep 2; echo second; exec sleep 600']
`,
  );
  t.equal((await api.kubectl('apply', '-f', pod)).code, 0);
  let out = '';
  const deadline = Date.now() + 20_000;
  while (!out.includes('second') && Date.now() < deadline) {
    out = (await api.kubectl('logs', 'clock', '--timestamps')).stdout;
    if (!out.includes('second')) await new Promise((r) => setTimeout(r, 250));
  }
  const lines = out.trim().split('\n');
  t.equal(lines.length, 2, out);
  const [t1, t2] = lines.map((l) => Date.parse(l.split(' ')[0]));
  t.match(lines[0], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z first$/);
  t.ok(t2 - t1 >= 1500 && t2 - t1 < 5000, `each line has its own time (${t2 - t1} ms apart)`);

  // metav1.Time on the wire has whole seconds: a second at or before the second line, after the first
  const between = new Date(Math.floor(t2 / 1000) * 1000).toISOString().replace('.000Z', 'Z');
  t.equal((await api.kubectl('logs', 'clock', `--since-time=${between}`)).stdout, 'second\n');
  t.equal((await api.kubectl('logs', 'clock', `--since-time=${new Date(t1 - 2000).toISOString()}`)).stdout, 'first\nsecond\n');
  t.equal((await api.kubectl('logs', 'clock', `--since-time=${new Date(t2 + 2000).toISOString()}`)).stdout, '');
  t.equal((await api.kubectl('logs', 'clock', '--since=1h', '--tail=1')).stdout, 'second\n');
  t.equal((await api.kubectl('logs', 'clock', '--since=1h')).stdout, 'first\nsecond\n');

  const r = await api.request('GET', '/api/v1/namespaces/default/pods/clock/log?timestamps=True&tailLines=1');
  t.equal(r.status, 200);
  t.match(r.body, /^\S+Z second\n$/, 'timestamps=True');
  const bad = await api.request('GET', '/api/v1/namespaces/default/pods/clock/log?sinceTime=yesterday');
  t.equal(bad.status, 400);
  t.match(bad.body, /invalid sinceTime: \\"yesterday\\" is not an RFC 3339 time/);
  const both = await api.request('GET', `/api/v1/namespaces/default/pods/clock/log?sinceSeconds=10&sinceTime=${between}`);
  t.equal(both.status, 422);
  t.match(both.body, /at most one of sinceTime or sinceSeconds may be specified/);
  await api.kubectl('delete', 'pod', 'clock', '--grace-period=0', '--force');
});
