/**
 * The user story with the real kubectl against a whole kubeloop daemon (store,
 * controllers, pod runtime, proxy, DNS, API): run + expose + curl through the ClusterIP, a
 * redis pod answering PING through its Service, apply of the demo manifests, the usual
 * columns, describe, scale, logs, `get pods -w` while deleting, delete.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pino from 'pino';
import t from 'tap';
import { Daemon } from '../src/cli/daemon.js';
import { resolveOptions } from '../src/cli/options.js';
import { get } from './helpers/http.js';
import { waitFor } from './helpers/wait.js';

const ROOT = join(import.meta.dirname, '..');
const NODE_IP = '127.0.52.1';

t.test('kubectl against a running kubeloop', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kubeloop-kubectl-e2e-'));
  const opts = resolveOptions(
    [
      '--state-dir', dir,
      '--api-addr', '127.0.0.1:0',
      '--dns-addr', '127.0.0.1:0',
      '--service-cidr', '127.152.0.0/16',
      '--pod-cidr', '127.252.0.0/16',
      '--lb-pool', '127.253.0.0/16',
      '--node-ip', NODE_IP,
      '--nodeport-addresses', NODE_IP,
      '--crashloop-backoff', '100ms',
      '--stop-grace', '500ms',
    ],
    ROOT,
  );
  const daemon = new Daemon(opts, pino({ level: 'silent' }));
  t.teardown(async () => {
    await daemon.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await daemon.start();
  t.match(daemon.apiUrl, /^https:\/\/127\.0\.0\.1:\d+$/, 'HTTPS by default; kubectl uses the generated kubeconfig unchanged');
  const base = ['--kubeconfig', daemon.kubeconfigPath, '--cache-dir', join(dir, 'kubectl-cache')];
  const kubectl = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) =>
      execFile('kubectl', [...base, ...args], { timeout: 30_000 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })),
    );
  const jsonpath = async (what: string, path: string) => (await kubectl('get', what, '-o', `jsonpath=${path}`)).stdout;

  await t.test('run, expose, curl through the ClusterIP', async (t) => {
    let r = await kubectl('run', 'custom-nginx', '--image=nginx', '--port=8080');
    t.equal(r.stdout.trim(), 'pod/custom-nginx created', r.stderr);
    r = await kubectl('expose', 'pod', 'custom-nginx');
    t.equal(r.stdout.trim(), 'service/custom-nginx exposed', r.stderr);
    const ip = await jsonpath('svc/custom-nginx', '{.spec.clusterIP}');
    t.match(ip, /^127\.152\./);
    const body = await waitFor(async () => {
      const res = await get(`http://${ip}:8080/`, { timeoutMs: 500 }).catch(() => undefined);
      return res?.status === 200 ? res.body : undefined;
    }, { what: 'the nginx pod behind the ClusterIP', timeoutMs: 15_000 });
    t.match(body, /custom-nginx/, 'the page names the pod kubectl created');
  });

  await t.test('redis: run, expose --name, create service clusterip, PING through the proxy', async (t) => {
    let r = await kubectl('run', 'redis', '--image=redis', '--port=6379');
    t.equal(r.code, 0, r.stderr);
    r = await kubectl('expose', 'pod', 'redis', '--port=6379', '--name', 'redis-service');
    t.equal(r.stdout.trim(), 'service/redis-service exposed', r.stderr);
    r = await kubectl('create', 'service', 'clusterip', 'redis', '--tcp=6379:6379');
    t.equal(r.stdout.trim(), 'service/redis created', r.stderr);
    const ip = await jsonpath('svc/redis-service', '{.spec.clusterIP}');
    const pong = await waitFor(async () => {
      const c = new Redis({ host: ip, port: 6379, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 500 });
      try {
        await c.connect();
        return await c.ping();
      } catch {
        return undefined;
      } finally {
        c.disconnect();
      }
    }, { what: 'PONG through redis-service', timeoutMs: 15_000 });
    t.equal(pong, 'PONG');
    const cli = await new Promise<string | undefined>((resolve) =>
      execFile('redis-cli', ['-h', ip, '-p', '6379', 'ping'], (err, stdout) => resolve((err as NodeJS.ErrnoException | null)?.code === 'ENOENT' ? undefined : stdout.trim())),
    );
    if (cli !== undefined) t.equal(cli, 'PONG', 'redis-cli -h <clusterIP> -p 6379 ping');
    r = await kubectl('logs', 'pod/redis');
    t.match(r.stdout, /redis: listening on 127\.252\.\d+\.\d+:6379/, 'kubectl logs reads the container output');
  });

  await t.test('apply the demo manifests; the usual columns; describe; scale', async (t) => {
    let r = await kubectl('apply', '-f', join(ROOT, 'config'));
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /deployment.apps\/myapp created/);
    t.match(r.stdout, /service\/myapp-service created/);
    r = await kubectl('apply', '-f', join(ROOT, 'config'));
    t.match(r.stdout, /deployment.apps\/myapp unchanged/);
    r = await kubectl('rollout', 'status', 'deployment/myapp', '--timeout=30s');
    t.match(r.stdout, /deployment "myapp" successfully rolled out/, r.stderr);
    r = await kubectl('get', 'svc,endpoints,pods', '-o', 'wide');
    t.match(r.stdout, /service\/myapp-service\s+ClusterIP\s+127\.152\.\d+\.\d+\s+<none>\s+80\/TCP/);
    t.match(r.stdout, /endpoints\/myapp-service\s+127\.252\.\d+\.\d+:\d+,127\.252/);
    t.match(r.stdout, /pod\/myapp-\S+\s+1\/1\s+Running\s+0\s+\S+\s+127\.252\.\d+\.\d+\s+node-1/);
    r = await kubectl('describe', 'svc', 'myapp-service');
    t.match(r.stdout, /Endpoints:\s+127\.252\.\d+\.\d+:\d+,127\.252\.\d+\.\d+:\d+,127\.252\.\d+\.\d+:\d+/);
    r = await kubectl('scale', 'deployment/myapp', '--replicas=5');
    t.equal(r.stdout.trim(), 'deployment.apps/myapp scaled', r.stderr);
    r = await kubectl('rollout', 'status', 'deployment/myapp', '--timeout=30s');
    t.match(r.stdout, /successfully rolled out/, r.stderr);
    t.equal((await jsonpath('deploy/myapp', '{.status.readyReplicas}')).trim(), '5');
  });

  await t.test('get pods -w shows the pod terminating; delete waits for it', async (t) => {
    const w = spawn('kubectl', [...base, 'get', 'pods', '-w', '-l', 'run=custom-nginx'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    w.stdout.on('data', (c: Buffer) => (out += c.toString()));
    t.teardown(() => w.kill());
    await waitFor(() => /custom-nginx\s+1\/1\s+Running/.test(out), { what: `the initial table (${out})` });
    const r = await kubectl('delete', 'pod', 'custom-nginx');
    t.equal(r.stdout.trim(), 'pod "custom-nginx" deleted', r.stderr);
    await waitFor(() => /custom-nginx\s+\d\/1\s+Terminating/.test(out), { what: `a Terminating row (${out})` });
    t.equal((await kubectl('get', 'pod', 'custom-nginx')).stderr.trim(), 'Error from server (NotFound): pods "custom-nginx" not found');
    const d = await kubectl('delete', 'svc', 'myapp-service');
    t.equal(d.stdout.trim(), 'service "myapp-service" deleted');
  });
});
