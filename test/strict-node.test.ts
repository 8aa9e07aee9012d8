/**
 * kubeloop runs where Node is strict about its internals: the embedded store loads under
 * `--pending-deprecation --throw-deprecation` (its dependencies' import-time process.binding
 * probes would end the process), and the daemon comes up under the permission model and
 * serves on the node:net data path.
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './helpers/daemon.js';
import { waitFor } from './helpers/wait.js';

/** the environment without tap's own loaders (its process-on-spawn probes process.binding too) */
const cleanEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(NODE_OPTIONS|TAP|_TAPJS|NYC)/.test(k)) env[k] = v;
  return { ...env, KUBELOOP_FROM_SOURCE: '1' };
};

const major = Number(process.versions.node.split('.')[0]);
const permissionFlag = major >= 22 ? '--permission' : '--experimental-permission';

t.test('the embedded store under --pending-deprecation --throw-deprecation', async (t) => {
  const code = `
    const { createEmbeddedStore } = await import('./src/store/embedded.ts');
    const s = await createEmbeddedStore();
    await s.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x', namespace: 'default' } });
    console.log('stored', (await s.list('ConfigMap')).items.length);
    await s.close();`;
  // through sh, which drops the NODE_OPTIONS tap's spawn instrumentation adds (its own
  // process-on-spawn probes process.binding and would be the one to warn)
  const r = spawnSync('/bin/sh', ['-c', 'unset NODE_OPTIONS; exec "$@"', 'sh', process.execPath, '--import', 'tsx', '--pending-deprecation', '--throw-deprecation', '--input-type=module', '-e', code], { cwd: ROOT, encoding: 'utf8', timeout: 60_000, env: cleanEnv() });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /stored 1/);
  t.notMatch(r.stderr, /DeprecationWarning|DEP0111/, 'no deprecation reaches the process');
});

t.test(`kubeloop up under the permission model (${permissionFlag})`, async (t) => {
  const stateDir = mkdtempSync(join(tmpdir(), 'kubeloop-perm-'));
  t.teardown(() => rmSync(stateDir, { recursive: true, force: true }));
  const proc = spawn('/bin/sh', ['-c', 'unset NODE_OPTIONS; exec "$@"', 'sh', process.execPath,
    permissionFlag, '--allow-fs-read=*', '--allow-fs-write=*', '--allow-child-process', '--allow-worker',
    join(ROOT, 'bin', 'kubeloop.mjs'), 'up', '--state-dir', stateDir,
    '--pod-cidr', '127.174.0.0/16', '--service-cidr', '127.175.0.0/16', '--lb-pool', '127.176.0.0/16',
    '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--metrics-addr', '127.0.0.1:0',
    '--node-ip', '127.0.74.1', '--nodeport-addresses', '127.0.74.1', '--log-level', 'info',
  ], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv() });
  let out = '';
  proc.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  proc.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
  const exited = new Promise((r) => proc.once('exit', r));
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
  });
  await waitFor(() => out.includes('kubeloop is running') || proc.exitCode !== null, { what: 'up to start', timeoutMs: 60_000, intervalMs: 50 });
  t.match(out, /kubeloop is running/, 'up started');
  if (!out.includes('kubeloop is running')) t.comment(out.slice(-2000));
  t.match(out, /proxy data path: net/, 'the proxy chose node:net (process.binding is denied)');
  t.notMatch(out, /ERR_ACCESS_DENIED/, 'nothing was denied on the way');
  proc.kill('SIGINT');
  await exited;
  t.equal(proc.exitCode, 0, 'a graceful stop');
});
