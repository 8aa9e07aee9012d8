/**
 * `kubectl port-forward` with the real kubectl 1.32, which tunnels SPDY/3.1 in WebSocket
 * messages (`SPDY/3.1+portforward.k8s.io`) through the API server to the pod's node agent
 * endpoint: an HTTP request by curl, megabytes both ways intact, several connections at once,
 * and a port nothing listens on reported by kubectl (which then ends, as it does against a
 * kubelet: "lost connection to pod"). One daemon for the file.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import t, { type Test } from 'tap';
import { daemonApi } from './helpers/api.js';
import { startDaemon } from './helpers/daemon.js';
import { waitFor } from './helpers/wait.js';

const d = await startDaemon(['--pod-cidr', '127.186.0.0/16', '--service-cidr', '127.187.0.0/16', '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--log-level', 'warn']);
t.teardown(() => d.stop());
const api = await daemonApi(d);

// an echo of bytes on 9000 (python: the pod's IP, each connection echoed until its client ends)
const ECHO = `
import os, socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((os.environ['POD_IP'], 9000)); s.listen(16)
def serve(c):
    while True:
        b = c.recv(65536)
        if not b: break
        c.sendall(b)
    c.shutdown(socket.SHUT_WR); c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
`;
await api.request('POST', '/api/v1/namespaces/default/pods', {
  body: {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'pf' },
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [
        { name: 'web', image: 'echo', ports: [{ containerPort: 8080 }] },
        { name: 'bytes', image: 'python', command: ['python3', '-u', '-c', ECHO], ports: [{ containerPort: 9000 }], readinessProbe: { tcpSocket: { port: 9000 }, periodSeconds: 1 } },
      ],
    },
  },
});
await waitFor(async () => (await api.kubectl('get', 'pod', 'pf', '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')).stdout === 'True', { what: 'pod pf ready', timeoutMs: 30_000 });

interface Forward {
  proc: ChildProcess;
  port: number;
  stderr: () => string;
}

/** `kubectl port-forward pod/pf 0:remote`, once it says where it listens; ended by the test */
async function portForward(t: Test, remote: number): Promise<Forward> {
  const proc = spawn('kubectl', ['--kubeconfig', api.kubeconfig, 'port-forward', '--address', '127.0.0.1', 'pod/pf', `0:${remote}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise((r) => proc.once('exit', r));
  t.teardown(async () => {
    proc.kill();
    await exited;
  });
  const port = await waitFor(
    () => {
      if (proc.exitCode !== null) throw new Error(`kubectl port-forward exited ${proc.exitCode}: ${err}`);
      return Number(/Forwarding from 127\.0\.0\.1:(\d+) -> \d+/.exec(out)?.[1] ?? 0);
    },
    { what: 'kubectl port-forward listening', timeoutMs: 15_000 },
  );
  return { proc, port, stderr: () => err };
}

/** sends `data` on a new connection to `port`, ends, and resolves to everything that came back */
function roundTrip(port: number, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    const c = net.connect({ host: '127.0.0.1', port }, () => c.end(data));
    c.on('data', (b: Buffer) => got.push(b));
    c.on('end', () => resolve(Buffer.concat(got)));
    c.on('error', reject);
  });
}

const curl = (url: string): Promise<{ code: number; stdout: string }> =>
  new Promise((resolve) => execFile('curl', ['-sS', '--max-time', '10', url], (err, stdout) => resolve({ code: err ? 1 : 0, stdout })));

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

t.test('curl through kubectl port-forward reaches the pod', async (t) => {
  const f = await portForward(t, 8080);
  for (let i = 0; i < 3; i++) {
    const r = await curl(`http://127.0.0.1:${f.port}/hello`);
    t.equal(r.code, 0, `request ${i} answered`);
    t.match(r.stdout, /pf/, `request ${i}: the echo pod answers with its name`);
  }
});

t.test('megabytes both ways, several connections at once, byte for byte', async (t) => {
  const f = await portForward(t, 9000);
  const payloads = [randomBytes(6 << 20), randomBytes(1000), randomBytes(300_000), Buffer.from('x')];
  const back = await Promise.all(payloads.map((p) => roundTrip(f.port, p)));
  back.forEach((b, i) => {
    t.equal(b.length, payloads[i].length, `connection ${i}: ${payloads[i].length} bytes back`);
    t.equal(sha(b), sha(payloads[i]), `connection ${i}: the same bytes`);
  });
});

t.test('a port nothing listens on: kubectl names the failure and ends', async (t) => {
  const f = await portForward(t, 9999);
  const r = await curl(`http://127.0.0.1:${f.port}/`);
  t.not(r.code, 0, 'the connection fails');
  await waitFor(() => f.proc.exitCode !== null, { what: 'kubectl port-forward ending', timeoutMs: 10_000 });
  t.match(f.stderr(), /an error occurred forwarding \d+ -> 9999: error forwarding port 9999 to pod [\d.]+: connect ECONNREFUSED/, 'the dial error, from the error stream');
  t.match(f.stderr(), /lost connection to pod/);
});
