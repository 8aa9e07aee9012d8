/**
 * Streams through the node agent endpoint, each beside a reference in the same run:
 * - port-forward throughput: a pod sends --mb MiB on one TCP connection; read directly from the
 *   pod's IP, then through `pods/portforward` (a WebSocket to the API server, forwarded to the
 *   agent, which dials the pod: the Python client's path), and through the real
 *   `kubectl port-forward` (SPDY/3.1 tunnelled in WebSocket messages, kubectl ≥ 1.31);
 * - exec round trip: median of --runs `kubectl exec POD -- true`, beside `kubectl get pod POD`
 *   (the same kubectl start-up and TLS, without the stream).
 *
 *   node --import tsx bench/streams.ts [--mb 64] [--runs 10] [--out bench/results/streams.json]
 *
 * Loopback only; bounded in count and time; the daemon is stopped at the end.
 */
import { execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { WebSocket } from 'ws';
import { daemonApi } from '../test/helpers/api.js';
import { startDaemon } from '../test/helpers/daemon.js';
import { waitFor } from '../test/helpers/wait.js';

const arg = (k: string, d: number): number => {
  const i = process.argv.indexOf(k);
  return i > 0 ? Math.min(1024, Math.max(1, Number(process.argv[i + 1]))) : d;
};
const MB = arg('--mb', 64);
const RUNS = arg('--runs', 10);
const outIdx = process.argv.indexOf('--out');
const OUT = outIdx > 0 ? process.argv[outIdx + 1] : undefined;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const d = await startDaemon(['--pod-cidr', '127.185.0.0/16', '--service-cidr', '127.186.0.0/16', '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--log-level', 'warn']);
try {
  const api = await daemonApi(d);
  // each connection gets MB MiB, then the pod closes it
  const sender = `import os, socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((os.environ['POD_IP'], 9000)); s.listen(8)
chunk = b'x' * (1 << 20)
while True:
    c, _ = s.accept()
    try:
        for _ in range(${MB}):
            c.sendall(chunk)
    except OSError:
        pass
    c.close()`;
  await api.request('POST', '/api/v1/namespaces/default/pods', {
    body: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'bench' }, spec: { containers: [{ name: 'c', image: 'bench', command: ['/usr/bin/python3', '-c', sender] }] } },
  });
  const phase = async (): Promise<string> => (await api.kubectl('get', 'pod', 'bench', '-o', 'jsonpath={.status.phase}/{.status.podIP}')).stdout;
  await waitFor(async () => (await phase()).startsWith('Running/'), { timeoutMs: 30_000 });
  const ip = (await phase()).split('/')[1];
  await waitFor(() => new Promise<boolean>((r) => net.connect(9000, ip).once('connect', function (this: net.Socket) { this.destroy(); r(true); }).once('error', () => r(false))), { timeoutMs: 10_000 });

  const direct = async (): Promise<number> => {
    const t0 = process.hrtime.bigint();
    let n = 0;
    await new Promise<void>((resolve, reject) => {
      const s = net.connect(9000, ip);
      s.on('data', (b: Buffer) => (n += b.length));
      s.once('end', resolve);
      s.once('error', reject);
    });
    return n / (1 << 20) / (Number(process.hrtime.bigint() - t0) / 1e9);
  };
  const forwarded = async (): Promise<number> => {
    const url = `${api.server.replace(/^http/, 'ws')}/api/v1/namespaces/default/pods/bench/portforward?ports=9000`;
    const t0 = process.hrtime.bigint();
    let n = 0;
    await new Promise<void>((resolve, reject) => {
      const ws = new WebSocket(url, ['v4.channel.k8s.io'], { ca: api.tls.ca, cert: api.tls.cert, key: api.tls.key, perMessageDeflate: false });
      let first = true;
      ws.on('message', (b: Buffer) => {
        if (b[0] !== 0) return;
        if (first) {
          first = false; // the port prefix
          return;
        }
        n += b.length - 1;
      });
      ws.once('close', () => resolve());
      ws.once('error', reject);
    });
    return n / (1 << 20) / (Number(process.hrtime.bigint() - t0) / 1e9);
  };
  // kubectl port-forward: one process for the runs, each run a new local connection
  const pf = spawn('kubectl', ['--kubeconfig', api.kubeconfig, 'port-forward', '--address', '127.0.0.1', 'pod/bench', '0:9000'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let pfOut = '';
  pf.stdout!.setEncoding('utf8').on('data', (c: string) => (pfOut += c));
  const kubectlPf = async (): Promise<number> => {
    const port = await waitFor(() => Number(/Forwarding from 127\.0\.0\.1:(\d+)/.exec(pfOut)?.[1] ?? 0), { timeoutMs: 15_000 });
    const t0 = process.hrtime.bigint();
    let n = 0;
    await new Promise<void>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('data', (b: Buffer) => (n += b.length));
      s.once('end', resolve);
      s.once('error', reject);
    });
    if (n !== MB << 20) throw new Error(`kubectl port-forward delivered ${n} of ${MB << 20} bytes`);
    return n / (1 << 20) / (Number(process.hrtime.bigint() - t0) / 1e9);
  };
  const directs: number[] = [];
  const fwds: number[] = [];
  const kubectls: number[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      directs.push(await direct());
      fwds.push(await forwarded());
      kubectls.push(await kubectlPf());
    }
  } finally {
    pf.kill();
  }

  const timed = (...args: string[]): Promise<number> =>
    new Promise((resolve, reject) => {
      const t0 = process.hrtime.bigint();
      execFile('kubectl', ['--kubeconfig', api.kubeconfig, ...args], { timeout: 20_000 }, (e) => (e ? reject(e) : resolve(Number(process.hrtime.bigint() - t0) / 1e6)));
    });
  const execs: number[] = [];
  const gets: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    execs.push(await timed('exec', 'bench', '--', 'true'));
    gets.push(await timed('get', 'pod', 'bench'));
  }
  const result = {
    when: new Date().toISOString(),
    mb: MB,
    portForwardMBps: { direct: median(directs), forwarded: median(fwds), ratio: median(fwds) / median(directs) },
    kubectlPortForwardMBps: { direct: median(directs), kubectl: median(kubectls), ratio: median(kubectls) / median(directs) },
    execMs: { kubectlExecTrue: median(execs), kubectlGetPod: median(gets), extra: median(execs) - median(gets) },
    runs: RUNS,
  };
  console.log(JSON.stringify(result, null, 2));
  if (OUT) writeFileSync(OUT, `${JSON.stringify(result, null, 2)}\n`);
} finally {
  await d.stop();
}
