import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { startDaemon } from './helpers/daemon.js';
import { daemonApi } from './helpers/api.js';
import { get } from './helpers/http.js';
import { waitFor } from './helpers/wait.js';

// Without a mount namespace (forced here with KUBELOOP_MOUNT_NAMESPACES=off, as on a kernel
// without user namespaces): the pod still runs, its mounts are given as KUBELOOP_VOLUME_<NAME>
// (usable in $(VAR)), and it gets one Warning and a condition naming them and the DNS fallback.

const MANIFEST = `
apiVersion: v1
kind: ConfigMap
metadata: {name: web}
data: {index.html: "from the volume\\n"}
---
apiVersion: v1
kind: Pod
metadata: {name: nginx}
spec:
  containers:
  - name: nginx
    image: nginx
    ports: [{containerPort: 8080}]
    env: [{name: KUBELOOP_STATIC_ROOT, value: "$(KUBELOOP_VOLUME_HTML)"}]
    volumeMounts: [{name: html, mountPath: /usr/share/nginx/html}]
  volumes: [{name: html, configMap: {name: web}}]
`;

t.test('forced fallback: variables, one event, a condition', async (t) => {
  process.env.KUBELOOP_MOUNT_NAMESPACES = 'off';
  const d = await startDaemon(['--pod-cidr', '127.237.0.0/16', '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0']);
  delete process.env.KUBELOOP_MOUNT_NAMESPACES;
  t.teardown(() => d.stop());
  const api = await daemonApi(d);
  const file = `${d.stateDir}/manifest.yaml`;
  await writeFile(file, MANIFEST);
  const r = await api.kubectl('apply', '-f', file);
  t.equal(r.code, 0, r.stderr);
  const ip = await waitFor(async () => (await api.kubectl('get', 'pod', 'nginx', '-o', 'jsonpath={.status.podIP}')).stdout.trim(), { timeoutMs: 10_000 });
  const page = await waitFor(async () => {
    const g = await get(`http://${ip}:8080/index.html`).catch(() => undefined);
    return g?.status === 200 ? g.body : undefined;
  }, { timeoutMs: 10_000, what: 'nginx serves index.html' });
  t.equal(page, 'from the volume\n', '$(KUBELOOP_VOLUME_HTML) expands to the volume directory');

  const cond = await waitFor(async () => {
    const out = (await api.kubectl('get', 'pod', 'nginx', '-o', 'jsonpath={.status.conditions[?(@.type=="kubeloop.dev/VolumeMountsAtPaths")]}')).stdout;
    return out ? (JSON.parse(out) as { status: string; message: string }) : undefined;
  }, { timeoutMs: 10_000 });
  t.equal(cond.status, 'False', 'the condition says the mounts are not at their paths');
  t.match(cond.message, /\/usr\/share\/nginx\/html \(KUBELOOP_VOLUME_HTML=.*_volumes\/html\)/, 'and names each mount and its variable');
  t.match(cond.message, /KUBELOOP_MOUNT_NAMESPACES=off/, 'and why');
  t.match(cond.message, /_SERVICE_HOST\)? or host DNS routing/, 'and the DNS fallback');

  // a restart starts the container again: still one event
  const pid = (await api.kubectl('get', 'pod', 'nginx', '-o', 'jsonpath={.status.containerStatuses[0].containerID}')).stdout.replace('kubeloop://', '');
  process.kill(-Number(pid), 'SIGKILL');
  await waitFor(async () => (await api.kubectl('get', 'pod', 'nginx', '-o', 'jsonpath={.status.containerStatuses[0].restartCount}')).stdout.trim() === '1', { timeoutMs: 20_000, what: 'a restart' });
  const ev = await api.kubectl('get', 'events', '--field-selector', 'reason=MountsNotAtPaths', '-o', 'jsonpath={range .items[*]}{.count}{"\\n"}{end}');
  t.same(ev.stdout.trim().split('\n'), ['1'], 'exactly one MountsNotAtPaths event, sent once');
  const desc = await api.kubectl('describe', 'pod', 'nginx');
  t.match(desc.stdout, /Warning\s+MountsNotAtPaths/, 'describe shows the warning');
});
