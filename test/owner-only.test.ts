/**
 * Issue 14, findings 2 and 3: nothing a daemon keeps is another user's. After a run with a
 * pod (its log), a Secret (in the snapshot), a claim (its directory) and the PKI, every dir under
 * the state dir is 0700 and every file 0600 — even with umask 000 and a state dir an older
 * kubeloop left 0755. Then a second, non-root user (`nobody`) on the same machine can read none
 * of it and, holding no credential, can neither list Secrets nor create a pod through the API,
 * not even with `curl -k`.
 */
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { daemonApi } from './helpers/api.js';
import { startDaemon } from './helpers/daemon.js';
import { otherUser, run } from './helpers/other-user.js';
import { waitFor } from './helpers/wait.js';


/** Every path under `dir` (not following symlinks) with its permission bits. */
function modes(dir: string): Array<{ path: string; dir: boolean; mode: number }> {
  const out: Array<{ path: string; dir: boolean; mode: number }> = [];
  const visit = (p: string): void => {
    const st = lstatSync(p, { throwIfNoEntry: false });
    if (!st || st.isSymbolicLink()) return;
    out.push({ path: p.slice(dir.length) || '/', dir: st.isDirectory(), mode: st.mode & 0o777 });
    if (st.isDirectory()) for (const n of readdirSync(p)) visit(join(p, n));
  };
  visit(dir);
  return out;
}


t.test('owner-only state and a second user who can do nothing', async (t) => {
  // others may walk to the state dir: its own modes are what must keep them out
  const parent = mkdtempSync(join(tmpdir(), 'kubeloop-owner-'));
  chmodSync(parent, 0o755);
  t.teardown(() => rmSync(parent, { recursive: true, force: true }));
  const stateDir = join(parent, 'state');
  // what an older kubeloop left: a world-readable dir, log dir and snapshot
  mkdirSync(join(stateDir, 'pods'), { recursive: true, mode: 0o755 });
  chmodSync(stateDir, 0o755);
  chmodSync(join(stateDir, 'pods'), 0o755);
  writeFileSync(join(stateDir, 'pods', 'old.log'), 'old secret output\n', { mode: 0o644 });
  chmodSync(join(stateDir, 'pods', 'old.log'), 0o644);

  // the daemon inherits umask 000: its modes must not depend on the umask
  const umask = process.umask(0);
  let d;
  try {
    d = await startDaemon(['--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--metrics-addr=', '--pod-cidr', '127.199.0.0/16', '--service-cidr', '127.200.0.0/16', '--log-level', 'info'], { stateDir });
  } finally {
    process.umask(umask);
  }
  const daemon = d;
  const kill = (): void => void (daemon.proc.exitCode === null && daemon.proc.kill('SIGKILL'));
  process.once('exit', kill);
  t.teardown(async () => {
    process.removeListener('exit', kill);
    await daemon.stop();
  });
  t.match(daemon.stderr(), /the state dir was readable by other users .*made it owner-only/, 'the widened dir is tightened, with a log line');

  const api = await daemonApi(daemon, { kubectlCacheDir: join(parent, 'kubectl-cache') });
  const create = async (path: string, body: unknown) => {
    const r = await api.request('POST', path, { body });
    t.equal(r.status, 201, r.body);
  };
  await create('/api/v1/namespaces/default/secrets', { metadata: { name: 'db' }, stringData: { password: 'hunter2-very-secret' } });
  await create('/api/v1/namespaces/default/persistentvolumeclaims', {
    metadata: { name: 'data' },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Mi' } } },
  });
  await create('/api/v1/namespaces/default/pods', {
    metadata: { name: 'talker' },
    spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'c', image: 'shell', command: ['sh', '-c', 'echo pod-says-hello; exec sleep 600'] }] },
  });
  await waitFor(async () => (await api.request('GET', '/api/v1/namespaces/default/pods/talker/log')).body.includes('pod-says-hello'), { what: 'the pod log', timeoutMs: 20_000 });
  await waitFor(() => readdirSync(stateDir).some((f) => /^journal-\d+\.log$/.test(f) && readFileSync(join(stateDir, f), 'utf8').includes('Secret/default/db')), { what: 'the journal with the Secret', timeoutMs: 10_000 });
  await waitFor(() => lstatSync(join(stateDir, 'volumes', 'default', 'data'), { throwIfNoEntry: false }), { what: 'the claim directory' });

  await t.test('every dir under the state dir is 0700, every file 0600', async (t) => {
    const all = modes(stateDir);
    const logs = all.filter((m) => m.path.endsWith('.log') && m.path.startsWith('/pods/default_talker_'));
    t.ok(logs.length > 0, 'the pod log is there');
    t.ok(all.some((m) => m.path === '/pki/ca.key'), 'the CA key is there');
    t.ok(all.some((m) => /^\/journal-\d+\.log$/.test(m.path)), 'the journal is there');
    t.ok(all.some((m) => m.path === '/volumes/default/data' && m.dir), 'the claim directory is there');
    // a pod's own files (its /etc/hosts, resolv.conf, volume files) keep the modes a pod sees in a
    // container (0644 as the kubelet writes them); their pod's 0700 dir keeps other users out
    const podFile = (m: { path: string; dir: boolean }): boolean => !m.dir && /^\/pods\/[^/]+\/(_etc|_volumes)\//.test(m.path);
    const wrong = all
      .filter((m) => (podFile(m) ? (m.mode & 0o022) !== 0 : m.mode !== (m.dir ? 0o700 : 0o600)))
      .map((m) => `${m.path} ${m.mode.toString(8)}`);
    t.same(wrong, [], 'no path with other modes');
  });

  const other = otherUser();
  await t.test('a second user can read nothing and, without a credential, do nothing', { skip: typeof other === 'string' ? other : false }, async (t) => {
    const who = other as Exclude<typeof other, string>;
    const as = (cmd: string, ...args: string[]) => run('setpriv', [`--reuid=${who.uid}`, `--regid=${who.gid}`, '--clear-groups', '--', cmd, ...args]);
    t.equal((await as('id', '-u')).stdout.trim(), String(who.uid), `commands run as ${who.name}`);
    const log = modes(stateDir).find((m) => m.path.endsWith('.log') && m.path.startsWith('/pods/default_talker_'))!.path;
    const journal = modes(stateDir).find((m) => /^\/journal-\d+\.log$/.test(m.path))!.path;
    for (const p of ['', journal, '/kubeconfig', '/pki/ca.key', '/pki/admin.key', log, '/pods/old.log', '/volumes/default/data']) {
      const r = p === '' || p.startsWith('/volumes') ? await as('ls', join(stateDir, p)) : await as('cat', join(stateDir, p));
      t.not(r.code, 0, `${who.name} cannot read ${p || 'the state dir'}`);
      t.match(r.stderr, /Permission denied/, p || 'the state dir');
      t.notMatch(r.stdout, /hunter2|pod-says-hello|PRIVATE KEY|old secret/);
    }

    const secrets = `${api.server}/api/v1/secrets`;
    let r = await as('curl', '-sS', secrets);
    t.not(r.code, 0, 'curl without -k does not trust the cluster CA');
    t.match(r.stderr, /certificate/i);
    r = await as('curl', '-sk', '-w', '\n%{http_code}', secrets);
    t.match(r.stdout, /"reason":"Unauthorized"[\s\S]*\n401$/, 'curl -k: 401 listing Secrets');
    t.notMatch(r.stdout, /hunter2|aHVudGVyMi/);
    const pod = JSON.stringify({ metadata: { name: 'intruder' }, spec: { containers: [{ name: 'c', image: 'shell', command: ['sh', '-c', 'id > /tmp/owned'] }] } });
    r = await as('curl', '-sk', '-w', '\n%{http_code}', '-X', 'POST', '-H', 'content-type: application/json', '--data', pod, `${api.server}/api/v1/namespaces/default/pods`);
    t.match(r.stdout, /\n401$/, 'curl -k: 401 creating a pod');
    r = await as('curl', '-sk', '-w', '\n%{http_code}', '-H', 'authorization: Bearer guessed-token-0000000000', secrets);
    t.match(r.stdout, /\n401$/, 'a guessed token: 401');

    const cache = mkdtempSync(join(tmpdir(), 'kubeloop-other-kubectl-'));
    t.teardown(() => rmSync(cache, { recursive: true, force: true }));
    // the stranger's own kubeconfig: the server and a guessed token (with no credential at all kubectl prompts for a password)
    const kc = join(cache, 'config');
    writeFileSync(kc, `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "${api.server}", insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: guessed-token-1111111111}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n`);
    chownSync(cache, who.uid, who.gid);
    chownSync(kc, who.uid, who.gid);
    r = await as('kubectl', '--kubeconfig', kc, '--cache-dir', cache, 'get', 'secrets', '-A');
    t.not(r.code, 0);
    t.match(r.stderr, /Unauthorized|must be logged in/, 'kubectl as the other user is refused');

    const intruder = await api.request('GET', '/api/v1/namespaces/default/pods/intruder');
    t.equal(intruder.status, 404, 'no pod was created');
  });
});
