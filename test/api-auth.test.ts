/**
 * Issue 14, finding 2: the API of a real `kubeloop up` is HTTPS with credentials by default.
 * kubectl and curl work with the generated kubeconfig; no credential, a foreign client
 * certificate or a wrong token get a 401 Status; a client that does not trust the cluster CA
 * cannot even talk to it; a browser cannot drive it (wrong Host, CORS); `--api-addr 0.0.0.0`
 * starts with nothing more; the token is in no process argument and no log line.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { type ApiClient, daemonApi, testPki } from './helpers/api.js';
import { ROOT, type RunningDaemon, startDaemon } from './helpers/daemon.js';
import { waitFor } from './helpers/wait.js';

const TOKEN = 'kl-test-token-7d1c9f0e55b24a8e9a3b';

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(cmd, args, { timeout: 30_000, env }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0, stdout, stderr }),
    ),
  );
}

/** One HTTPS request with exactly the TLS material given; resolves to the status and body, or the TLS error. */
function raw(
  server: string,
  path: string,
  o: { method?: string; ca?: string; cert?: string; key?: string; headers?: Record<string, string>; anyName?: boolean },
): Promise<{ status: number; body: string; headers: Record<string, unknown> } | { error: string }> {
  const u = new URL(server);
  return new Promise((resolve) => {
    const req = https.request({ host: u.hostname, port: u.port, path, method: o.method ?? 'GET', ca: o.ca, cert: o.cert, key: o.key, headers: o.headers, agent: false, timeout: 10_000, ...(o.anyName ? { checkServerIdentity: () => undefined } : {}) }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    req.end();
  });
}

async function daemon(t: { teardown(fn: () => unknown): void }, args: string[]): Promise<{ d: RunningDaemon; api: ApiClient }> {
  const d = await startDaemon(['--dns-addr', '127.0.0.1:0', '--metrics-addr=', ...args]);
  const kill = (): void => void (d.proc.exitCode === null && d.proc.kill('SIGKILL'));
  process.once('exit', kill);
  t.teardown(async () => {
    process.removeListener('exit', kill);
    await d.stop();
  });
  return { d, api: await daemonApi(d) };
}

t.test('HTTPS with the generated kubeconfig; strangers get 401 and browsers nothing', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'kubeloop-auth-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const tokenFile = join(work, 'token');
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  const { d, api } = await daemon(t, ['--api-addr', '127.0.0.1:0', '--pod-cidr', '127.191.0.0/16', '--service-cidr', '127.192.0.0/16', '--api-token-file', tokenFile, '--log-level', 'debug']);

  t.match(api.server, /^https:\/\/127\.0\.0\.1:\d+$/, 'the kubeconfig names an https server');
  t.ok(api.tls.ca && api.tls.cert && api.tls.key, 'the kubeconfig carries the CA, a client certificate and its key');
  t.equal(statSync(api.kubeconfig).mode & 0o777, 0o600, 'kubeconfig is 0600');

  await t.test('kubectl, curl and the token work', async (t) => {
    const k = await api.kubectl('get', 'svc', 'kubernetes', '-o', 'jsonpath={.spec.ports[0].name}');
    t.equal(k.code, 0, k.stderr);
    t.equal(k.stdout, 'https');
    const r = await api.request('POST', '/api/v1/namespaces/default/secrets', { body: { metadata: { name: 's' }, stringData: { a: 'b' } } });
    t.equal(r.status, 201, r.body);
    for (const [name, pem] of Object.entries({ ca: api.tls.ca!, cert: api.tls.cert!, key: api.tls.key! })) writeFileSync(join(work, name), pem, { mode: 0o600 });
    const c = await run('curl', ['-sS', '--cacert', join(work, 'ca'), '--cert', join(work, 'cert'), '--key', join(work, 'key'), `${api.server}/api/v1/namespaces/default/secrets/s`]);
    t.equal(c.code, 0, c.stderr);
    t.equal(JSON.parse(c.stdout).metadata.name, 's', 'curl with the CA and the client certificate');
    const tok = await raw(api.server, '/api/v1/namespaces/default/secrets', { ca: api.tls.ca, headers: { authorization: `Bearer ${TOKEN}` } });
    t.equal('status' in tok && tok.status, 200, 'the bearer token from --api-token-file');
  });

  // the python3 on PATH may be a pyenv or venv one without Debian's python3-kubernetes
  let pythonBin: string | undefined;
  for (const bin of ['python3', '/usr/bin/python3']) {
    if ((await run(bin, ['-c', 'import kubernetes'])).code === 0) {
      pythonBin = bin;
      break;
    }
  }
  await t.test('the official Python client with the kubeconfig', { skip: pythonBin ? false : 'no python3 with the kubernetes package (Debian: python3-kubernetes)' }, async (t) => {
    const py = ['from kubernetes import client, config', 'import sys', 'config.load_kube_config(config_file=sys.argv[1])', 'print(client.CoreV1Api().read_namespaced_service("kubernetes", "default").spec.ports[0].name)'];
    const r = await run(pythonBin!, ['-c', py.join('\n'), api.kubeconfig]);
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout.trim(), 'https');
  });

  await t.test('in-cluster clients reach it through the kubernetes Service, whose ClusterIP the certificate names', async (t) => {
    const svc = (await api.request('GET', '/api/v1/namespaces/default/services/kubernetes')).json<{ spec: { clusterIP: string; ports: Array<{ port: number }> } }>();
    t.equal(svc.spec.clusterIP, '127.192.0.1', 'the first IP of --service-cidr, as upstream');
    const via = `https://${svc.spec.clusterIP}:${svc.spec.ports[0].port}`;
    const r = await waitFor(async () => {
      const x = await raw(via, '/api/v1/namespaces/default/services/kubernetes', { ca: api.tls.ca, cert: api.tls.cert, key: api.tls.key });
      return 'status' in x ? x : undefined;
    }, { what: 'the ClusterIP listener' });
    t.equal(r.status, 200, 'TLS verifies against the ClusterIP and the client certificate passes the proxy');
  });

  await t.test('no credential, a wrong token or a foreign client certificate: 401 Status', async (t) => {
    for (const [what, o] of [
      ['nothing', {}],
      ['a wrong token', { headers: { authorization: `Bearer ${TOKEN.slice(0, -1)}x` } }],
      ['a token of another length', { headers: { authorization: 'Bearer x' } }],
    ] as const) {
      const r = await raw(api.server, '/api/v1/namespaces/default/secrets', { ca: api.tls.ca, ...o });
      t.ok('status' in r, `${what}: an HTTP answer, not a TLS failure`);
      if (!('status' in r)) continue;
      t.equal(r.status, 401, what);
      t.match(JSON.parse(r.body), { kind: 'Status', reason: 'Unauthorized', code: 401 }, `${what}: a Status body`);
      t.notMatch(r.body, /"name":"s"/, `${what}: no Secret in the answer`);
    }
    const foreign = await testPki(join(work, 'foreign'));
    const r = await raw(api.server, '/api/v1/namespaces/default/secrets', { ca: api.tls.ca, cert: foreign.clientCert, key: foreign.clientKey });
    t.equal('status' in r && r.status, 401, 'a client certificate signed by another CA');
    const post = await raw(api.server, '/api/v1/namespaces/default/pods', { method: 'POST', ca: api.tls.ca, headers: { 'content-type': 'application/json' } });
    t.equal('status' in post && post.status, 401, 'no pod can be created without a credential');
    const health = await raw(api.server, '/healthz', { ca: api.tls.ca });
    t.equal('status' in health && health.status, 200, '/healthz stays open, as upstream');
  });

  await t.test('a client that does not trust the cluster CA gets no connection', async (t) => {
    const other = await testPki(join(work, 'other'));
    const r = await raw(api.server, '/version', { ca: other.ca });
    t.ok('error' in r, 'TLS refuses the server');
    t.match('error' in r ? r.error : '', /SELF_SIGNED|UNABLE_TO_VERIFY|CERT/);
  });

  await t.test('browsers: a rebound Host and cross-origin requests are refused, no CORS headers', async (t) => {
    const creds = { ca: api.tls.ca, cert: api.tls.cert, key: api.tls.key };
    const port = new URL(api.server).port;
    const ok = await raw(api.server, '/api/v1/namespaces', { ...creds, headers: { host: `localhost:${port}` } });
    t.equal('status' in ok && ok.status, 200, 'Host: localhost is one of ours');
    const tlsOnly = await raw(api.server, '/api/v1/namespaces/default/secrets', { ...creds, headers: { host: `evil.example:${port}` } });
    t.match('error' in tlsOnly ? tlsOnly.error : '', /ERR_TLS_CERT_ALTNAME_INVALID/, 'a browser would already fail TLS: the certificate does not name evil.example');
    // a client that skips the name check still meets the Host filter
    const rebound = await raw(api.server, '/api/v1/namespaces/default/secrets', { ...creds, anyName: true, headers: { host: `evil.example:${port}` } });
    t.equal('status' in rebound && rebound.status, 403, 'Host: evil.example (DNS rebinding) is refused');
    t.match('status' in rebound ? JSON.parse(rebound.body) : {}, { kind: 'Status', reason: 'Forbidden' });
    const pre = await raw(api.server, '/api/v1/namespaces/default/pods', {
      ...creds,
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });
    t.equal('status' in pre && pre.status, 403, 'a CORS preflight is refused');
    t.same('status' in pre ? Object.keys(pre.headers).filter((h) => h.startsWith('access-control-')) : ['?'], [], 'no Access-Control-* header');
    const simple = await raw(api.server, '/api/v1/namespaces/default/secrets', { ...creds, headers: { origin: 'http://localhost:8080' } });
    t.equal('status' in simple && simple.status, 403, 'a cross-origin GET is refused even with a credential');
  });

  await t.test('the token is in no process argument and no log line', async (t) => {
    const cmdline = readFileSync(`/proc/${d.proc.pid}/cmdline`, 'utf8');
    t.notMatch(cmdline, TOKEN);
    t.match(cmdline, '--api-token-file');
    t.ok(d.stderr().length > 0, 'the daemon did log (at debug)');
    t.notMatch(d.stderr(), TOKEN, 'stderr');
    t.notMatch(d.stdout(), TOKEN, 'stdout');
    t.notMatch(d.stderr(), /PRIVATE KEY/, 'no key in the log');
  });
});

t.test('--api-addr 0.0.0.0 starts with nothing more and answers on 127.0.0.1', async (t) => {
  const { d, api } = await daemon(t, ['--api-addr', '0.0.0.0:0', '--pod-cidr', '127.193.0.0/16', '--service-cidr', '127.194.0.0/16', '--node-ip', '127.0.193.1', '--nodeport-addresses', '127.0.193.1']);
  t.match(api.server, /^https:\/\/127\.0\.0\.1:\d+$/, 'the kubeconfig reaches it on loopback');
  const ep = await api.request('GET', '/api/v1/namespaces/default/endpoints/kubernetes');
  t.equal(ep.status, 200, ep.body);
  t.equal(ep.json<{ subsets: Array<{ addresses: Array<{ ip: string }> }> }>().subsets[0].addresses[0].ip, '127.0.193.1', 'the kubernetes Endpoints name the node IP');
  const k = await api.kubectl('get', 'ns', '-o', 'name');
  t.equal(k.code, 0, k.stderr);
  t.match(k.stdout, 'namespace/default');
  const anon = await api.request('GET', '/api/v1/secrets', { anonymous: true });
  t.equal(anon.status, 401, 'still no access without a credential');
  t.notMatch(d.stderr(), /may not be unspecified|cannot serve/);
});

t.test('flags: --api-token is refused with the fix; plain HTTP only on loopback, and loudly', async (t) => {
  const up = (...args: string[]) => run(process.execPath, [join(ROOT, 'bin', 'kubeloop.mjs'), 'up', ...args], { ...process.env, NODE_OPTIONS: '' });
  let r = await up('--api-token', TOKEN);
  t.equal(r.code, 2);
  t.match(r.stderr, /--api-token is gone .* --api-token-file FILE/);
  r = await up('--insecure-plain-http-loopback', '--api-addr', '0.0.0.0:6443');
  t.equal(r.code, 2);
  t.match(r.stderr, /--insecure-plain-http-loopback with --api-addr 0\.0\.0\.0:6443: plain HTTP is only for loopback/);

  const { d, api } = await daemon(t, ['--insecure-plain-http-loopback', '--api-addr', '127.0.0.1:0', '--pod-cidr', '127.195.0.0/16', '--service-cidr', '127.196.0.0/16', '--log-level', 'warn']);
  t.match(api.server, /^http:\/\/127\.0\.0\.1:\d+$/);
  t.equal((await api.request('GET', '/api/v1/namespaces')).status, 200, 'the test mode needs no credential');
  t.match(d.stderr(), /INSECURE: the Kubernetes API serves plain HTTP/, 'and says so at warn');
  const rebound = await api.request('GET', '/api/v1/namespaces', { headers: { host: 'attacker.example' } });
  t.equal(rebound.status, 403, 'the Host check guards plain HTTP against DNS rebinding');
});
