import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Container, Pod, Service, ServicePort } from '../src/api/types.js';
import { Backoff, formatDuration } from '../src/util/backoff.js';
import { DEFAULT_IMAGE_TABLE, loadImageTable, normaliseImage, parseImageTable, resolveContainer } from '../src/agent/runtime/images.js';
import { expand, parseQuantity, serviceEnv } from '../src/agent/runtime/env.js';
import { buildPodStatus, podPhase, type PodView } from '../src/agent/runtime/status.js';

t.test('back-off follows the kubelet curve and resets after a quiet period', async (t) => {
  let now = 0;
  const b = new Backoff({ initialMs: 10_000, maxMs: 300_000, now: () => now });
  t.equal(b.isInBackOffSince('c', now), false, 'no back-off before the first retry');
  t.equal(b.next('c', now), 10_000);
  now = 1000;
  t.equal(b.isInBackOffSince('c', now), true, 'a failure right after a retry waits');
  t.equal(b.remainingMs('c', now - 500), 9_500);
  const seq = [];
  for (let i = 0; i < 7; i++) seq.push(b.next('c', now));
  t.same(seq, [20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000], 'doubles up to the max');
  now += 600_001;
  t.equal(b.isInBackOffSince('c', now), false, 'quiet for 2 × max: no back-off');
  t.equal(b.next('c', now), 10_000, 'starts over');
  b.reset('c');
  t.equal(b.delayMs('c'), 0);
  t.throws(() => new Backoff({ initialMs: 0, maxMs: 1 }), /initialMs/);
  t.same([500, 10_000, 20_500, 300_000].map(formatDuration), ['500ms', '10s', '20.5s', '5m0s']);
});

t.test('image references normalise like a registry would', async (t) => {
  const cases: Array<[string, string]> = [
    ['nginx', 'nginx'],
    ['nginx:1.27', 'nginx'],
    ['docker.io/library/nginx:1.27-alpine', 'nginx'],
    ['library/nginx@sha256:abcd', 'nginx'],
    ['docker.io/ealen/echo-server:0.9.2', 'ealen/echo-server'],
    ['registry.k8s.io/e2e-test-images/agnhost:2.39', 'registry.k8s.io/e2e-test-images/agnhost'],
    ['localhost:5000/team/app:dev', 'localhost:5000/team/app'],
    ['Busybox:Latest', 'busybox'],
  ];
  for (const [ref, want] of cases) t.equal(normaliseImage(ref), want, ref);
});

t.test('the shipped image table resolves the documented images and override rules', async (t) => {
  const table = loadImageTable(DEFAULT_IMAGE_TABLE);
  const c = (o: Partial<Container>): Container => ({ name: 'c', ...o });
  for (const img of ['echo', 'kubeloop/echo', 'ealen/echo-server', 'kicbase/echo-server:1.0', 'registry.k8s.io/echoserver:1.4',
    'registry.k8s.io/e2e-test-images/agnhost:2.39', 'hashicorp/http-echo', 'jmalloc/echo-server', 'mendhak/http-https-echo:31']) {
    const r = resolveContainer(table, c({ image: img }));
    t.ok(r.ok && r.argv[0] === process.execPath && r.argv[1].endsWith('/src/images/echo.mjs'), img);
  }
  for (const img of ['nginx:1.27', 'httpd', 'caddy']) {
    const r = resolveContainer(table, c({ image: img }));
    t.ok(r.ok && r.argv[1].endsWith('/src/images/static.mjs'), img);
  }
  const box = resolveContainer(table, c({ image: 'busybox:1.36' }));
  t.ok(box.ok && box.argv[1].endsWith('/src/images/pause.mjs'), 'busybox alone idles');
  t.same(resolveContainer(table, c({ image: 'alpine', args: ['sh', '-c', 'echo hi'] })), { ok: true, argv: ['sh', '-c', 'echo hi'], entry: table.entries.get('alpine') }, 'args alone run on a cmd-mode image');
  t.match(resolveContainer(table, c({ image: 'echo', args: ['-text=hi'] })), { ok: true, argv: [process.execPath, /echo\.mjs$/, '-text=hi'] }, 'args follow a builtin entrypoint');
  t.same(resolveContainer(table, c({ image: 'whatever/unknown', command: ['sleep'], args: ['5'] })), { ok: true, argv: ['sleep', '5'] }, 'command works with any image');
  t.match(
    resolveContainer(table, c({ image: 'registry.k8s.io/e2e-test-images/agnhost:2.39', command: ['/agnhost', 'netexec', '--http-port=8080'] })),
    { ok: true, argv: [process.execPath, /echo\.mjs$/, 'netexec', '--http-port=8080'] },
    "the image's own executable runs the stand-in (minikube's hello-node)",
  );
  t.same(resolveContainer(table, c({ image: 'busybox', command: ['/agnhost'] })), { ok: true, argv: ['/agnhost'] }, 'only for its own image');
  const redis = resolveContainer(table, c({ image: 'redis:7', command: ['redis-server'], args: ['--port', '6380'] }));
  t.match(redis, { ok: true, argv: [process.execPath, /redis\.mjs$/, '--port', '6380'] });
  const bad = resolveContainer(table, c({ image: 'whatever/unknown:3' }));
  t.match(bad, { ok: false, reason: 'ErrImageNeverPull', message: /add "whatever\/unknown" to .*images\.yaml or give the container a command/ });
});

t.test('a bad image table is a clear error naming the file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-images-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const f = join(dir, 'images.yaml');
  await writeFile(f, 'images: [unclosed\n');
  t.throws(() => loadImageTable(f), new RegExp(`image table ${f} is not valid YAML`));
  t.throws(() => loadImageTable(join(dir, 'missing.yaml')), /cannot read image table .*missing\.yaml/);
  let msg = '';
  try {
    parseImageTable({ images: { a: { builtin: 'nope' }, b: { command: 'x' }, c: { builtin: 'echo', mode: 'weird', extra: 1 } } }, f);
  } catch (e) {
    msg = (e as Error).message;
  }
  t.match(msg, /images\.a\.builtin: no built-in image "nope"/, 'all problems at once');
  t.match(msg, /images\.b\.command: expected a non-empty list/);
  t.match(msg, /images\.c\.mode/);
  t.match(msg, /images\.c\.extra: unknown field/);
  t.ok(msg.includes(f), 'names the file');
  t.throws(() => parseImageTable({ images: { a: { command: ['x'] }, b: { command: ['y'], aliases: ['a'] } } }, f), /already listed under images\.a/);
  t.throws(() => parseImageTable({}, f), /expected a mapping under "images:"/);
});

t.test('$(VAR) expansion as the kubelet does it', async (t) => {
  const env = { A: 'a', EMPTY: '' };
  const cases: Array<[string, string]> = [
    ['$(A)', 'a'],
    ['x$(A)y$(A)', 'xaya'],
    ['$(EMPTY)-', '-'],
    ['$(MISSING)', '$(MISSING)'],
    ['$$(A)', '$(A)'],
    ['$$', '$'],
    ['$A', '$A'],
    ['$(A', '$(A'],
    ['cost: 5$', 'cost: 5$'],
  ];
  for (const [i, want] of cases) t.equal(expand(i, env), want, i);
  t.equal(parseQuantity('500m'), 0.5);
  t.equal(parseQuantity('128Mi'), 128 * 2 ** 20);
  t.equal(parseQuantity('1e3'), 1000);
});

t.test('Service variables follow the kubelet (docker links), kubernetes from default only', async (t) => {
  const svc = (ns: string, name: string, ip: string | undefined, ports: ServicePort[]): Service => ({
    metadata: { name, namespace: ns },
    spec: { clusterIP: ip, ports },
  });
  const services = [
    svc('default', 'kubernetes', '127.96.0.1', [{ name: 'https', port: 443, protocol: 'TCP' }]),
    svc('app', 'redis-primary', '127.96.0.9', [{ port: 6379, protocol: 'TCP' }]),
    svc('app', 'headless', 'None', [{ port: 80 }]),
    svc('other', 'elsewhere', '127.96.0.10', [{ port: 80 }]),
  ];
  const env = serviceEnv(services, 'app');
  t.same(env, {
    KUBERNETES_SERVICE_HOST: '127.96.0.1',
    KUBERNETES_SERVICE_PORT: '443',
    KUBERNETES_SERVICE_PORT_HTTPS: '443',
    KUBERNETES_PORT: 'tcp://127.96.0.1:443',
    KUBERNETES_PORT_443_TCP: 'tcp://127.96.0.1:443',
    KUBERNETES_PORT_443_TCP_PROTO: 'tcp',
    KUBERNETES_PORT_443_TCP_PORT: '443',
    KUBERNETES_PORT_443_TCP_ADDR: '127.96.0.1',
    REDIS_PRIMARY_SERVICE_HOST: '127.96.0.9',
    REDIS_PRIMARY_SERVICE_PORT: '6379',
    REDIS_PRIMARY_PORT: 'tcp://127.96.0.9:6379',
    REDIS_PRIMARY_PORT_6379_TCP: 'tcp://127.96.0.9:6379',
    REDIS_PRIMARY_PORT_6379_TCP_PROTO: 'tcp',
    REDIS_PRIMARY_PORT_6379_TCP_PORT: '6379',
    REDIS_PRIMARY_PORT_6379_TCP_ADDR: '127.96.0.9',
  });
  t.same(Object.keys(serviceEnv(services, 'app', false)).filter((k) => !k.startsWith('KUBERNETES_')), [], 'enableServiceLinks: false keeps only kubernetes');
});

t.test('pod phase and conditions from container states', async (t) => {
  const pod = (restartPolicy: string): Pod => ({ metadata: { name: 'p', namespace: 'default' }, spec: { restartPolicy, containers: [] } });
  const view = (restartPolicy: string, containers: PodView['containers'], extra: Partial<PodView> = {}): PodView => ({
    pod: pod(restartPolicy),
    podIP: '127.244.0.2',
    hostIP: '127.0.0.1',
    initContainers: [],
    containers,
    initialized: true,
    terminating: false,
    ...extra,
  });
  const running = { name: 'a', image: 'x', imageID: '', ready: true, restartCount: 0, state: { running: {} } };
  const done = (code: number) => ({ name: 'b', image: 'x', imageID: '', ready: false, restartCount: 0, state: { terminated: { exitCode: code } } });
  const backoff = { name: 'c', image: 'x', imageID: '', ready: false, restartCount: 2, state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { exitCode: 1 } } };
  const creating = { name: 'd', image: 'x', imageID: '', ready: false, restartCount: 0, state: { waiting: { reason: 'ContainerCreating' } } };
  t.equal(podPhase(view('Always', [running])), 'Running');
  t.equal(podPhase(view('Always', [creating, running])), 'Pending');
  t.equal(podPhase(view('Always', [backoff])), 'Running', 'CrashLoopBackOff pods are Running');
  t.equal(podPhase(view('Never', [done(0)])), 'Succeeded');
  t.equal(podPhase(view('Never', [done(0), done(1)])), 'Failed');
  t.equal(podPhase(view('OnFailure', [done(0)])), 'Succeeded');
  t.equal(podPhase(view('OnFailure', [done(0), backoff])), 'Running');
  t.equal(podPhase(view('Always', [running], { initialized: false })), 'Pending');

  const s1 = buildPodStatus(view('Always', [running, { ...running, name: 'z', ready: false }]), undefined, 'T1');
  const ready = s1.conditions!.find((c) => c.type === 'Ready')!;
  t.match(ready, { status: 'False', reason: 'ContainersNotReady', message: 'containers with unready status: [z]', lastTransitionTime: 'T1' });
  const s2 = buildPodStatus(view('Always', [running, { ...running, name: 'z', ready: false }]), s1, 'T2');
  t.equal(s2.conditions!.find((c) => c.type === 'Ready')!.lastTransitionTime, 'T1', 'unchanged conditions keep their time');
  const s3 = buildPodStatus(view('Always', [running], { terminating: true }), { ...s1, qosClass: 'BestEffort' }, 'T3');
  t.match(s3.conditions!.find((c) => c.type === 'Ready'), { status: 'False', reason: 'PodTerminating' });
  t.equal(s3.conditions!.find((c) => c.type === 'ContainersReady')!.status, 'True');
  t.equal(s3.qosClass, 'BestEffort', 'fields owned by others are kept');
});
