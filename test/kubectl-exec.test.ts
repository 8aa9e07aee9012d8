/**
 * Issue 17 part 1–2: exec, cp, attach, port-forward and debug through the node agent endpoint,
 * with the real kubectl 1.32 and the official Python client, against one real daemon.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { daemonApi } from './helpers/api.js';
import { startDaemon } from './helpers/daemon.js';
import { waitFor } from './helpers/wait.js';

const d = await startDaemon(['--pod-cidr', '127.183.0.0/16', '--service-cidr', '127.184.0.0/16', '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--log-level', 'warn']);
t.teardown(() => d.stop());
const api = await daemonApi(d);
const tmp = await mkdtemp(join(tmpdir(), 'kubeloop-exec-'));
t.teardown(() => rm(tmp, { recursive: true, force: true }));

await api.request('POST', '/api/v1/namespaces/default/pods', {
  body: {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'box' },
    spec: {
      containers: [
        { name: 'sh', image: 'busybox', command: ['sh', '-c', 'echo started; exec sleep 600'], workingDir: '/tmp', env: [{ name: 'GREETING', value: 'from-the-spec' }] },
        { name: 'web', image: 'echo', ports: [{ containerPort: 8080 }] },
      ],
    },
  },
});
const phase = async (): Promise<string> => (await api.kubectl('get', 'pod', 'box', '-o', 'jsonpath={.status.phase}/{.status.podIP}')).stdout;
await waitFor(async () => (await phase()).startsWith('Running/'), { timeoutMs: 20_000 });
const podIP = (await phase()).split('/')[1];

/** kubectl with stdin `input` (or nothing), never rejects */
const kubectlIn = (input: string | undefined, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    const p = execFile('kubectl', ['--kubeconfig', api.kubeconfig, ...args], { timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr }),
    );
    p.stdin!.on('error', () => undefined).end(input ?? '');
  });

t.test('exec runs in the pod environment, with its exit code', async (t) => {
  const r = await api.kubectl('exec', 'box', '-c', 'sh', '--', 'sh', '-c', 'echo "$POD_IP $POD_NAME $GREETING"; pwd; exit 3');
  t.equal(r.code, 3, 'kubectl exits with the command\'s code');
  t.match(r.stdout, `${podIP} box from-the-spec\n/tmp\n`, 'the container\'s env and working dir');
  t.match(r.stderr, /command terminated with exit code 3/);
  const env = await api.kubectl('exec', 'box', '-c', 'sh', '--', 'env');
  t.match(env.stdout, new RegExp(`^POD_IP=${podIP.replace(/\./g, '\\.')}$`, 'm'));
  const missing = await api.kubectl('exec', 'box', '-c', 'sh', '--', 'no-such-command-here');
  t.not(missing.code, 0, 'a missing command fails');
});

t.test('exec -i carries stdin to its end', async (t) => {
  const r = await kubectlIn('hi\nthere\n', 'exec', '-i', 'box', '-c', 'sh', '--', 'sh', '-c', 'cat; echo END');
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'hi\nthere\nEND\n');
});

t.test('exec -it is interactive on a pseudo-terminal of the client\'s size', async (t) => {
  // script(1) gives kubectl a terminal; stty sizes it first, so kubectl's resize message carries 91x37
  const cmd = `stty cols 91 rows 37; kubectl --kubeconfig '${api.kubeconfig}' exec -it box -c sh -- sh`;
  const p = spawn('script', ['-qfec', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (b: Buffer) => (out += b.toString('utf8')));
  const exited = new Promise<number | null>((r) => p.once('close', (c) => r(c)));
  t.teardown(() => p.kill('SIGKILL'));
  await waitFor(() => out.includes('#') || out.includes('$'), { timeoutMs: 10_000 });
  p.stdin.write('tty; stty size; echo "$((6*7))"; exit 4\n');
  const code = await exited;
  t.match(out, /\/dev\/pts\/\d+/, 'a pseudo-terminal');
  t.match(out, /37 91/, 'of the size kubectl sent');
  t.match(out, /42/, 'the shell ran the input');
  t.equal(code, 4, `the exit code comes back (got ${code}): ${JSON.stringify(out.slice(-300))}`);
});

t.test('kubectl cp copies a file in and out (tar through exec)', async (t) => {
  const src = join(tmp, 'in.txt');
  const body = `kubeloop ${'x'.repeat(5000)}\n`;
  await writeFile(src, body);
  const cin = await api.kubectl('cp', src, 'box:/tmp/copied.txt', '-c', 'sh');
  t.equal(cin.code, 0, cin.stderr);
  t.equal((await api.kubectl('exec', 'box', '-c', 'sh', '--', 'wc', '-c', '/tmp/copied.txt')).stdout.trim().split(/\s+/)[0], String(body.length));
  const back = join(tmp, 'out.txt');
  const cout = await api.kubectl('cp', 'box:/tmp/copied.txt', back, '-c', 'sh');
  t.equal(cout.code, 0, cout.stderr);
  t.equal(await readFile(back, 'utf8'), body);
});

t.test('a plain POST is no stream (kubectl debug: test/kubectl-debug-attach)', async (t) => {
  const plain = await api.request('POST', '/api/v1/namespaces/default/pods/box/exec?command=true');
  t.equal(plain.status, 400, 'a plain request is not a stream: upstream\'s 400 Upgrade request required');
});

t.test('the agent endpoint serves the API server only', async (t) => {
  const node = (await api.request('GET', '/api/v1/nodes')).json<{ items: { status: { daemonEndpoints: { kubeletEndpoint: { Port: number } } } }[] }>();
  const port = node.items[0].status.daemonEndpoints.kubeletEndpoint.Port;
  t.ok(port > 0, 'the Node publishes the endpoint port');
  const get = (cert: { cert?: string; key?: string }): Promise<number | string> =>
    new Promise((resolve) => {
      const req = https.request({ host: '127.0.0.1', port, path: `/containerLogs/default/box?container=sh`, ca: api.tls.ca, ...cert, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', (e) => resolve(e.message));
      req.end();
    });
  t.equal(await get({ cert: api.tls.cert, key: api.tls.key }), 403, 'the admin certificate is refused');
  t.type(await get({}), 'string', 'no certificate: no TLS connection');
  const logs = await api.kubectl('logs', 'box', '-c', 'sh');
  t.equal(logs.stdout, 'started\n', 'logs come through the agent');
});

t.test('the official Python client: exec and port-forward', async (t) => {
  const script = `
import sys
from kubernetes import client, config
from kubernetes.stream import stream, portforward
config.load_kube_config(config_file=sys.argv[1])
core = client.CoreV1Api()
out = stream(core.connect_get_namespaced_pod_exec, 'box', 'default', container='sh', command=['sh', '-c', 'echo py-$POD_NAME'], stderr=True, stdin=False, stdout=True, tty=False)
print('EXEC', out.strip())
# stdin as the client writes it: a str goes in a TEXT frame, bytes in a binary one (both are stdin upstream)
resp = stream(core.connect_get_namespaced_pod_exec, 'box', 'default', container='sh', command=['sh', '-c', 'read a; read b; echo "got-$a-$b"; exit 4'], stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
resp.write_stdin('text\\n')
resp.write_stdin(b'bytes\\n')
resp.run_forever(timeout=15)
print('STDIN', resp.read_stdout().strip(), 'RC', resp.returncode)
pf = portforward(core.connect_get_namespaced_pod_portforward, 'box', 'default', ports='8080')
s = pf.socket(8080)
s.setblocking(True)
s.sendall(b'GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n')
data = b''
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
s.close()
print('PF', data.split(b'\\r\\n')[0].decode())
print('BODY', data.decode(errors='replace').split('\\r\\n\\r\\n', 1)[-1][:200])
`;
  const r = await new Promise<{ code: number; out: string; err: string }>((resolve) =>
    execFile('/usr/bin/python3', ['-c', script, api.kubeconfig], { timeout: 30_000 }, (e, out, err) => resolve({ code: e ? 1 : 0, out, err })),
  );
  t.equal(r.code, 0, r.err);
  t.match(r.out, /^EXEC py-box$/m);
  t.match(r.out, /^STDIN got-text-bytes RC 4$/m, 'stdin in text and binary frames, the exit code from the status channel');
  t.match(r.out, /^PF HTTP\/1\.[01] 200/m);
  t.match(r.out, /box/, 'the echo image answers with the pod name');
});
