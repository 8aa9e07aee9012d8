/**
 * Hostile input to the API (issue 14, must-have 6): crafted paths, bodies and label selectors
 * sent over raw sockets to a real daemon running a demo workload. Every request must get a
 * 4xx that changes nothing (upstream's answer, a Kubernetes Status where the API routes it),
 * never a 5xx or a crash; after each group the daemon still answers kubectl, DNS and a
 * ClusterIP; at the end its fds are back to the baseline and its RSS stayed bounded.
 * Seeds and counts are fixed; the figures are printed as TAP comments.
 */
import t from 'tap';
import { type ApiTarget, type Asserts, type HostileEnv, type RawReply, Sampler, Tally, api, assertAlive, crashLines, fdCount, isStatus, rssMiB, prng, rawHttp, rawRequest, startHostileDaemon } from './helpers/hostile-kit.js';
import { waitFor } from './helpers/wait.js';

const SEED = 0x14;
/** RSS bound (MiB) over the whole run: 150 after start-up, ~195 at most measured with the limits in place */
const MAX_RSS_MIB = 300;
/** fds the daemon may hold above its post-start baseline at the end (kept-alive kubectl, pod pipes) */
const FD_MARGIN = 8;
const MiB = 1024 * 1024;

const cm = (ns: string, name: string, data: Record<string, string> = { k: 'v' }, labels?: Record<string, string>) => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace: ns, labels },
  data,
});

/** A namespace with two ConfigMaps and a Secret, made fresh for one dangerous case. */
async function victims(target: ApiTarget, ns: string): Promise<void> {
  const mk = async (path: string, body: unknown) => {
    const r = await api(target, 'POST', path, body);
    if (r.status !== 201) throw new Error(`creating ${path}: ${r.status} ${r.body}`);
  };
  await mk('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  await mk(`/api/v1/namespaces/${ns}/configmaps`, cm(ns, 'cm0', { k: '0' }, { a: '1' }));
  await mk(`/api/v1/namespaces/${ns}/configmaps`, cm(ns, 'cm1', { k: '1' }, { a: '1' }));
  await mk(`/api/v1/namespaces/${ns}/secrets`, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 's0', namespace: ns }, data: { p: 'c2VjcmV0' } });
}

/** What is wrong with the victims of `ns`, or '' when they are as made. */
async function victimDamage(target: ApiTarget, ns: string): Promise<string> {
  const n = await api(target, 'GET', `/api/v1/namespaces/${ns}`);
  if (n.status !== 200) return `namespace ${ns}: ${n.status}`;
  const nsObj = n.json() as { status?: { phase?: string }; metadata: { labels?: Record<string, string>; deletionTimestamp?: string } };
  if (nsObj.metadata.deletionTimestamp || nsObj.status?.phase === 'Terminating') return `namespace ${ns} is terminating`;
  if (nsObj.metadata.labels?.pwned) return `namespace ${ns} was overwritten`;
  for (const [name, k] of [['cm0', '0'], ['cm1', '1']]) {
    const c = await api(target, 'GET', `/api/v1/namespaces/${ns}/configmaps/${name}`);
    if (c.status !== 200) return `configmap ${ns}/${name}: ${c.status}`;
    if ((c.json() as { data?: Record<string, string> }).data?.k !== k) return `configmap ${ns}/${name} changed: ${c.body}`;
  }
  const s = await api(target, 'GET', `/api/v1/namespaces/${ns}/secrets/s0`);
  if (s.status !== 200) return `secret ${ns}/s0: ${s.status}`;
  return '';
}

interface Case {
  name: string;
  method: string;
  /** `NS` is replaced by the case's victim namespace */
  path: string;
  body?: Buffer | string;
  contentType?: string;
  /** status codes upstream may give (default: any 4xx) */
  want?: number[];
  /** the reply must be a Kubernetes Status (false where Node's HTTP parser answers before any handler) */
  status?: boolean;
  /** a closed connection without a reply is also acceptable (CONNECT without a tunnel) */
  mayClose?: boolean;
}

function describe(r: RawReply): string {
  return `${r.status || r.ended}${r.error ? ` (${r.error})` : ''} ${r.body.slice(0, 160)}`;
}

function checkReply(t: Asserts, c: { name: string; want?: number[]; status?: boolean; mayClose?: boolean }, r: RawReply): void {
  if (r.status === 0 && c.mayClose) {
    t.pass(`${c.name}: connection closed without a reply`);
    return;
  }
  if (c.want) t.ok(c.want.includes(r.status), `${c.name}: ${describe(r)} (want ${c.want.join('/')})`);
  else t.ok(r.status >= 400 && r.status < 500, `${c.name}: a 4xx, got ${describe(r)}`);
  if (c.status !== false && r.status >= 400) t.ok(isStatus(r), `${c.name}: the reply is a Status`);
}

t.test('hostile API input', async (t) => {
  const env: HostileEnv = await startHostileDaemon(t, { serviceCidr: '127.137.0.0/16', podCidr: '127.237.0.0/16', lbPool: '127.147.0.0/16', nodeIP: '127.0.114.1' });
  const { target } = env;
  const tally = new Tally();
  const sampler = new Sampler(env.pid);
  t.teardown(() => sampler.stop());
  await assertAlive(t, env, 'start-up');
  const baseFds = fdCount(env.pid);
  const rnd = prng(SEED);
  let victimSeq = 0;
  const raw = (method: string, path: string) => rawHttp(target, rawRequest(target, method, path));

  await t.test('paths: dot segments, empty names, //, malformed escapes, long paths, odd methods', async (t) => {
    const ns = 'NS';
    const overwrite = (nsName: string) => JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: nsName, labels: { pwned: 'yes' } } });
    const cases: Case[] = [
      { name: 'DELETE configmaps/..', method: 'DELETE', path: `/api/v1/namespaces/${ns}/configmaps/..`, want: [400, 404] },
      { name: 'DELETE configmaps/%2e%2e', method: 'DELETE', path: `/api/v1/namespaces/${ns}/configmaps/%2e%2e`, want: [400, 404] },
      { name: 'DELETE configmaps/%2E.', method: 'DELETE', path: `/api/v1/namespaces/${ns}/configmaps/%2E.`, want: [400, 404] },
      { name: 'DELETE configmaps/.%2E', method: 'DELETE', path: `/api/v1/namespaces/${ns}/configmaps/.%2E`, want: [400, 404] },
      { name: 'DELETE configmaps/.', method: 'DELETE', path: `/api/v1/namespaces/${ns}/configmaps/.`, want: [400, 404] },
      { name: 'DELETE configmaps/%2e', method: 'DELETE', path: `/api/v1/namespaces/${ns}/configmaps/%2e`, want: [400, 404] },
      { name: 'DELETE configmaps/ (empty name)', method: 'DELETE', path: `/api/v1/namespaces/${ns}/configmaps/`, want: [400, 404, 405] },
      { name: 'DELETE configmaps/cm0/..', method: 'DELETE', path: `/api/v1/namespaces/${ns}/configmaps/cm0/..`, want: [400, 404] },
      { name: 'DELETE configmaps/cm0/%2e%2e/', method: 'DELETE', path: `/api/v1/namespaces/${ns}/configmaps/cm0/%2e%2e/`, want: [400, 404] },
      { name: 'DELETE configmaps/cm0%2f..', method: 'DELETE', path: `/api/v1/namespaces/${ns}/configmaps/cm0%2f..`, want: [400, 404] },
      { name: 'DELETE namespaces/NS/ (trailing slash)', method: 'DELETE', path: `/api/v1/namespaces/${ns}/`, want: [400, 404, 405] },
      { name: 'DELETE namespaces/NS//configmaps/cm0', method: 'DELETE', path: `/api/v1/namespaces/${ns}//configmaps/cm0`, want: [400, 404] },
      { name: 'DELETE //api/v1/namespaces/NS', method: 'DELETE', path: `//api/v1/namespaces/${ns}`, want: [404] },
      { name: 'DELETE namespaces//configmaps/cm0 (empty namespace)', method: 'DELETE', path: `/api/v1/namespaces//configmaps/cm0`, want: [400, 404] },
      { name: 'PUT configmaps/.. with a Namespace', method: 'PUT', path: `/api/v1/namespaces/${ns}/configmaps/..`, body: 'OVERWRITE', want: [400, 404] },
      { name: 'PUT configmaps/%2e%2e with a Namespace', method: 'PUT', path: `/api/v1/namespaces/${ns}/configmaps/%2e%2e`, body: 'OVERWRITE', want: [400, 404] },
      { name: 'PATCH configmaps/.. (merge)', method: 'PATCH', path: `/api/v1/namespaces/${ns}/configmaps/..`, body: '{"metadata":{"labels":{"pwned":"yes"}}}', contentType: 'application/merge-patch+json', want: [400, 404] },
      { name: 'GET secrets/.. does not show the namespace', method: 'GET', path: `/api/v1/namespaces/${ns}/secrets/..`, want: [400, 404] },
      { name: 'POST configmaps/.', method: 'POST', path: `/api/v1/namespaces/${ns}/configmaps/.`, body: JSON.stringify(cm('x', 'x')), want: [400, 404, 405] },
      { name: 'GET malformed escape %zz', method: 'GET', path: `/api/v1/namespaces/${ns}/configmaps/%zz`, want: [400] },
      { name: 'DELETE malformed escape cm%ZZ0', method: 'DELETE', path: `/api/v1/namespaces/${ns}/configmaps/cm%ZZ0`, want: [400] },
      { name: 'DELETE truncated escape %', method: 'DELETE', path: `/api/v1/namespaces/${ns}/configmaps/%`, want: [400] },
      { name: 'GET truncated escape %2', method: 'GET', path: `/api/v1/namespaces/${ns}/configmaps/%2`, want: [400] },
      { name: 'GET invalid UTF-8 escape %c0%ae', method: 'GET', path: `/api/v1/namespaces/${ns}/configmaps/%c0%ae%c0%ae`, want: [400, 404] },
      { name: 'GET malformed escape in the query', method: 'GET', path: `/api/v1/namespaces/${ns}/configmaps?labelSelector=%zz`, want: [400] },
      { name: 'GET 64 KiB name', method: 'GET', path: `/api/v1/namespaces/${ns}/configmaps/${'a'.repeat(64 * 1024)}`, want: [400, 404, 414, 431], status: false },
      { name: 'DELETE 64 KiB of ../', method: 'DELETE', path: `/api/v1/namespaces/${ns}/configmaps/${'../'.repeat(21_000)}`, want: [400, 404, 414, 431], status: false },
      { name: 'method FOO', method: 'FOO', path: `/api/v1/namespaces/${ns}`, want: [400, 405, 501], status: false },
      { name: 'method get (lower case)', method: 'get', path: `/api/v1/namespaces/${ns}`, want: [400, 405], status: false },
      { name: 'method TRACE', method: 'TRACE', path: `/api/v1/namespaces/${ns}`, want: [400, 405], status: false },
      { name: 'method PROPFIND', method: 'PROPFIND', path: `/api/v1/namespaces/${ns}`, want: [400, 405], status: false },
      { name: 'method CONNECT', method: 'CONNECT', path: `127.0.0.1:80`, want: [400, 405], status: false, mayClose: true },
      { name: 'a space in the path', method: 'DELETE', path: `/api/v1/namespaces/${ns} x/configmaps/cm0`, want: [400], status: false },
      { name: 'an absolute-form URI', method: 'DELETE', path: `http://evil.example/api/v1/namespaces/${ns}/configmaps/..`, want: [400, 404] },
      { name: 'no leading slash', method: 'DELETE', path: `api/v1/namespaces/${ns}`, want: [400, 404], status: false },
    ];
    for (const c of cases) {
      const victimNs = `path-${++victimSeq}`;
      await victims(target, victimNs);
      const path = c.path.replaceAll('NS', victimNs);
      const body = c.body === 'OVERWRITE' ? overwrite(victimNs) : c.body;
      const r = await rawHttp(target, rawRequest(target, c.method, path, { body, contentType: c.contentType }));
      tally.record('paths', `${c.method} ${path.slice(0, 100)}`, r);
      if (process.env.HOSTILE_DEBUG) t.comment(`${c.name}: RSS ${rssMiB(env.pid).toFixed(0)} MiB (max ${sampler.maxRss.toFixed(0)})`);
      const sub = { ...c };
      await t.test(c.name, async (t) => {
        checkReply(t, sub, r);
        t.equal(await victimDamage(target, victimNs), '', `${c.name}: the namespace, its ConfigMaps and Secret are unchanged`);
      });
    }
  });
  await t.test('still answers after the paths', (t) => assertAlive(t, env, 'the paths'));

  await t.test('strangers: no credential, a wrong token, a foreign Host, a browser Origin', async (t) => {
    const ns = 'strangers';
    await victims(target, ns);
    const pod = JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'evil', namespace: ns }, spec: { containers: [{ name: 'c', image: 'busybox', command: ['sh', '-c', 'id > /tmp/pwned'] }] } });
    interface Stranger { name: string; method: string; path: string; body?: string; headers?: Record<string, string>; anonymous?: boolean; want: number[] }
    const cases: Stranger[] = [
      { name: 'anonymous GET secrets', method: 'GET', path: `/api/v1/namespaces/${ns}/secrets`, anonymous: true, want: [401] },
      { name: 'anonymous POST a pod with a command', method: 'POST', path: `/api/v1/namespaces/${ns}/pods`, body: pod, anonymous: true, want: [401] },
      { name: 'anonymous DELETE the namespace', method: 'DELETE', path: `/api/v1/namespaces/${ns}`, anonymous: true, want: [401] },
      { name: 'a wrong bearer token', method: 'GET', path: `/api/v1/namespaces/${ns}/secrets/s0`, anonymous: true, headers: { Authorization: 'Bearer not-the-token' }, want: [401] },
      { name: 'an empty bearer token', method: 'GET', path: `/api/v1/namespaces/${ns}/secrets/s0`, anonymous: true, headers: { Authorization: 'Bearer ' }, want: [401] },
      { name: 'DNS rebinding: Host evil.example', method: 'GET', path: `/api/v1/namespaces/${ns}/secrets`, headers: { Host: 'evil.example' }, want: [403, 421] },
      { name: 'DNS rebinding: Host evil.example:port', method: 'DELETE', path: `/api/v1/namespaces/${ns}`, headers: { Host: `evil.example:${target.port}` }, want: [403, 421] },
      { name: 'a browser POST with Origin', method: 'POST', path: `/api/v1/namespaces/${ns}/pods`, body: pod, headers: { Origin: 'http://evil.example' }, want: [403] },
      { name: 'a CORS preflight', method: 'OPTIONS', path: `/api/v1/namespaces/${ns}/pods`, headers: { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'POST' }, want: [403] },
      { name: 'anonymous, Origin and a foreign Host at once', method: 'DELETE', path: `/api/v1/namespaces/${ns}`, anonymous: true, headers: { Origin: 'null', Host: 'evil.example' }, want: [401, 403] },
    ];
    for (const c of cases) {
      const { Host: host, ...headers } = c.headers ?? {};
      let bytes = rawRequest(target, c.method, c.path, { body: c.body, noAuth: c.anonymous, headers });
      // the stranger's Host replaces the kubeconfig's (one Host header, as a browser sends)
      if (host) bytes = Buffer.from(bytes.toString('latin1').replace(/^Host: .*$/m, `Host: ${host}`), 'latin1');
      const r = await rawHttp(target, bytes, { anonymous: c.anonymous });
      tally.record('strangers', c.name, r);
      await t.test(c.name, async (t) => {
        checkReply(t, c, r);
        t.notOk(Object.keys(r.headers).some((h) => h.startsWith('access-control-')), `${c.name}: no Access-Control-* header`);
        t.equal(await victimDamage(target, ns), '', `${c.name}: nothing changed`);
        t.equal((await api(target, 'GET', `/api/v1/namespaces/${ns}/pods/evil`)).status, 404, `${c.name}: no pod was created`);
      });
    }
  });
  await t.test('still answers after the strangers', (t) => assertAlive(t, env, 'the strangers'));

  await t.test('bodies: size, truncation, garbage, nesting, aliases, content types', async (t) => {
    const ns = 'bodies';
    await victims(target, ns);
    const post = `/api/v1/namespaces/${ns}/configmaps`;
    const one = `${post}/cm0`;
    const absent = async (name: string) => (await api(target, 'GET', `${post}/${name}`)).status === 404;
    interface BodyCase extends Omit<Case, 'path' | 'method'> {
      method?: string;
      path?: string;
      /** a ConfigMap this body would create, which must not exist afterwards */
      creates?: string;
      chunked?: boolean;
      close?: boolean;
    }
    const big = (n: number, name: string) => JSON.stringify(cm(ns, name, { k: 'x'.repeat(n) }));
    const deepArr = (n: number) => '['.repeat(n) + ']'.repeat(n);
    const deepObj = (n: number) => '{"a":'.repeat(n) + '1' + '}'.repeat(n);
    const DEEP = 100_000;
    const anchor = 'y'.repeat(MiB);
    const amplified = (name: string) =>
      `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\n  namespace: ${ns}\ndata:\n  a: &a "${anchor}"\n` +
      Array.from({ length: 90 }, (_, i) => `  b${i}: *a\n`).join('');
    const laughs = (name: string) => {
      const lines = ['apiVersion: v1', 'kind: ConfigMap', `metadata: {name: ${name}, namespace: ${ns}}`, 'x:', '  l0: &l0 "lol"'];
      for (let i = 1; i <= 9; i++) lines.push(`  l${i}: &l${i} [${Array.from({ length: 9 }, () => `*l${i - 1}`).join(',')}]`);
      lines.push('data: {k: "v"}', '');
      return lines.join('\n');
    };
    const cases: BodyCase[] = [
      { name: 'POST 3 MiB + 1 KiB JSON', body: big(3 * MiB + 1024, 'big1'), want: [413], creates: 'big1' },
      { name: 'POST 3 MiB + 1 KiB chunked', body: big(3 * MiB + 1024, 'big2'), want: [413], creates: 'big2', chunked: true },
      { name: 'POST 20 MiB JSON', body: big(20 * MiB, 'big3'), want: [413], creates: 'big3' },
      { name: 'PUT 4 MiB over cm0', method: 'PUT', path: one, body: big(4 * MiB, 'cm0'), want: [413] },
      { name: 'POST 4 MiB with Connection: close', body: big(4 * MiB, 'big4'), want: [413], creates: 'big4', close: true },
      { name: 'POST truncated JSON', body: JSON.stringify(cm(ns, 'trunc')).slice(0, 60), want: [400], creates: 'trunc' },
      { name: 'POST empty body', body: '', want: [400], creates: '' },
      { name: 'POST JSON null', body: 'null', want: [400] },
      { name: 'POST JSON array', body: '[1,2,3]', want: [400] },
      { name: 'POST nested 100k arrays in labels', body: `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"deep1","labels":${deepArr(DEEP)}}}`, want: [400, 422], creates: 'deep1' },
      { name: 'POST nested 100k objects in labels', body: `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"deep2","labels":${deepObj(DEEP)}}}`, want: [400, 422], creates: 'deep2' },
      { name: 'POST nested 100k in YAML', body: `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep3\n  labels: ${deepArr(DEEP)}\n`, contentType: 'application/yaml', want: [400, 422], creates: 'deep3' },
      { name: 'PATCH json-patch nested 100k', method: 'PATCH', path: one, body: `[{"op":"add","path":"/metadata/labels/x","value":${deepArr(DEEP)}}]`, contentType: 'application/json-patch+json', want: [400, 422] },
      { name: 'PATCH merge-patch nested 100k', method: 'PATCH', path: one, body: `{"metadata":{"labels":${deepObj(DEEP)}}}`, contentType: 'application/merge-patch+json', want: [400, 422] },
      { name: 'PATCH strategic-merge-patch nested 100k', method: 'PATCH', path: one, body: `{"metadata":{"labels":${deepObj(DEEP)}}}`, contentType: 'application/strategic-merge-patch+json', want: [400, 422] },
      { name: 'PATCH apply-patch+yaml nested 100k', method: 'PATCH', path: `${one}?fieldManager=hostile`, body: `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm0\n  labels:\n    x: ${deepArr(DEEP)}\n`, contentType: 'application/apply-patch+yaml', want: [400, 422] },
      { name: 'PATCH apply-patch+yaml nested 100k JSON', method: 'PATCH', path: `${one}?fieldManager=hostile`, body: `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm0","labels":${deepObj(DEEP)}}}`, contentType: 'application/apply-patch+yaml', want: [400, 422] },
      { name: 'POST YAML alias amplification (1 MB anchor × 90)', body: amplified('amp1'), contentType: 'application/yaml', want: [400, 413, 422], creates: 'amp1' },
      { name: 'PATCH apply-patch+yaml alias amplification', method: 'PATCH', path: `${post}/amp2?fieldManager=hostile`, body: amplified('amp2'), contentType: 'application/apply-patch+yaml', want: [400, 413, 422], creates: 'amp2' },
      { name: 'POST YAML billion laughs', body: laughs('lol1'), contentType: 'application/yaml', want: [400, 422], creates: 'lol1' },
      { name: 'POST text/plain', body: JSON.stringify(cm(ns, 'ct1')), contentType: 'text/plain', want: [415], creates: 'ct1' },
      { name: 'POST application/xml', body: '<ConfigMap/>', contentType: 'application/xml', want: [415] },
      { name: 'POST multipart/form-data', body: '--x\r\n\r\n--x--', contentType: 'multipart/form-data; boundary=x', want: [415] },
      { name: 'POST a malformed content type', body: JSON.stringify(cm(ns, 'ct2')), contentType: ';;;=', want: [415], creates: 'ct2' },
      { name: 'PATCH with application/json', method: 'PATCH', path: one, body: '{"data":{"k":"pwned"}}', contentType: 'application/json', want: [415] },
      { name: 'PATCH with text/plain', method: 'PATCH', path: one, body: '{"data":{"k":"pwned"}}', contentType: 'text/plain', want: [415] },
      { name: 'PATCH json-patch not a list', method: 'PATCH', path: one, body: '{"op":"replace"}', contentType: 'application/json-patch+json', want: [400, 422] },
      { name: 'PATCH json-patch bad pointer', method: 'PATCH', path: one, body: '[{"op":"replace","path":"data/k","value":"x"}]', contentType: 'application/json-patch+json', want: [400, 422] },
      { name: 'PATCH json-patch huge array index', method: 'PATCH', path: one, body: '[{"op":"add","path":"/metadata/finalizers/99999999999","value":"x"}]', contentType: 'application/json-patch+json', want: [400, 422] },
    ];
    for (let i = 0; i < 12; i++) {
      const len = 1 + rnd.int(4096);
      cases.push({ name: `POST random bytes #${i} (${len} B, JSON)`, body: rnd.bytes(len), want: [400, 415, 422] });
    }
    for (let i = 0; i < 4; i++) cases.push({ name: `POST random bytes #${i} (YAML)`, body: rnd.bytes(1 + rnd.int(4096)), contentType: 'application/yaml', want: [400, 415, 422] });
    for (let i = 0; i < 8; i++) {
      const raw = rnd.bytes(1 + rnd.int(2048));
      const body = i % 2 ? Buffer.concat([Buffer.from('k8s\0', 'latin1'), raw]) : raw;
      cases.push({ name: `POST protobuf garbage #${i}${i % 2 ? ' (with the k8s magic)' : ''}`, body, contentType: 'application/vnd.kubernetes.protobuf', want: [400, 415, 422] });
    }
    for (let i = 0; i < 4; i++) {
      const raw = rnd.bytes(1 + rnd.int(1024));
      cases.push({ name: `PATCH random bytes #${i} as strategic-merge-patch`, method: 'PATCH', path: one, body: raw, contentType: 'application/strategic-merge-patch+json', want: [400, 415, 422] });
    }
    for (const c of cases) {
      const method = c.method ?? 'POST';
      const path = c.path ?? post;
      let bytes = rawRequest(target, method, path, { body: c.body, contentType: c.contentType, close: c.close });
      if (c.chunked) {
        const b = Buffer.isBuffer(c.body) ? c.body : Buffer.from(c.body ?? '');
        const head = rawRequest(target, method, path, { contentType: c.contentType, headers: { 'Content-Type': c.contentType ?? 'application/json', 'Transfer-Encoding': 'chunked' } });
        const chunks: Buffer[] = [head];
        for (let off = 0; off < b.length; off += 64 * 1024) {
          const part = b.subarray(off, off + 64 * 1024);
          chunks.push(Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n'));
        }
        chunks.push(Buffer.from('0\r\n\r\n'));
        bytes = Buffer.concat(chunks);
      }
      const t0 = Date.now();
      const r = await rawHttp(target, bytes, { timeoutMs: 30_000 });
      tally.record('bodies', c.name, r);
      if (process.env.HOSTILE_DEBUG) t.comment(`${c.name}: ${Date.now() - t0} ms ${r.status || r.ended}, RSS ${rssMiB(env.pid).toFixed(0)} MiB (max ${sampler.maxRss.toFixed(0)})`);
      await t.test(c.name, async (t) => {
        checkReply(t, c, r);
        if (c.creates) {
          const gone = await absent(c.creates);
          t.ok(gone, `${c.name}: ConfigMap ${c.creates} was not created`);
          // while the defect lives, do not let a 91 MB object slow every later case
          if (!gone) await api(target, 'DELETE', `${post}/${c.creates}`);
        }
        t.equal(await victimDamage(target, ns), '', `${c.name}: the ConfigMaps are unchanged`);
      });
    }
  });
  await t.test('still answers after the bodies', (t) => assertAlive(t, env, 'the bodies'));

  await t.test('label selectors upstream rejects: 400 on list and deletecollection, nothing deleted', async (t) => {
    const ns = 'selectors';
    await victims(target, ns);
    const bad = ['a,', ',a', 'a in (1', 'a in 1)', 'a notin (x', '(a)', `a=${'x'.repeat(64)}`, `a in (${'x'.repeat(64)})`, `${'k'.repeat(64)}=1`, 'x/y/z=1', 'a=b=c', '!', '!a,!', 'a in (b c)', 'a = (b)', '%zz'];
    for (const sel of bad) {
      const q = sel === '%zz' ? sel : encodeURIComponent(sel);
      const list = await raw('GET', `/api/v1/namespaces/${ns}/configmaps?labelSelector=${q}`);
      tally.record('selectors', `list ${sel}`, list);
      const del = await raw('DELETE', `/api/v1/namespaces/${ns}/configmaps?labelSelector=${q}`);
      tally.record('selectors', `deletecollection ${sel}`, del);
      const watch = await raw('GET', `/api/v1/namespaces/${ns}/configmaps?watch=1&timeoutSeconds=1&labelSelector=${q}`);
      tally.record('selectors', `watch ${sel}`, watch);
      await t.test(`selector ${JSON.stringify(sel.length > 40 ? sel.slice(0, 40) + '…' : sel)}`, async (t) => {
        checkReply(t, { name: 'list', want: [400] }, list);
        checkReply(t, { name: 'deletecollection', want: [400] }, del);
        checkReply(t, { name: 'watch', want: [400] }, watch);
        t.equal(await victimDamage(target, ns), '', 'nothing deleted');
      });
    }
    // `()` is the empty value upstream: `a in ()` selects a="", so it deletes none of a=1
    const empty = await raw('DELETE', `/api/v1/namespaces/${ns}/configmaps?labelSelector=${encodeURIComponent('a in ()')}`);
    t.equal(empty.status, 200, '`a in ()` is a selector upstream accepts');
    t.equal(await victimDamage(target, ns), '', '`a in ()` deletes nothing labelled a=1');
    await victims(target, 'selectors-ok');
    const good = await api(target, 'GET', `/api/v1/namespaces/selectors-ok/configmaps?labelSelector=${encodeURIComponent('a in (1),b notin (2),!c')}`);
    t.equal(good.status, 200, 'a well-formed selector still lists');
    t.equal((good.json() as { items: unknown[] }).items.length, 2, 'and selects both ConfigMaps');
  });
  await t.test('still answers after the selectors', (t) => assertAlive(t, env, 'the selectors'));

  await t.test('the end state: no crash, no 5xx, fds back to the baseline, RSS bounded', async (t) => {
    const crashes = crashLines(env.d.stderr());
    t.equal(env.d.proc.exitCode, null, 'the daemon never exited');
    t.same(crashes, [], 'no uncaught exception or fatal log on stderr');
    let fds = fdCount(env.pid);
    try {
      fds = await waitFor(() => {
        const n = fdCount(env.pid);
        return n <= baseFds + FD_MARGIN ? n : 0;
      }, { timeoutMs: 15_000, intervalMs: 200, what: `fds within ${FD_MARGIN} of the baseline ${baseFds}` });
    } catch {
      fds = fdCount(env.pid);
    }
    sampler.stop();
    t.comment(`hostile API figures: crashes ${crashes.length + (env.d.proc.exitCode === null ? 0 : 1)}; ${tally.total()} hostile requests (${tally.lines().join(', ')}); 5xx: ${tally.fiveXx.length}; max daemon RSS ${sampler.maxRss.toFixed(0)} MiB; fds ${baseFds} after start-up, ${fds} at the end (max ${sampler.maxFds})`);
    for (const l of tally.fiveXx) t.comment(`5xx: ${l}`);
    t.ok(fds <= baseFds + FD_MARGIN, `fds back to the baseline: ${fds} vs ${baseFds}`);
    await t.test('RSS bounded', async (t) => {
      t.ok(sampler.maxRss < MAX_RSS_MIB, `max RSS ${sampler.maxRss.toFixed(0)} MiB < ${MAX_RSS_MIB} MiB`);
    });
    await t.test('no 5xx', async (t) => {
      t.same(tally.fiveXx, [], 'no request got a 5xx');
    });
  });

  // Last, because while the defect lives each of these deletes every namespace, the demo's too.
  await t.test('the namespace collection cannot be deleted, not even through dot segments', async (t) => {
    await victims(target, 'last-1');
    for (const [name, path] of [
      ['DELETE configmaps/../..', '/api/v1/namespaces/last-1/configmaps/../..'],
      ['DELETE configmaps/%2e%2e/%2e%2e', '/api/v1/namespaces/last-1/configmaps/%2e%2e/%2e%2e'],
      ['DELETE /api/v1/namespaces (no deletecollection upstream)', '/api/v1/namespaces'],
    ]) {
      const r = await raw('DELETE', path);
      tally.record('paths', `DELETE ${path}`, r);
      await t.test(name, async (t) => {
        checkReply(t, { name, want: [400, 404, 405] }, r);
        t.equal(await victimDamage(target, 'last-1'), '', `${name}: the namespace, its ConfigMaps and Secret are unchanged`);
        t.equal((await api(target, 'GET', '/api/v1/namespaces/hostile')).status, 200, `${name}: the demo namespace is still there`);
      });
    }
  });
});
