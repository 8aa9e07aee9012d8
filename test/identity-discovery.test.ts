/**
 * issue 17 part 4 with the real kubectl 1.32, one daemon: `auth can-i` / `auth whoami`
 * (SelfSubjectAccessReview, SelfSubjectReview), ServiceAccounts (a `default` per namespace, made
 * again when deleted), Ingress and PodDisruptionBudget served with their columns and validation,
 * `kubectl proxy` through services/proxy and pods/proxy.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { type ApiClient, daemonApi } from './helpers/api.js';
import { WEB_ECHO_MANIFEST, startDaemon } from './helpers/daemon.js';
import { waitFor } from './helpers/wait.js';

const ARGS = [
  '--pod-cidr', '127.124.0.0/16',
  '--service-cidr', '127.125.0.0/16',
  '--lb-pool', '127.127.0.0/16',
  '--node-ip', '127.0.124.1',
  '--nodeport-addresses', '127.0.124.1',
  '--api-addr', '127.0.0.1:0',
  '--dns-addr', '127.0.0.1:0',
  '--metrics-addr=',
  '--log-level', 'warn',
];

const d = await startDaemon(ARGS);
t.teardown(() => d.stop());
const api: ApiClient = await daemonApi(d);
const dir = await mkdtemp(join(tmpdir(), 'kubeloop-identity-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

const kubectl = async (...args: string[]): Promise<string> => {
  const r = await api.kubectl(...args);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.code} ${r.stderr}`);
  return r.stdout;
};

t.test('kubectl auth can-i and auth whoami', async (t) => {
  t.equal((await api.kubectl('auth', 'can-i', 'create', 'deployments')).stdout.trim(), 'yes');
  t.equal((await api.kubectl('auth', 'can-i', 'delete', 'pods', '-n', 'kube-system')).stdout.trim(), 'yes');
  t.equal((await api.kubectl('auth', 'can-i', 'get', '/healthz')).stdout.trim(), 'yes', 'a non-resource URL');
  const list = await kubectl('auth', 'can-i', '--list');
  t.match(list, /^\*\.\*\s+\[\]\s+\[\]\s+\[\*\]$/m, 'can-i --list: every verb on every resource');
  t.match(list, /^\s+\[\*\]\s+\[\]\s+\[\*\]$/m, 'and on every non-resource URL');
  const who = await kubectl('auth', 'whoami', '-o', 'json');
  const info = (JSON.parse(who) as { status: { userInfo: { username: string; groups: string[] } } }).status.userInfo;
  t.equal(info.username, 'kubeloop-admin', 'the client certificate CN');
  t.same(info.groups, ['system:masters', 'system:authenticated'], 'its O, and system:authenticated');
  // neither attribute set: a 422 naming the field, nothing stored
  const bad = await api.request('POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', {
    body: { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview', spec: {} },
  });
  t.equal(bad.status, 422);
  t.match(bad.body, /spec\.resourceAttributes.*exactly one of nonResourceAttributes or resourceAttributes/);
  t.equal((await api.request('GET', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews')).status, 405, 'create only');
});

t.test('ServiceAccounts: a default one per namespace, made again when deleted', async (t) => {
  await waitFor(async () => (await api.kubectl('get', 'sa', 'default', '-n', 'default')).code === 0, { timeoutMs: 10_000, intervalMs: 200, what: 'default/default' });
  await kubectl('create', 'namespace', 'team-a');
  await waitFor(async () => (await api.kubectl('get', 'sa', 'default', '-n', 'team-a')).code === 0, { timeoutMs: 10_000, intervalMs: 200, what: 'team-a/default' });
  const uid = await kubectl('get', 'sa', 'default', '-n', 'team-a', '-o', 'jsonpath={.metadata.uid}');
  await kubectl('delete', 'sa', 'default', '-n', 'team-a');
  await waitFor(async () => {
    const r = await api.kubectl('get', 'sa', 'default', '-n', 'team-a', '-o', 'jsonpath={.metadata.uid}');
    return r.code === 0 && r.stdout !== uid;
  }, { timeoutMs: 10_000, intervalMs: 200, what: 'a new team-a/default' });
  await kubectl('create', 'serviceaccount', 'builder', '-n', 'team-a');
  const table = await kubectl('get', 'sa', '-n', 'team-a');
  t.match(table, /^NAME\s+SECRETS\s+AGE$/m);
  t.match(table, /^builder\s+0\s+\S+$/m);
  t.match(table, /^default\s+0\s+\S+$/m);
});

const INGRESS = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: web }
spec:
  ingressClassName: nginx
  rules:
    - host: web.example.test
      http:
        paths:
          - { path: /, pathType: Prefix, backend: { service: { name: web, port: { number: 80 } } } }
`;
const PDB = `apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: { name: web }
spec:
  minAvailable: 1
  selector: { matchLabels: { app: web } }
`;

t.test('Ingress and PodDisruptionBudget: served, printed, validated', async (t) => {
  await writeFile(join(dir, 'ing.yaml'), INGRESS);
  await writeFile(join(dir, 'pdb.yaml'), PDB);
  await kubectl('apply', '-f', join(dir, 'ing.yaml'), '-f', join(dir, 'pdb.yaml'));
  t.match(await kubectl('get', 'ingress'), /^web\s+nginx\s+web\.example\.test\s+80\s+\S+$/m);
  t.match(await kubectl('get', 'ing', 'web', '-o', 'jsonpath={.spec.rules[0].http.paths[0].backend.service.name}'), /^web$/);
  t.match(await kubectl('get', 'pdb'), /^web\s+1\s+N\/A\s+0\s+\S+$/m);
  // bad input: refused with the field and nothing changes
  const badPdb = PDB.replace('name: web }', 'name: both }').replace('minAvailable: 1', 'minAvailable: 1\n  maxUnavailable: "150%"');
  await writeFile(join(dir, 'bad-pdb.yaml'), badPdb);
  const r = await api.kubectl('apply', '-f', join(dir, 'bad-pdb.yaml'));
  t.not(r.code, 0);
  t.match(r.stderr, /minAvailable and maxUnavailable cannot be both set/);
  t.match(r.stderr, /spec\.maxUnavailable.*must not be greater than 100%/);
  const badIng = INGRESS.replace('name: web }', 'name: bad }').replace('pathType: Prefix', 'pathType: Glob');
  await writeFile(join(dir, 'bad-ing.yaml'), badIng);
  const ri = await api.kubectl('apply', '-f', join(dir, 'bad-ing.yaml'));
  t.not(ri.code, 0);
  t.match(ri.stderr, /spec\.rules\[0\]\.http\.paths\[0\]\.pathType: Unsupported value: "Glob"/);
  t.equal((await api.kubectl('get', 'pdb', 'both')).code, 1, 'the invalid PDB was not stored');
  const res = await kubectl('api-resources', '--no-headers');
  for (const row of [/^serviceaccounts\s+sa\s+v1\s+true\s+ServiceAccount$/m, /^ingresses\s+ing\s+networking\.k8s\.io\/v1\s+true\s+Ingress$/m, /^poddisruptionbudgets\s+pdb\s+policy\/v1\s+true\s+PodDisruptionBudget$/m, /^selfsubjectreviews\s+authentication\.k8s\.io\/v1\s+false\s+SelfSubjectReview$/m]) {
    t.match(res, row);
  }
});

t.test('kubectl proxy: services/proxy and pods/proxy stream to the cluster\'s own endpoints', async (t) => {
  await writeFile(join(dir, 'web.yaml'), WEB_ECHO_MANIFEST);
  await kubectl('apply', '-f', join(dir, 'web.yaml'));
  await waitFor(async () => (await api.kubectl('get', 'endpoints', 'web', '-o', 'jsonpath={.subsets[0].addresses[0].ip}')).stdout !== '', { timeoutMs: 20_000, intervalMs: 200, what: 'a ready web endpoint' });
  const pod = await kubectl('get', 'pods', '-l', 'app=web', '-o', 'jsonpath={.items[0].metadata.name}');

  const proxy = spawn('kubectl', ['--kubeconfig', api.kubeconfig, 'proxy', '--port=0', '--address=127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => proxy.kill('SIGKILL'));
  let said = '';
  proxy.stdout.on('data', (c: Buffer) => (said += c.toString()));
  const port = await waitFor(() => /Starting to serve on 127\.0\.0\.1:(\d+)/.exec(said)?.[1], { timeoutMs: 10_000, intervalMs: 50, what: 'kubectl proxy to listen' });
  const curl = (path: string): Promise<{ code: number; out: string }> =>
    new Promise((resolve) => {
      execFile('curl', ['-sS', '-m', '10', '-w', '\n%{http_code}', `http://127.0.0.1:${port}${path}`], (err, stdout) => {
        const i = stdout.lastIndexOf('\n');
        resolve({ code: err ? -1 : Number(stdout.slice(i + 1)), out: stdout.slice(0, i) });
      });
    });

  for (const path of ['/api/v1/namespaces/default/services/web:80/proxy/hello?x=1', '/api/v1/namespaces/default/services/http:web:80/proxy/hello?x=1', '/api/v1/namespaces/default/services/web/proxy/hello?x=1']) {
    const r = await curl(path);
    t.equal(r.code, 200, path);
    t.match(r.out, new RegExp(`pod=${pod} namespace=default`), `${path}: answered by the pod`);
    t.match(r.out, /GET \/hello\?x=1/, `${path}: the path after /proxy and the query reach the pod`);
  }
  const byPod = await curl(`/api/v1/namespaces/default/pods/${pod}:8080/proxy/from-pod`);
  t.equal(byPod.code, 200);
  t.match(byPod.out, /GET \/from-pod/);
  const dns = await curl('/api/v1/namespaces/kube-system/services/kube-dns:dns/proxy');
  t.equal(dns.code, 503, 'kube-dns serves no HTTP: a Status, not a 404');
  t.match(dns.out, /port dns of service \\?"kube-dns\\?" is UDP/);
  const missing = await curl('/api/v1/namespaces/default/services/nope:80/proxy/');
  t.equal(missing.code, 404);
  t.match(missing.out, /services \\?"nope\\?" not found/);
  const badPort = await curl('/api/v1/namespaces/default/services/web:9999/proxy/');
  t.equal(badPort.code, 503);
  t.match(badPort.out, /no service port \\?"9999\\?" found for service \\?"web\\?"/);
  const res = await kubectl('get', '--raw', '/api/v1');
  t.ok((JSON.parse(res) as { resources: { name: string }[] }).resources.some((r) => r.name === 'services/proxy'), 'services/proxy in discovery');
});

t.test('kubectl explain: the upstream field descriptions (OpenAPI v3 from kubernetes-types)', async (t) => {
  const spec = await kubectl('explain', 'deployment.spec');
  t.match(spec, /KIND:\s+Deployment/);
  t.match(spec, /DeploymentSpec is the specification of the desired behavior of the\s+Deployment\./);
  t.match(spec, /replicas\s+<integer>\s+Number of desired pods\./);
  t.match(spec, /template\s+<PodTemplateSpec> -required-\s+Template describes the pods that will be created\./);
  t.notMatch(spec, /<no description>/);
  const field = await kubectl('explain', 'pods.spec.containers.image');
  t.match(field, /Container image name\./);
  t.match(field, /FIELD: image <string>/);
  const sa = await kubectl('explain', 'serviceaccount');
  t.match(sa, /ServiceAccount binds together:/);
});
