import t from 'tap';
import http from 'node:http';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConfigMap, Node, Pod, Service } from '../src/api/types.js';
import type { WatchEvent } from '../src/store/types.js';
import { NODE, alive, cstatus, isReady, pidOf, pod, setup, waitFor } from './runtime-helpers.js';

const get = (host: string, port: number, path = '/', headers: Record<string, string> = {}): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    const req = http.get({ host, port, path, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.setTimeout(2000, () => req.destroy(new Error('timeout')));
  });

/** An http.get that retries while the server is still coming up. */
const getSoon = (host: string, port: number, path = '/', headers: Record<string, string> = {}) =>
  waitFor(() => get(host, port, path, headers).catch(() => undefined), 3000, `http://${host}:${port}${path}`);

const NODE_JS = process.execPath;

t.test('registers its Node and runs an echo pod that answers on its own IP', async (t) => {
  const env = await setup(t);
  const node = await env.store.get<Node>('Node', undefined, NODE);
  t.equal(node.spec?.podCIDR, '127.244.0.0/16');
  t.same(node.status?.addresses, [
    { type: 'InternalIP', address: '127.0.0.1' },
    { type: 'Hostname', address: NODE },
  ]);
  t.equal(node.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');

  await env.store.create(pod('web', [{ name: 'echo', image: 'docker.io/ealen/echo-server:0.9', ports: [{ containerPort: 8080 }] }]));
  const p = await env.until('web', (p) => isReady(p), 5000, 'web Ready');
  t.equal(p.status?.phase, 'Running');
  const ip = p.status!.podIP!;
  t.match(ip, /^127\.244\.\d+\.\d+$/);
  t.not(ip, '127.244.0.0');
  t.not(ip, '127.244.0.1');
  t.same(p.status?.podIPs, [{ ip }]);
  t.equal(p.status?.hostIP, '127.0.0.1');
  t.ok(p.status?.startTime);
  const cs = cstatus(p)!;
  t.equal(cs.ready, true);
  t.equal(cs.started, true);
  t.equal(cs.restartCount, 0);
  t.ok(cs.state?.running?.startedAt);
  t.match(cs.containerID, /^kubeloop:\/\/\d+$/);
  for (const type of ['PodScheduled', 'Initialized', 'ContainersReady', 'Ready']) {
    t.equal(p.status?.conditions?.find((c) => c.type === type)?.status, 'True', type);
  }

  const res = await getSoon(ip, 8080, '/hello');
  t.equal(res.status, 200);
  t.equal(res.body.split('\n')[0], `pod=web namespace=default ip=${ip} node=${NODE}`);
  t.match(res.body, /^GET \/hello HTTP\/1\.1$/m);
  const json = JSON.parse((await get(ip, 8080, '/', { accept: 'application/json' })).body);
  t.match(json, { pod: 'web', namespace: 'default', ip, node: NODE });

  await env.store.create(pod('hostnet', [{ name: 'c', image: 'busybox' }], { hostNetwork: true }));
  t.equal((await env.until('hostnet', (p) => isReady(p))).status?.podIP, '127.0.0.1', 'hostNetwork pods have the node IP');

  // a pod with no nodeName is the scheduler's, not ours
  await env.store.create({ ...pod('unbound', [{ name: 'c', image: 'echo' }]), spec: { ...pod('x', [{ name: 'c', image: 'echo' }]).spec!, nodeName: undefined } });
  await new Promise((r) => setTimeout(r, 200));
  t.notOk((await env.get('unbound'))?.status?.podIP, 'an unbound pod is not run');
});

t.test('the environment: pod variables, Service variables, fieldRef, ConfigMap, $(VAR); no daemon leaks', async (t) => {
  process.env.KUBELOOP_TEST_SECRET_OF_THE_DAEMON = 'leak';
  t.teardown(() => {
    delete process.env.KUBELOOP_TEST_SECRET_OF_THE_DAEMON;
  });
  const env = await setup(t);
  const svc = await env.store.create<Service>({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'my-svc', namespace: 'default' },
    spec: { selector: { app: 'x' }, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }, { name: 'dns-udp', port: 53, protocol: 'UDP' }] },
  });
  const ip = svc.spec!.clusterIP!;
  await env.store.create<ConfigMap>({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg', namespace: 'default' }, data: { color: 'blue' } });
  await waitFor(() => env.informers.for<Service>('Service').get('default', 'my-svc'), 2000, 'service in informer');

  await env.store.create(
    pod(
      'envpod',
      [
        {
          name: 'main',
          image: 'anything/at-all:1',
          command: [NODE_JS, '-e', 'console.log(JSON.stringify(process.env)); console.log("ARG=" + process.argv[1])'],
          args: ['$(GREETING) from $(POD_NAME)'],
          ports: [{ containerPort: 9000 }, { containerPort: 9001 }],
          env: [
            { name: 'GREETING', value: 'hello' },
            { name: 'MY_NODE', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
            { name: 'MY_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
            { name: 'COLOR', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'color' } } },
            { name: 'COMBINED', value: '$(COLOR)-$(MISSING)-$$(GREETING)' },
          ],
        },
      ],
      { restartPolicy: 'Never' },
    ),
  );
  const p = await env.until('envpod', (p) => p.status?.phase === 'Succeeded', 5000, 'envpod Succeeded');
  const term = cstatus(p)?.state?.terminated;
  t.equal(term?.exitCode, 0);
  t.equal(term?.reason, 'Completed');
  const out = env.logOf(p, 'main');
  const vars = JSON.parse(out.split('\n')[0]) as Record<string, string>;
  t.match(vars, {
    POD_NAME: 'envpod',
    POD_NAMESPACE: 'default',
    POD_IP: p.status!.podIP!,
    NODE_NAME: NODE,
    KUBELOOP_DNS: '127.0.0.1:1053',
    KUBELOOP_CONTAINER_PORTS: '9000,9001',
    MY_SVC_SERVICE_HOST: ip,
    MY_SVC_SERVICE_PORT: '80',
    MY_SVC_SERVICE_PORT_HTTP: '80',
    MY_SVC_SERVICE_PORT_DNS_UDP: '53',
    MY_SVC_PORT: `tcp://${ip}:80`,
    MY_SVC_PORT_80_TCP: `tcp://${ip}:80`,
    MY_SVC_PORT_80_TCP_PROTO: 'tcp',
    MY_SVC_PORT_80_TCP_PORT: '80',
    MY_SVC_PORT_80_TCP_ADDR: ip,
    MY_SVC_PORT_53_UDP: `udp://${ip}:53`,
    MY_NODE: NODE,
    MY_IP: p.status!.podIP!,
    COLOR: 'blue',
    COMBINED: 'blue-$(MISSING)-$(GREETING)',
    PATH: process.env.PATH,
  });
  t.equal(vars.KUBELOOP_TEST_SECRET_OF_THE_DAEMON, undefined, 'daemon env does not leak');
  t.match(out, /^ARG=hello from envpod$/m, '$(VAR) in args');
  // the store seeds default/kubernetes when it has one; either way it must match the Service
  const k = await env.store.tryGet<Service>('Service', 'default', 'kubernetes');
  t.equal(vars.KUBERNETES_SERVICE_HOST, k?.spec?.clusterIP, 'KUBERNETES_SERVICE_HOST iff default/kubernetes exists');

  // a missing ConfigMap is a status problem, retried, not a crash
  await env.store.create(
    pod('needs-cm', [{ name: 'c', image: 'busybox', env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: 'nope', key: 'k' } } }] }]),
  );
  const w = await env.until('needs-cm', (p) => cstatus(p)?.state?.waiting?.reason === 'CreateContainerConfigError');
  t.match(cstatus(w)?.state?.waiting?.message, /configmap "nope" not found/);
  await env.store.create<ConfigMap>({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'nope', namespace: 'default' }, data: { k: 'v' } });
  await env.until('needs-cm', (p) => !!cstatus(p)?.state?.running, 3000, 'needs-cm running once the ConfigMap exists');
});

t.test('a container that exits at once goes into CrashLoopBackOff with growing restarts', async (t) => {
  const env = await setup(t, { backoff: { initialMs: 150, maxMs: 600, resetAfterMs: 60_000 } });
  const reasons = new Set<string>();
  const messages: string[] = [];
  const w = env.store.watch<Pod>('Pod', { namespace: 'default' }, (ev: WatchEvent<Pod>) => {
    const waiting = ev.object.status?.containerStatuses?.[0]?.state?.waiting;
    if (waiting?.reason) reasons.add(waiting.reason);
    if (ev.object.metadata.name === 'crash' && waiting?.reason === 'CrashLoopBackOff' && waiting.message) messages.push(waiting.message);
  });
  t.teardown(() => w.stop());
  await env.store.create(
    pod('crash', [{ name: 'c', image: 'busybox', command: ['sh', '-c', 'echo dying; exit 3'], terminationMessagePolicy: 'FallbackToLogsOnError' }]),
  );
  await env.store.create(pod('nocmd', [{ name: 'c', image: 'busybox', command: ['/no/such/program'] }]));
  const p = await env.until('crash', (p) => (cstatus(p)?.restartCount ?? 0) >= 3, 8000, 'three restarts');
  t.ok(reasons.has('CrashLoopBackOff'), 'was seen in CrashLoopBackOff');
  t.match(messages[0], new RegExp(`^back-off \\d+ms restarting failed container=c pod=crash_default\\(${p.metadata.uid}\\)$`));
  t.equal(p.status?.phase, 'Running', 'restartPolicy Always keeps the phase Running');
  t.match(cstatus(p)?.lastState?.terminated, { exitCode: 3, reason: 'Error', message: 'dying' }, 'FallbackToLogsOnError: the log tail is the message');
  t.match(env.logOf(p, 'c', 0), /dying/, 'each run has its log file');
  t.match(env.logOf(p, 'c', 2), /dying/);

  const n = await env.until('nocmd', (p) => (cstatus(p)?.restartCount ?? 0) >= 1, 5000);
  t.match(cstatus(n)?.lastState?.terminated, { reason: 'StartError', exitCode: 128 });
  t.match(cstatus(n)?.lastState?.terminated?.message, /executable file not found/);

  // the runtime is still fine: a good pod next to the crashing ones runs
  await env.store.create(pod('fine', [{ name: 'c', image: 'busybox' }]));
  await env.until('fine', (p) => isReady(p));
});

t.test('an unknown image without a command is ErrImageNeverPull, not a crash and not retried', async (t) => {
  const env = await setup(t);
  await env.store.create(pod('mystery', [{ name: 'c', image: 'quay.io/someone/mystery:2' }]));
  const p = await env.until('mystery', (p) => cstatus(p)?.state?.waiting?.reason === 'ErrImageNeverPull');
  t.equal(p.status?.phase, 'Pending');
  const msg = cstatus(p)?.state?.waiting?.message ?? '';
  t.match(msg, /quay\.io\/someone\/mystery/);
  t.match(msg, /images\.yaml/);
  t.match(msg, /give the container a command/);
  const rv = p.metadata.resourceVersion;
  await new Promise((r) => setTimeout(r, 400));
  t.equal((await env.get('mystery'))?.metadata.resourceVersion, rv, 'no further writes: nothing is retried');
});

t.test('readiness gates Ready; liveness restarts', async (t) => {
  const env = await setup(t);
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-ready-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const flag = join(dir, 'ready');
  await env.store.create(
    pod('gated', [
      {
        name: 'web',
        image: 'echo',
        ports: [{ containerPort: 8080, name: 'http' }],
        readinessProbe: { exec: { command: ['test', '-f', flag] }, periodSeconds: 1 },
      },
    ]),
  );
  const p1 = await env.until('gated', (p) => !!cstatus(p)?.state?.running, 3000, 'running');
  t.equal(isReady(p1), false, 'running but not Ready while the probe fails');
  t.equal(cstatus(p1)?.ready, false);
  await writeFile(flag, 'ok');
  const p2 = await env.until('gated', (p) => isReady(p), 4000, 'Ready once the probe passes');
  t.equal(cstatus(p2)?.ready, true);

  await env.store.create(
    pod('sick', [
      {
        name: 'web',
        image: 'echo',
        ports: [{ containerPort: 8080 }],
        // nothing listens on port 1
        livenessProbe: { tcpSocket: { port: 1 }, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 1 },
      },
    ]),
  );
  const s = await env.until('sick', (p) => (cstatus(p)?.restartCount ?? 0) >= 1, 6000, 'restarted by liveness');
  t.ok(cstatus(s)?.lastState?.terminated, 'the killed run is in lastState');
  t.match(env.logOf(s, 'web', 0), /received SIGTERM/, 'liveness failure sent SIGTERM');
});

t.test('graceful delete: Ready=False first, SIGTERM, then the pod is removed', async (t) => {
  const env = await setup(t);
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-prestop-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const marker = join(dir, 'prestop');
  const script = `process.on('SIGTERM', () => { console.log('got SIGTERM prestop=' + require('fs').existsSync(${JSON.stringify(marker)})); setTimeout(() => process.exit(0), 150); }); console.log('up'); setInterval(() => {}, 1000);`;
  await env.store.create(
    pod('leaving', [
      { name: 'app', image: 'node', command: [NODE_JS, '-e', script], lifecycle: { preStop: { exec: { command: ['sh', '-c', `touch ${marker}`] } } } },
    ]),
  );
  const p = await env.until('leaving', (p) => isReady(p));
  const pid = pidOf(p)!;
  t.ok(alive(pid));
  await waitFor(() => env.logOf(p, 'app').includes('up'), 3000, 'process up');
  const seen: string[] = [];
  const w = env.store.watch<Pod>('Pod', { namespace: 'default' }, (ev) => {
    if (ev.object.metadata.name !== 'leaving') return;
    if (ev.type === 'DELETED') seen.push('DELETED');
    else if (ev.object.metadata.deletionTimestamp) seen.push(isReady(ev.object) ? 'terminating-ready' : 'terminating-notready');
  });
  t.teardown(() => w.stop());
  await env.store.delete('Pod', 'default', 'leaving', { gracePeriodSeconds: 5 });
  await waitFor(async () => !(await env.get('leaving')), 4000, 'pod removed');
  t.same(seen.filter((s, i) => s !== seen[i - 1]), ['terminating-ready', 'terminating-notready', 'DELETED'], 'not Ready before removal');
  t.match(env.logOf(p, 'app'), /got SIGTERM prestop=true/, 'the preStop hook ran, then the process saw SIGTERM');
  t.notOk(alive(pid), 'the process is gone');

  // grace 0: the store removes the pod at once; the agent still ends the processes
  await env.store.create(pod('forced', [{ name: 'app', image: 'busybox', command: ['sh', '-c', 'trap "" TERM; while true; do sleep 0.1; done'] }]));
  const f = await env.until('forced', (p) => isReady(p));
  const fpid = pidOf(f)!;
  await env.store.delete('Pod', 'default', 'forced', { gracePeriodSeconds: 0 });
  await waitFor(() => !alive(fpid), 4000, 'forced pod killed (SIGKILL after the 2 s floor)');
  t.pass('force-deleted pod processes are killed');
});

t.test('stop() leaves no process behind; a new runtime runs the pods again on their IPs', async (t) => {
  const env = await setup(t, { stopGraceMs: 300 });
  await env.store.create(pod('a', [{ name: 'web', image: 'nginx', ports: [{ containerPort: 8081 }] }]));
  // a stubborn one: ignores SIGTERM and leaves a grandchild in its group
  // `$!` is a pid inside the container's PID namespace: the grandchild is found by its argv
  const mark = `1000.${process.pid}${Date.now() % 100000}`;
  await env.store.create(pod('b', [{ name: 'sh', image: 'busybox', command: ['sh', '-c', `trap "" TERM; sleep ${mark} & echo started; wait`] }]));
  const a = await env.until('a', (p) => isReady(p));
  const b = await env.until('b', (p) => isReady(p));
  const child = await waitFor(() => pidByArgv(['sleep', mark]), 3000, 'grandchild pid');
  const pids = [pidOf(a)!, pidOf(b)!, child];
  t.ok(pids.every(alive), 'all running');
  t.same(env.runtime.pids().sort(), [pidOf(a)!, pidOf(b)!].sort());
  const res = await getSoon(a.status!.podIP!, 8081);
  t.match(res.body, /Welcome to nginx!/);
  t.match(res.body, /pod=a namespace=default/);

  await env.runtime.stop();
  t.same(pids.filter(alive), [], 'no pod process survives stop()');
  const node = await env.store.get<Node>('Node', undefined, NODE);
  t.equal(node.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'False', 'node marked not ready');

  const second = env.newRuntime();
  await second.start();
  const a2 = await env.until('a', (p) => isReady(p) && pidOf(p) !== pids[0], 4000, 'a running again');
  t.equal(a2.status?.podIP, a.status?.podIP, 'same pod IP after a restart of the agent');
  await getSoon(a2.status!.podIP!, 8081);
  await second.stop();
  t.same(second.pids(), []);
});

t.test('init containers run first, in order; a failing one under Never fails the pod', async (t) => {
  const env = await setup(t);
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-init-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const order = join(dir, 'order');
  await env.store.create(
    pod('inited', [{ name: 'main', image: 'busybox', command: ['sh', '-c', `echo main >> ${order}; sleep 100`] }], {
      initContainers: [
        { name: 'one', image: 'busybox', command: ['sh', '-c', `sleep 0.1; echo one >> ${order}`] },
        { name: 'two', image: 'busybox', command: ['sh', '-c', `echo two >> ${order}`] },
      ],
    }),
  );
  const p = await env.until('inited', (p) => isReady(p), 5000, 'inited Ready');
  t.same(p.status?.initContainerStatuses?.map((c) => c.state?.terminated?.reason), ['Completed', 'Completed']);
  t.equal(p.status?.conditions?.find((c) => c.type === 'Initialized')?.status, 'True');
  await waitFor(async () => (await readFile(order, 'utf8').catch(() => '')).includes('main'), 2000, 'main wrote');
  t.equal(await readFile(order, 'utf8'), 'one\ntwo\nmain\n', 'init containers ran in order, before the main one');

  await env.store.create(
    pod('badinit', [{ name: 'main', image: 'busybox' }], {
      restartPolicy: 'Never',
      initContainers: [{ name: 'fail', image: 'busybox', command: ['sh', '-c', 'exit 2'] }],
    }),
  );
  const f = await env.until('badinit', (p) => p.status?.phase === 'Failed', 5000, 'badinit Failed');
  t.equal(f.status?.initContainerStatuses?.[0]?.state?.terminated?.exitCode, 2);
  t.equal(cstatus(f)?.state?.waiting?.reason, 'PodInitializing', 'main never started');
});

/** the host pid of the process running exactly `argv`, if any */
function pidByArgv(argv: readonly string[]): number | undefined {
  const want = argv.join('\0') + '\0';
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8') === want) return Number(d);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}
