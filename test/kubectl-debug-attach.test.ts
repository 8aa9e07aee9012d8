/**
 * Issue 17 item 2 and the attach gap: ephemeral containers (`kubectl debug`) and attach with
 * stdin and a tty, with the real kubectl 1.32 driven through a pseudo-terminal (script(1)),
 * against one real daemon.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import t from 'tap';
import { daemonApi } from './helpers/api.js';
import { startDaemon } from './helpers/daemon.js';
import { waitFor } from './helpers/wait.js';

const d = await startDaemon(['--pod-cidr', '127.206.0.0/16', '--service-cidr', '127.207.0.0/16', '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--log-level', 'warn']);
t.teardown(() => d.stop());
const api = await daemonApi(d);

type Rec = Record<string, unknown>;
const pod = (name: string, container: Rec): Rec => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { containers: [container] } });
const jsonpath = async (name: string, expr: string): Promise<string> => (await api.kubectl('get', 'pod', name, '-o', `jsonpath=${expr}`)).stdout;

for (const p of [
  pod('target', { name: 'app', image: 'busybox', command: ['sleep', '600'] }),
  pod('term', { name: 'sh', image: 'busybox', stdin: true, tty: true }),
  pod('once', { name: 'cat', image: 'busybox', stdin: true, stdinOnce: true, command: ['sh', '-c', 'cat; echo STDIN-CLOSED; exec sleep 600'] }),
]) {
  const r = await api.request('POST', '/api/v1/namespaces/default/pods', { body: p });
  if (r.status !== 201) throw new Error(r.body);
}
for (const name of ['target', 'term', 'once']) {
  await waitFor(async () => (await jsonpath(name, '{.status.containerStatuses[0].state.running.startedAt}')) !== '', { timeoutMs: 20_000, what: `${name} running` });
}
const podIP = await jsonpath('target', '{.status.podIP}');

/** kubectl on a pseudo-terminal of `cols`x`rows` (script(1)); input typed, output collected */
function terminal(args: string, size = '80 24'): { proc: ChildProcess; out: () => string; type(s: string): void; exited: Promise<number | null>; see(re: RegExp, what: string): Promise<unknown> } {
  const [cols, rows] = size.split(' ');
  const cmd = `stty cols ${cols} rows ${rows}; exec kubectl --kubeconfig '${api.kubeconfig}' ${args}`;
  const proc = spawn('script', ['-qfec', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (b: Buffer) => (out += b.toString('utf8')));
  proc.stderr!.on('data', (b: Buffer) => (out += b.toString('utf8')));
  const exited = new Promise<number | null>((r) => proc.once('close', (c) => r(c)));
  t.teardown(() => proc.kill('SIGKILL'));
  return {
    proc,
    out: () => out,
    type: (s) => proc.stdin!.write(s),
    exited,
    see: (re, what) => waitFor(() => re.test(out), { timeoutMs: 15_000, what: `${what} in ${JSON.stringify(out.slice(-400))}` }),
  };
}

t.test('kubectl debug -it: a shell in the pod\'s environment', async (t) => {
  const s = terminal('debug -it target --image=busybox -c dbg -- sh');
  await s.see(/If you don't see a command prompt/, 'the attach');
  s.type('echo "IP=$POD_IP NAME=$POD_NAME"; tty\n');
  await s.see(/IP=127\.206\.\d+\.\d+ NAME=target/, 'the pod\'s variables');
  s.type('exit 3\n');
  t.equal(await s.exited, 0, 'kubectl debug ends when the shell does');
  t.match(s.out(), `IP=${podIP} NAME=target`);
  t.match(s.out(), /\/dev\/pts\/\d+/, 'on a pseudo-terminal');
  t.notMatch(s.out(), /panic|nil pointer/);
  await waitFor(async () => (await jsonpath('target', '{.status.ephemeralContainerStatuses[?(@.name=="dbg")].state.terminated.exitCode}')) === '3', { what: 'dbg terminated with 3' });
  await new Promise((r) => setTimeout(r, 300));
  t.equal(await jsonpath('target', '{.status.ephemeralContainerStatuses[?(@.name=="dbg")].restartCount}'), '0', 'never restarted');
  t.equal(await jsonpath('target', '{.status.phase}'), 'Running', 'the pod goes on');
});

t.test('kubectl debug without -it: Running in ephemeralContainerStatuses, its logs, exec into it', async (t) => {
  const r = await api.kubectl('debug', 'target', '--image=busybox', '-c', 'sleeper', '--', 'sh', '-c', 'echo from-debug; exec sleep 60');
  t.equal(r.code, 0, r.stderr);
  await waitFor(async () => (await jsonpath('target', '{.status.ephemeralContainerStatuses[?(@.name=="sleeper")].state.running.startedAt}')) !== '', { what: 'sleeper running' });
  t.equal(await jsonpath('target', '{.status.ephemeralContainerStatuses[?(@.name=="sleeper")].ready}'), 'false', 'ephemeral containers are never ready');
  await waitFor(async () => (await api.kubectl('logs', 'target', '-c', 'sleeper')).stdout === 'from-debug\n', { what: 'its log' });
  const e = await api.kubectl('exec', 'target', '-c', 'sleeper', '--', 'sh', '-c', 'echo $POD_IP');
  t.equal(e.stdout.trim(), podIP, 'exec reaches it');
  t.same(JSON.parse(await jsonpath('target', '{.spec.ephemeralContainers[*].name}').then((s) => JSON.stringify(s.split(' ')))), ['dbg', 'sleeper']);
});

t.test('kubectl debug --target: the target container\'s PID namespace', async (t) => {
  // exec shows whether containers get PID namespaces on this machine: then so does the target's ephemeral container
  const own = Number((await api.kubectl('exec', 'target', '-c', 'app', '--', 'sh', '-c', 'echo $$')).stdout.trim());
  const s = terminal('debug -it target --image=busybox -c peek --target=app -- sh');
  await s.see(/If you don't see a command prompt/, 'the attach');
  s.type('echo "PID=$$"; exit\n');
  await s.exited;
  const pid = Number(/PID=(\d+)/.exec(s.out())?.[1]);
  t.ok(pid > 0, s.out());
  if (own < 100) t.ok(pid < 100, `the shell is pid ${pid} of the target's namespace (exec's shell was ${own})`);
  else t.comment(`containers get no PID namespace here (exec's shell was pid ${own}): nothing to share`);
});

t.test('attach -it to a stdin+tty container: input, output, resize; leaving keeps it running', async (t) => {
  const s = terminal('attach -it term', '77 33');
  await s.see(/If you don't see a command prompt/, 'the attach');
  // kubectl sends the size and the first input from racing goroutines: a newline's prompt first
  s.type('\n');
  await s.see(/prompt, try pressing enter\.\r\n[^]*# /, 'a prompt');
  s.type('echo "ANSWER=$((6*7))"; stty size\n');
  await s.see(/ANSWER=42/, 'the shell\'s answer');
  await s.see(/33 77/, 'the size kubectl sent');
  s.proc.kill('SIGKILL');
  await s.exited;
  await new Promise((r) => setTimeout(r, 500));
  t.equal(await jsonpath('term', '{.status.containerStatuses[0].restartCount}/{.status.containerStatuses[0].state.running.startedAt}').then((v) => v.split('/')[0]), '0');
  t.not(await jsonpath('term', '{.status.containerStatuses[0].state.running.startedAt}'), '', 'still running after the client left');
  const again = terminal('attach -it term');
  await again.see(/If you don't see a command prompt/, 'the second attach');
  again.type('echo "SECOND=$((2+3))"\n');
  await again.see(/SECOND=5/, 'the same shell answers again');
  again.proc.kill('SIGKILL');
});

t.test('attach -i with stdinOnce: input reaches the program; its end closes the container\'s stdin', async (t) => {
  const p = spawn('kubectl', ['--kubeconfig', api.kubeconfig, 'attach', '-i', 'once'], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => p.kill('SIGKILL'));
  p.stdin.end('line-one\n');
  await waitFor(async () => /line-one\nSTDIN-CLOSED\n/.test((await api.kubectl('logs', 'once')).stdout), { timeoutMs: 10_000, what: 'cat saw the line and then its end' });
  t.pass('the line reached cat, and cat saw its input end');
  p.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, 300));
  t.not(await jsonpath('once', '{.status.containerStatuses[0].state.running.startedAt}'), '', 'the container goes on');
});

t.test('kubectl run -it --rm --image=busybox: an interactive pod, removed after', async (t) => {
  const s = terminal('run -it --rm --restart=Never --image=busybox runner -- sh');
  await s.see(/If you don't see a command prompt/, 'the attach');
  s.type('echo "RUN=$POD_NAME"; exit\n');
  await s.see(/RUN=runner/, 'the pod\'s shell');
  t.equal(await s.exited, 0, s.out());
  await waitFor(async () => (await api.request('GET', '/api/v1/namespaces/default/pods/runner')).status === 404, { timeoutMs: 10_000, what: 'the pod deleted' });
});

t.test('validation: ephemeral containers are added, never changed; upstream field paths, 422 Invalid', async (t) => {
  const patch = (body: unknown, type = 'application/strategic-merge-patch+json') =>
    api.request('PATCH', '/api/v1/namespaces/default/pods/target/ephemeralcontainers', { body: JSON.stringify(body), headers: { 'Content-Type': type } });
  const changed = await patch([{ op: 'replace', path: '/spec/ephemeralContainers/0/image', value: 'nginx' }], 'application/json-patch+json');
  t.equal(changed.status, 422, changed.body);
  const st = changed.json<{ reason: string; details: { causes: { field: string; reason: string }[] } }>();
  t.equal(st.reason, 'Invalid');
  t.same(st.details.causes.map((c) => `${c.reason} ${c.field}`), ['FieldValueForbidden spec.ephemeralContainers[dbg]']);
  const removed = await patch([{ op: 'remove', path: '/spec/ephemeralContainers/0' }], 'application/json-patch+json');
  t.equal(removed.status, 422);
  t.match(removed.body, /existing ephemeral containers \\"dbg\\" may not be removed/);
  const ported = await patch({ spec: { ephemeralContainers: [{ name: 'web', image: 'busybox', ports: [{ containerPort: 80 }], livenessProbe: { exec: { command: ['true'] } } }] } });
  t.equal(ported.status, 422);
  t.same(
    ported.json<{ details: { causes: { field: string }[] } }>().details.causes.map((c) => c.field),
    ['spec.ephemeralContainers[3].ports', 'spec.ephemeralContainers[3].livenessProbe'],
  );
  const dup = await patch({ spec: { ephemeralContainers: [{ name: 'app', image: 'busybox' }] } });
  t.match(dup.body, /spec\.ephemeralContainers\[3\]\.name: Duplicate value: \\"app\\"/);
  const badTarget = await patch({ spec: { ephemeralContainers: [{ name: 'x', image: 'busybox', targetContainerName: 'nope' }] } });
  t.match(badTarget.body, /spec\.ephemeralContainers\[3\]\.targetContainerName: Not found: \\"nope\\"/);
  const viaPod = await api.request('PATCH', '/api/v1/namespaces/default/pods/target', {
    body: JSON.stringify({ spec: { ephemeralContainers: [{ name: 'sneak', image: 'busybox' }] } }),
    headers: { 'Content-Type': 'application/strategic-merge-patch+json' },
  });
  t.equal(viaPod.status, 422, 'not through the pod itself');
  const created = await api.request('POST', '/api/v1/namespaces/default/pods', {
    body: { ...pod('born', { name: 'a', image: 'busybox' }), spec: { containers: [{ name: 'a', image: 'busybox' }], ephemeralContainers: [{ name: 'e', image: 'busybox' }] } },
  });
  t.equal(created.status, 422);
  t.match(created.body, /spec\.ephemeralContainers: Forbidden: cannot be set on create/);
  const viaKubectl = await api.kubectl('debug', 'target', '--image=busybox', '-c', 'app');
  t.not(viaKubectl.code, 0);
  t.match(viaKubectl.stderr, /spec\.ephemeralContainers\[\d\]\.name: Duplicate value: "app"/);
  t.notMatch(viaKubectl.stderr, /panic|nil pointer/);
  const put = await api.request('GET', '/api/v1/namespaces/default/pods/target/ephemeralcontainers');
  t.equal(put.status, 200);
  t.equal(put.json<{ kind: string }>().kind, 'Pod');
});
