/**
 * The real kubectl (v1.32) against kubeloop's API server over a real embedded store:
 * discovery, apply (created / unchanged / configured), Tables, typed `create` commands that
 * send protobuf, errors exactly as kubectl prints them against a cluster, patches, replace
 * conflicts, server dry-run, explain. Each run uses a fresh --cache-dir.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import type { ConfigMap, CronJob, Deployment, Job, Secret, Service } from '../src/api/types.js';
import { ApiServer, kubeconfigYaml } from '../src/server/index.js';
import { createEmbeddedStore } from '../src/store/embedded.js';
import { InformerFactory } from '../src/store/informer.js';
import { testPki } from './helpers/api.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function setup(t: { teardown(fn: () => unknown): void }) {
  const store = await createEmbeddedStore({});
  const informers = new InformerFactory(store);
  const dir = mkdtempSync(join(tmpdir(), 'kubeloop-kubectl-'));
  // HTTPS with the cluster CA and the admin client certificate, as `kubeloop up` serves it
  const pki = await testPki(dir);
  const api = new ApiServer({ store, informers, log: pino({ level: 'silent' }), address: '127.0.0.1', port: 0, stateDir: dir, tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca } });
  await api.start();
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, kubeconfigYaml({ server: api.url, ca: pki.ca, clientCert: pki.clientCert, clientKey: pki.clientKey }), { mode: 0o600 });
  t.teardown(async () => {
    await api.stop();
    informers.stop();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const kubectl = (args: string[], input?: string): Promise<Run> =>
    new Promise((resolve) => {
      const child = execFile('kubectl', ['--kubeconfig', kubeconfig, '--cache-dir', join(dir, 'cache'), ...args], { timeout: 20_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
      if (input !== undefined) child.stdin?.on('error', () => undefined).end(input);
    });
  const file = (name: string, text: string): string => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  return { store, api, kubectl, file, dir };
}

const SERVICE = `apiVersion: v1
kind: Service
metadata:
  name: myapp-service
  labels: {app: myapp}
spec:
  selector: {app: myapp}
  ports:
  - name: http
    port: 80
    targetPort: 8080
`;

const DEPLOYMENT = (image: string, replicas: number) => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: myapp
spec:
  replicas: ${replicas}
  selector: {matchLabels: {app: myapp}}
  template:
    metadata: {labels: {app: myapp}}
    spec:
      containers:
      - name: web
        image: ${image}
        ports: [{containerPort: 8080}]
`;

t.test('kubectl against the API server', async (t) => {
  const { store, kubectl, file } = await setup(t);

  await t.test('apply: created, unchanged, configured', async (t) => {
    const f = file('app.yaml', `${SERVICE}---\n${DEPLOYMENT('myapp:1.0', 2)}`);
    let r = await kubectl(['apply', '-f', f]);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /service\/myapp-service created\ndeployment.apps\/myapp created/);
    r = await kubectl(['apply', '-f', f]);
    t.match(r.stdout, /service\/myapp-service unchanged\ndeployment.apps\/myapp unchanged/);
    writeFileSync(f, `${SERVICE}---\n${DEPLOYMENT('myapp:1.1', 3)}`);
    r = await kubectl(['apply', '-f', f]);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /service\/myapp-service unchanged\ndeployment.apps\/myapp configured/);
    const d = await store.get<Deployment>('Deployment', 'default', 'myapp');
    t.equal(d.spec?.replicas, 3);
    t.same(d.spec?.template.spec?.containers.map((c) => c.image), ['myapp:1.1'], 'the strategic merge patch merged the container by name');
    t.equal(d.spec?.template.spec?.containers[0].ports?.[0].containerPort, 8080, 'fields the patch left alone stay');
  });

  await t.test('get with the usual columns, -o wide, -A, --show-labels, --sort-by', async (t) => {
    let r = await kubectl(['get', 'svc,deploy', '-o', 'wide']);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /NAME\s+TYPE\s+CLUSTER-IP\s+EXTERNAL-IP\s+PORT\(S\)\s+AGE\s+SELECTOR/);
    t.match(r.stdout, /service\/myapp-service\s+ClusterIP\s+127\.\d+\.\d+\.\d+\s+<none>\s+80\/TCP\s+\S+\s+app=myapp/);
    t.match(r.stdout, /NAME\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+AGE\s+CONTAINERS\s+IMAGES\s+SELECTOR/);
    t.match(r.stdout, /deployment.apps\/myapp\s+0\/3\s+0\s+0\s+\S+\s+web\s+myapp:1.1\s+app=myapp/);
    r = await kubectl(['get', 'ns', '-A', '--show-labels']);
    t.match(r.stdout, /kube-system\s+Active\s+\S+\s+kubernetes.io\/metadata.name=kube-system/);
    r = await kubectl(['get', 'svc', '-A', '--sort-by=.metadata.name']);
    t.match(r.stdout, /NAMESPACE\s+NAME/);
    t.match(r.stdout, /default\s+myapp-service/);
    r = await kubectl(['get', 'all']);
    t.match(r.stdout, /service\/myapp-service/, 'the all category');
  });

  await t.test('typed create commands send protobuf', async (t) => {
    let r = await kubectl(['create', 'service', 'clusterip', 'redis', '--tcp=6379:6379']);
    t.equal(r.stdout.trim(), 'service/redis created', r.stderr);
    const svc = await store.get<Service>('Service', 'default', 'redis');
    t.same(svc.spec?.ports, [{ name: '6379-6379', port: 6379, protocol: 'TCP', targetPort: 6379 }]);
    t.same(svc.spec?.selector, { app: 'redis' });
    r = await kubectl(['create', 'service', 'clusterip', 'redis', '--tcp=6379:6379']);
    t.equal(r.code, 1);
    t.equal(r.stderr.trim(), 'error: failed to create ClusterIP service: services "redis" already exists');

    r = await kubectl(['create', 'deployment', 'web', '--image=nginx', '--port=8080', '--replicas=2']);
    t.equal(r.stdout.trim(), 'deployment.apps/web created', r.stderr);
    const d = await store.get<Deployment>('Deployment', 'default', 'web');
    t.equal(d.spec?.replicas, 2);
    t.same(d.spec?.selector, { matchLabels: { app: 'web' } });
    t.same(d.spec?.template.spec?.containers.map((c) => [c.name, c.image, c.ports?.[0].containerPort]), [['nginx', 'nginx', 8080]]);
    r = await kubectl(['create', 'deployment', 'zero', '--image=nginx', '--replicas=0']);
    t.equal(r.code, 0, r.stderr);
    t.equal((await store.get<Deployment>('Deployment', 'default', 'zero')).spec?.replicas, 0, 'an explicit 0 survives (pointer field)');

    r = await kubectl(['create', 'configmap', 'cfg', '--from-literal=a=b', '--from-literal=c=d']);
    t.equal(r.code, 0, r.stderr);
    t.same((await store.get<ConfigMap>('ConfigMap', 'default', 'cfg')).data, { a: 'b', c: 'd' });
    r = await kubectl(['create', 'secret', 'generic', 'sec', '--from-literal=pw=s3cret']);
    t.equal(r.code, 0, r.stderr);
    const sec = await store.get<Secret>('Secret', 'default', 'sec');
    t.equal(Buffer.from(sec.data?.pw ?? '', 'base64').toString(), 's3cret');
    r = await kubectl(['create', 'namespace', 'other']);
    t.equal(r.stdout.trim(), 'namespace/other created', r.stderr);
    r = await kubectl(['create', 'job', 'j1', '--image=busybox', '--', 'echo', 'hi']);
    t.equal(r.code, 0, r.stderr);
    const job = await store.get<Job>('Job', 'default', 'j1');
    t.same(job.spec?.template.spec?.containers[0].command, ['echo', 'hi']);
    t.equal(job.spec?.template.spec?.restartPolicy, 'Never');
    r = await kubectl(['create', 'cronjob', 'cj', '--image=busybox', '--schedule=*/5 * * * *', '--', 'date']);
    t.equal(r.code, 0, r.stderr);
    const cj = await store.get<CronJob>('CronJob', 'default', 'cj');
    t.equal(cj.spec?.schedule, '*/5 * * * *');
    t.same(cj.spec?.jobTemplate.spec?.template.spec?.containers[0].command, ['date']);
  });

  await t.test('errors print as against a cluster', async (t) => {
    let r = await kubectl(['get', 'svc', 'nope']);
    t.equal(r.stderr.trim(), 'Error from server (NotFound): services "nope" not found');
    r = await kubectl(['get', 'deploy', 'nope']);
    t.equal(r.stderr.trim(), 'Error from server (NotFound): deployments.apps "nope" not found');
    const invalid = file('invalid.yaml', 'apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: [{port: 0, targetPort: 80}]\n');
    r = await kubectl(['create', '-f', invalid]);
    t.equal(r.stderr.trim(), 'The Service "x" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive');
    const typo = file('typo.yaml', 'apiVersion: v1\nkind: Service\nmetadata: {name: typo}\nspec:\n  prots: [{port: 80}]\n  ports: [{port: 80}]\n');
    r = await kubectl(['apply', '-f', typo]);
    t.equal(r.code, 1);
    t.equal(
      r.stderr.trim(),
      `Error from server (BadRequest): error when creating "${typo}": Service in version "v1" cannot be handled as a Service: strict decoding error: unknown field "spec.prots"`,
    );
    r = await kubectl(['apply', '-f', typo, '--validate=warn']);
    t.equal(r.code, 0);
    t.match(r.stderr, /Warning: unknown field "spec.prots"/);
    t.notOk((await store.get('Service', 'default', 'typo') as { spec?: Record<string, unknown> }).spec?.prots, 'the unknown field is dropped');
    const badType = file('badtype.yaml', 'apiVersion: v1\nkind: Service\nmetadata: {name: bt}\nspec:\n  ports: [{port: "eighty"}]\n');
    r = await kubectl(['create', '-f', badType, '--validate=false']);
    t.match(r.stderr, /cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type int32/);
    r = await kubectl(['create', 'namespace', 'other']);
    t.equal(r.stderr.trim(), 'Error from server (AlreadyExists): namespaces "other" already exists');
    r = await kubectl(['run', 'p', '--image=nginx', '-n', 'missing']);
    t.equal(r.stderr.trim(), 'Error from server (NotFound): namespaces "missing" not found');
  });

  await t.test('label, annotate, patch (strategic, merge, json), replace conflict, dry-run', async (t) => {
    let r = await kubectl(['label', 'svc', 'redis', 'tier=cache']);
    t.equal(r.stdout.trim(), 'service/redis labeled', r.stderr);
    r = await kubectl(['annotate', 'svc', 'redis', 'note=hi']);
    t.equal(r.stdout.trim(), 'service/redis annotated', r.stderr);
    r = await kubectl(['patch', 'svc', 'redis', '-p', '{"spec":{"ports":[{"port":6380,"name":"extra"}]}}']);
    t.equal(r.stdout.trim(), 'service/redis patched', r.stderr);
    let svc = await store.get<Service>('Service', 'default', 'redis');
    t.same(svc.spec?.ports?.map((p) => p.port), [6379, 6380], 'service ports merge by port');
    r = await kubectl(['patch', 'svc', 'redis', '--type=json', '-p', '[{"op":"remove","path":"/spec/ports/1"}]']);
    t.equal(r.code, 0, r.stderr);
    r = await kubectl(['patch', 'svc', 'redis', '--type=merge', '-p', '{"metadata":{"labels":{"tier":null}}}']);
    t.equal(r.code, 0, r.stderr);
    svc = await store.get<Service>('Service', 'default', 'redis');
    t.same(svc.spec?.ports?.map((p) => p.port), [6379]);
    t.same(svc.metadata.labels, { app: 'redis' });
    t.equal(svc.metadata.annotations?.note, 'hi');

    r = await kubectl(['get', 'svc', 'redis', '-o', 'yaml']);
    const stale = file('stale.yaml', r.stdout);
    await kubectl(['label', 'svc', 'redis', 'bump=1']);
    r = await kubectl(['replace', '-f', stale]);
    t.equal(
      r.stderr.trim(),
      `Error from server (Conflict): error when replacing "${stale}": Operation cannot be fulfilled on services "redis": the object has been modified; please apply your changes to the latest version and try again`,
    );

    const rv = store.resourceVersion;
    r = await kubectl(['delete', 'svc', 'redis', '--dry-run=server']);
    t.equal(r.stdout.trim(), 'service "redis" deleted (server dry run)');
    r = await kubectl(['create', 'deployment', 'dry', '--image=nginx', '--dry-run=server', '-o', 'jsonpath={.spec.replicas}']);
    t.equal(r.stdout, '1', 'the dry-run reply carries the defaults');
    t.equal(store.resourceVersion, rv, 'dry runs change nothing');
    t.ok(await store.tryGet('Service', 'default', 'redis'));
  });

  await t.test('scale, describe, explain, delete', async (t) => {
    let r = await kubectl(['scale', 'deployment/myapp', '--replicas=5']);
    t.equal(r.stdout.trim(), 'deployment.apps/myapp scaled', r.stderr);
    t.equal((await store.get<Deployment>('Deployment', 'default', 'myapp')).spec?.replicas, 5);
    await store.create({
      apiVersion: 'v1',
      kind: 'Endpoints',
      metadata: { name: 'myapp-service', namespace: 'default' },
      subsets: [{ addresses: [{ ip: '127.244.0.7' }], ports: [{ name: 'http', port: 8080 }] }],
    });
    r = await kubectl(['describe', 'svc', 'myapp-service']);
    t.match(r.stdout, /Endpoints:\s+127\.244\.0\.7:8080/, 'describe reads its Endpoints line from the EndpointSlice view');
    t.match(r.stdout, /Events:\s+<none>/);
    r = await kubectl(['get', 'endpointslices', '-l', 'kubernetes.io/service-name=myapp-service']);
    t.match(r.stdout, /myapp-service-[0-9a-f]{5}\s+IPv4\s+8080\s+127\.244\.0\.7/);
    r = await kubectl(['explain', 'deployment.spec.replicas']);
    t.match(r.stdout, /FIELD: replicas <integer>/, r.stderr);
    r = await kubectl(['delete', 'svc', 'myapp-service']);
    t.equal(r.stdout.trim(), 'service "myapp-service" deleted', r.stderr);
    t.notOk(await store.tryGet('Service', 'default', 'myapp-service'));
    r = await kubectl(['delete', 'deploy', '-l', 'app=web']);
    t.match(r.stdout, /deployment.apps "web" deleted/);
  });
});
