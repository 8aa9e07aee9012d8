import t from 'tap';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon } from './helpers/daemon.js';
import { daemonApi } from './helpers/api.js';
import { waitFor } from './helpers/wait.js';
import { unmountBelow } from '../src/agent/runtime/memory-volumes.js';

// An emptyDir of medium Memory across a daemon killed outright: the tmpfs it left is taken up
// again by the next daemon for the same pod (content kept, not mounted twice, as the kubelet
// keeps a pod's volumes across its restarts), and deleting the pod then unmounts it.

const MANIFEST = `
apiVersion: v1
kind: Pod
metadata: {name: mem}
spec:
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'if [ -e /kl-mem/first ]; then echo "KEPT=$(cat /kl-mem/first)"; else echo run1 > /kl-mem/first; echo WROTE; fi; exec sleep 3600']
    volumeMounts: [{name: m, mountPath: /kl-mem}]
  volumes: [{name: m, emptyDir: {medium: Memory, sizeLimit: 4Mi}}]
`;

t.test('a memory volume outlives a killed daemon and goes with its pod', { skip: process.getuid?.() !== 0 && 'tmpfs on the host side needs root' }, async (t) => {
  const stateDir = await mkdtemp(join(tmpdir(), 'kubeloop-memvol-'));
  const daemons: ChildProcess[] = [];
  // in this order: the daemons end (a graceful stop unmounts), then a failing run's leftovers go
  // (the helper's stop() would remove the state dir the second daemon needs)
  t.teardown(async () => {
    for (const p of daemons) {
      if (p.exitCode !== null || p.signalCode !== null) continue;
      const gone = new Promise((res) => p.once('exit', res));
      p.kill('SIGINT');
      const timer = setTimeout(() => p.kill('SIGKILL'), 20_000);
      await gone;
      clearTimeout(timer);
    }
    await unmountBelow(stateDir);
    await rm(stateDir, { recursive: true, force: true });
  });
  const podMounts = () => readFileSync('/proc/self/mounts', 'utf8').split('\n').filter((l) => l.split(' ')[1]?.startsWith(`${stateDir}/pods/default_mem_`));
  const args = ['--pod-cidr', '127.235.0.0/16', '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0'];

  const d1 = await startDaemon(args, { stateDir });
  daemons.push(d1.proc);
  const exited = new Promise((r) => d1.proc.once('exit', r));
  const api1 = await daemonApi(d1);
  await writeFile(join(stateDir, 'm.yaml'), MANIFEST);
  const r = await api1.kubectl('apply', '-f', join(stateDir, 'm.yaml'));
  t.equal(r.code, 0, r.stderr);
  await waitFor(async () => (await api1.kubectl('logs', 'mem')).stdout.includes('WROTE'), { timeoutMs: 15_000, what: 'the first run writes its file' });
  t.equal(podMounts().length, 1, 'the tmpfs is mounted in the pod dir');

  d1.proc.kill('SIGKILL');
  await exited;
  t.equal(podMounts().length, 1, 'a killed daemon leaves it mounted (the pod is still in the store)');

  const d2 = await startDaemon(args, { stateDir });
  daemons.push(d2.proc);
  const api2 = await daemonApi(d2);
  const logs = await waitFor(async () => {
    const l = (await api2.kubectl('logs', 'mem')).stdout;
    return l.includes('KEPT=') || l.includes('WROTE') ? l : undefined;
  }, { timeoutMs: 20_000, what: 'the pod runs again' });
  t.match(logs, /KEPT=run1/, "the next daemon's container finds what the first run wrote");
  t.equal(podMounts().length, 1, 'mounted once, not twice');

  const del = await api2.kubectl('delete', 'pod', 'mem', '--grace-period=1');
  t.equal(del.code, 0, del.stderr);
  await waitFor(() => podMounts().length === 0, { timeoutMs: 10_000, what: 'the tmpfs is unmounted' });
  t.same(podMounts(), [], 'deleting the pod unmounts it');
});
