/**
 * The API's request filters against hostile requests (issue 14, findings 1 and 4): crafted
 * paths (dot segments, `%2e%2e`, trailing slashes, bad escapes) never reach another object,
 * bodies over 3 MiB get a 413 Status the client can read, YAML aliases cannot expand a body
 * beyond the limit, and deep nesting is a 400 for every content and patch type — after which
 * the server still answers. Requests go over raw sockets so nothing normalises them.
 */
import { execFile } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import { helpText } from '../src/cli/options.js';
import { MAX_DEPTH } from '../src/server/body-limits.js';
import { bodyLimit, chain, recoverPanics, requestContext } from '../src/server/filters.js';
import { MAX_BODY } from '../src/server/http.js';
import { type InProcessApi, inProcessApi } from './helpers/api.js';
import { type RawReply, rawOnce } from './helpers/http.js';

type Fixture = InProcessApi;

const setup = (t: { teardown(fn: () => unknown): void }): Promise<Fixture> => inProcessApi(t, { dirPrefix: 'kubeloop-filters-' });

type Reply = RawReply;

/** One request written byte for byte on a fresh connection (`Connection: close`); `headers` go over the defaults. */
const raw = (port: number, method: string, path: string, body: string | Buffer = '', headers: Record<string, string> = {}): Promise<Reply> =>
  rawOnce(port, method, path, body, { headers });

const NS = 'team';
const CMS = ['cm0', 'cm1'];

async function seed(f: Fixture): Promise<void> {
  const ok = (r: Reply) => r.status === 201 || r.status === 409;
  if (!ok(await raw(f.port, 'POST', '/api/v1/namespaces', JSON.stringify({ metadata: { name: NS } })))) throw new Error('seed namespace');
  for (const name of CMS) {
    const r = await raw(f.port, 'POST', `/api/v1/namespaces/${NS}/configmaps`, JSON.stringify({ metadata: { name }, data: { k: name } }));
    if (!ok(r)) throw new Error(`seed ${name}: ${r.text}`);
  }
}

/** The namespace and its ConfigMaps exactly as seeded. */
async function intact(f: Fixture): Promise<string> {
  const ns = await f.store.tryGet('Namespace', undefined, NS);
  const cms = (await f.store.list('ConfigMap', { namespace: NS })).items as Array<{ metadata: { name: string }; data?: Record<string, string> }>;
  const labels = (ns?.metadata.labels ?? {}) as Record<string, string>;
  const problems = [
    !ns && 'namespace gone',
    ns?.metadata.deletionTimestamp && 'namespace terminating',
    Object.keys(labels).some((k) => k !== 'kubernetes.io/metadata.name') && `namespace labels changed: ${JSON.stringify(labels)}`,
    cms.map((c) => `${c.metadata.name}=${c.data?.k}`).join(',') !== CMS.map((n) => `${n}=${n}`).join(',') && `configmaps: ${cms.map((c) => c.metadata.name).join(',')}`,
  ].filter(Boolean);
  return problems.join('; ');
}

const overwriteNs = JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: { pwned: 'yes' } } });

// [method, path, status, message] — what upstream answers (see route.ts for the one deliberate difference)
const PATHS: Array<[string, string, number, RegExp]> = [
  ['DELETE', `/api/v1/namespaces/${NS}/configmaps/..`, 400, /^Name parameter invalid: "\.\.": may not be '\.\.'$/],
  ['DELETE', `/api/v1/namespaces/${NS}/configmaps/%2e%2e`, 400, /may not be '\.\.'/],
  ['DELETE', `/api/v1/namespaces/${NS}/configmaps/%2E%2E`, 400, /may not be '\.\.'/],
  ['DELETE', `/api/v1/namespaces/${NS}/configmaps/.%2e`, 400, /may not be '\.\.'/],
  ['DELETE', `/api/v1/namespaces/${NS}/configmaps/.`, 400, /^Name parameter invalid: "\.": may not be '\.'$/],
  ['DELETE', `/api/v1/namespaces/${NS}/configmaps/%2e`, 400, /may not be '\.'/],
  ['DELETE', `/api/v1/namespaces/${NS}/configmaps/`, 404, /could not find the requested resource/],
  ['DELETE', `/api/v1/namespaces/${NS}/configmaps//`, 404, /could not find/],
  ['DELETE', `/api/v1/namespaces/${NS}/configmaps//cm0`, 404, /could not find/],
  ['DELETE', `/api/v1/namespaces/${NS}/configmaps/cm0/..`, 404, /could not find/],
  ['DELETE', `/api/v1/namespaces/${NS}/configmaps/cm0/.`, 404, /could not find/],
  ['DELETE', `/api/v1/namespaces/${NS}/configmaps/cm0/%2e%2e`, 404, /could not find/],
  ['DELETE', `/api/v1/namespaces/${NS}/configmaps/a%25b`, 400, /may not contain '%'/],
  ['DELETE', `/api/v1/namespaces/${NS}/configmaps/%zz`, 400, /invalid URL escape "%zz"/],
  ['DELETE', `/api/v1/namespaces/${NS}/configmaps/%`, 400, /invalid URL escape "%"/],
  ['DELETE', `/api/v1/namespaces/${NS}/configmaps/cm%2`, 400, /invalid URL escape "%2"/],
  // an encoded '/' stays in its segment (route.ts): the name "cm0/.." (upstream decodes first: a 404)
  ['DELETE', `/api/v1/namespaces/${NS}/configmaps/cm0%2F..`, 400, /^Name parameter invalid: "cm0\/\.\.": may not contain '\/'$/],
  ['DELETE', `/api/v1/namespaces/..`, 400, /may not be '\.\.'/],
  // a method the path has no route for is go-restful's 405 before any handler reads the name
  ['DELETE', `/api/v1/namespaces/${NS}/pods/../log`, 405, /^the server does not allow this method on the requested resource$/],
  ['PUT', `/api/v1/namespaces/${NS}/configmaps/..`, 400, /may not be '\.\.'/],
  ['PUT', `/api/v1/namespaces/${NS}/configmaps/%2e%2e`, 400, /may not be '\.\.'/],
  ['PATCH', `/api/v1/namespaces/${NS}/configmaps/..`, 400, /may not be '\.\.'/],
  ['GET', `/api/v1/namespaces/${NS}/configmaps/..`, 400, /may not be '\.\.'/],
  ['GET', `/api/v1/namespaces/${NS}/configmaps/%ff`, 404, /not found/],
  ['GET', `/api/v1/namespaces/${NS}/configmaps/cm0/..?watch=1`, 404, /could not find/],
  ['POST', `/api/v1/namespaces/${NS}/configmaps/..`, 405, /^the server does not allow this method on the requested resource$/],
];

t.test('crafted paths never reach another object and get the upstream Status', async (t) => {
  const f = await setup(t);
  await seed(f);
  for (const [method, path, status, message] of PATHS) {
    const body = method === 'PUT' ? overwriteNs : method === 'PATCH' ? '{"metadata":{"labels":{"pwned":"yes"}}}' : method === 'POST' ? '{"metadata":{"name":"x"}}' : '';
    const headers: Record<string, string> = method === 'PATCH' ? { 'Content-Type': 'application/merge-patch+json' } : {};
    const r = await raw(f.port, method, path, body, headers);
    t.equal(r.status, status, `${method} ${path} → ${status}`);
    t.equal(r.json.kind, 'Status', `${method} ${path}: a Status body`);
    t.match(String(r.json.message), message, `${method} ${path}: ${String(r.json.message)}`);
    t.equal(await intact(f), '', `${method} ${path} left ${NS} and its ConfigMaps alone`);
    await seed(f);
  }
  // the named routes still work
  t.equal((await raw(f.port, 'GET', `/api/v1/namespaces/${NS}/configmaps/cm0`)).status, 200);
  t.equal((await raw(f.port, 'GET', `/api/v1/namespaces/${NS}/configmaps`)).status, 200);
  t.equal((await raw(f.port, 'GET', `/api/v1/namespaces/${NS}/configmaps/cm%30`)).json.metadata !== undefined, true, 'an escaped name is decoded once');
});

t.test('an encoded "/" stays inside its segment: a namespace or name holding it is a 400, any other segment a 404', async (t) => {
  const f = await setup(t);
  await seed(f);
  const bad = (s: string) => new RegExp(`^Name parameter invalid: ${JSON.stringify(s).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: may not contain '/'$`);
  const cases: Array<[string, string, number, RegExp?]> = [
    // the reviewer's request: 200 and every ConfigMap of team deleted
    ['DELETE', `/api/v1/namespaces/${NS}%2fconfigmaps`, 400, bad(`${NS}/configmaps`)],
    ['DELETE', `/api/v1/namespaces/${NS}%2Fconfigmaps`, 400, bad(`${NS}/configmaps`)],
    ['GET', `/api/v1/namespaces/${NS}%2fconfigmaps`, 400, bad(`${NS}/configmaps`)],
    ['DELETE', `/api/v1/namespaces/${NS}%2fconfigmaps%2fcm0`, 400, bad(`${NS}/configmaps/cm0`)],
    ['DELETE', `/api/v1/namespaces/${NS}%2fconfigmaps/cm0`, 400, bad(`${NS}/configmaps`)],
    ['PUT', `/api/v1/namespaces/${NS}%2fconfigmaps`, 400, bad(`${NS}/configmaps`)],
    ['DELETE', `/api/v1/namespaces/${NS}/configmaps/cm0%2f..`, 400, bad('cm0/..')],
    ['DELETE', `/api/v1/namespaces/${NS}/configmaps/cm0%2fx`, 400, bad('cm0/x')],
    ['GET', `/api/v1/watch/namespaces/${NS}%2fconfigmaps`, 400, bad(`${NS}/configmaps`)],
    ['DELETE', `/api/v1/namespaces/${NS}/configmaps%2fcm0`, 404],
    ['DELETE', `/api/v1/namespaces/${NS}/configmaps%2f`, 404],
    ['DELETE', `/api%2fv1/namespaces/${NS}/configmaps`, 404],
    ['DELETE', `/api/v1%2fnamespaces/${NS}/configmaps`, 404],
    ['DELETE', `/apis/apps%2fv1/namespaces/${NS}/deployments`, 404],
    ['GET', `/api/v1/namespaces/${NS}/configmaps/cm0/status%2fx`, 404],
  ];
  for (const [method, path, status, msg] of cases) {
    const r = await raw(f.port, method, path, method === 'PUT' ? overwriteNs : '');
    t.equal(r.status, status, `${method} ${path}: ${status}`);
    t.equal(r.json.kind, 'Status');
    if (msg) t.match(String(r.json.message), msg, `${method} ${path}: ${r.json.message}`);
    t.equal(await intact(f), '', `${method} ${path} changed nothing`);
  }
  // a segment that decodes to something without '/' still routes as before
  const r = await raw(f.port, 'GET', `/api/v1/namespaces/${NS}/configm%61ps/cm%30`);
  t.equal(r.status, 200, 'an escaped letter is that letter');
  t.equal((r.json.metadata as { name: string }).name, 'cm0');
});

t.test('curl --path-as-is: the same dot-segment paths are refused', async (t) => {
  const f = await setup(t);
  await seed(f);
  const curl = (...args: string[]) =>
    new Promise<{ code: string; out: string }>((resolve) =>
      execFile('curl', ['-sS', '--path-as-is', '-o', '-', '-w', '\n%{http_code}', ...args], { timeout: 15_000 }, (err, stdout) => {
        const lines = stdout.trimEnd().split('\n');
        resolve({ code: err && !stdout ? 'error' : lines[lines.length - 1], out: lines.slice(0, -1).join('\n') });
      }),
    );
  const base = `http://127.0.0.1:${f.port}/api/v1/namespaces/${NS}/configmaps`;
  t.equal((await curl('-X', 'DELETE', `${base}/..`)).code, '400');
  t.equal((await curl('-X', 'DELETE', `${base}/.`)).code, '400');
  t.equal((await curl('-X', 'DELETE', `${base}/cm0/..`)).code, '404');
  t.equal((await curl('-X', 'PUT', '-H', 'Content-Type: application/json', '--data', overwriteNs, `${base}/..`)).code, '400');
  t.equal(await intact(f), '');
});

/** Sends `total` bytes in 1 MiB chunks (one buffer reused) and resolves with the answer. */
function upload(port: number, total: number, chunked: boolean): Promise<{ status: number; json: Record<string, unknown>; sent: number }> {
  return new Promise((resolve, reject) => {
    const chunk = Buffer.alloc(1 << 20, 0x20);
    let sent = 0;
    let answered: { status: number; json: Record<string, unknown> } | undefined;
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: `/api/v1/namespaces/${NS}/configmaps`,
        agent: false,
        headers: { 'Content-Type': 'application/json', ...(chunked ? {} : { 'Content-Length': String(total) }) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          answered = { status: res.statusCode ?? 0, json: JSON.parse(text) as Record<string, unknown> };
          resolve({ ...answered, sent });
        });
      },
    );
    req.on('error', (err) => (answered ? undefined : reject(err)));
    const pump = (): void => {
      while (sent < total && !answered) {
        const n = Math.min(chunk.length, total - sent);
        sent += n;
        if (!req.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          req.once('drain', pump);
          return;
        }
      }
      if (sent >= total) req.end();
    };
    pump();
  });
}

t.test('bodies over 3 MiB get a 413 Status, not a reset, without the daemon holding them', async (t) => {
  const f = await setup(t);
  await seed(f);
  const rss0 = process.memoryUsage().rss;
  for (const [what, total, chunked] of [
    ['4 MiB with Content-Length', 4 << 20, false],
    ['4 MiB chunked', 4 << 20, true],
    ['100 MiB with Content-Length', 100 << 20, false],
    ['100 MiB chunked', 100 << 20, true],
  ] as const) {
    const r = await upload(f.port, total, chunked);
    t.equal(r.status, 413, `${what}: 413`);
    t.same(r.json, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Request entity too large: limit is 3145728', reason: 'RequestEntityTooLarge', code: 413 }, `${what}: upstream's Status`);
  }
  const grown = (process.memoryUsage().rss - rss0) / 2 ** 20;
  t.ok(grown < 64, `RSS grew ${grown.toFixed(1)} MiB for 208 MiB of refused bodies (client and server in this process)`);
  // exactly at the limit is still read (and is just bad JSON here)
  const atLimit = await raw(f.port, 'POST', `/api/v1/namespaces/${NS}/configmaps`, Buffer.alloc(3 << 20, 0x20));
  t.equal(atLimit.status, 400, 'a body of exactly 3 MiB is read');
  t.equal(await intact(f), '');
  t.equal((await raw(f.port, 'GET', '/api/v1/namespaces')).status, 200, 'the server still answers');
});

const yamlCm = (name: string, data: string) => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\ndata:\n${data}`;

t.test('YAML aliases cannot expand a body beyond the limit; plain aliases still work', async (t) => {
  const f = await setup(t);
  await seed(f);
  const rss0 = process.memoryUsage().rss;
  const anchor = 'x'.repeat(1_000_000);
  let bomb = `  a0: &a "${anchor}"\n`;
  for (let i = 1; i <= 90; i++) bomb += `  a${i}: *a\n`;
  const yaml = { 'Content-Type': 'application/yaml' };
  for (let i = 0; i < 3; i++) {
    const r = await raw(f.port, 'POST', `/api/v1/namespaces/${NS}/configmaps`, yamlCm(`bomb${i}`, bomb), yaml);
    t.equal(r.status, 400, '1 MB anchor × 90 aliases: 400');
    t.match(String(r.json.message), /expands to more than 3145728 bytes/);
  }
  // an alias needs no space before it: JSON-style `"k":*a`, compact flow and key aliases too
  const flowKeys = (n: number, sep: string) => Array.from({ length: n }, (_, i) => `"k${i}"${sep}*a`).join(',');
  const adjacent: Record<string, string> = {
    'JSON-style "k":*a (×400)': yamlCm('adj0', `  {"a": &a "${anchor}", ${flowKeys(400, ':')}}`).replace('data:\n  {', 'data: {'),
    'compact {"a":&a …,"k":*a} (×90)': `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: adj1}\ndata: {"a":&a "${anchor}",${flowKeys(90, ':')}}\n`,
    'flow sequence [*a,*a] (×90)': `${yamlCm('adj2', '  k: v')}\nextra: {"a": &a "${anchor}", "l":[${Array.from({ length: 90 }, () => '*a').join(',')}]}\n`,
    'alias as a key (×90)': `${yamlCm('adj3', '  k: v')}\nextra: [{&a "${anchor}": 1},${Array.from({ length: 90 }, () => '{*a : 1}').join(',')}]\n`,
  };
  for (const [name, body] of Object.entries(adjacent)) {
    t.ok(body.length < 3 << 20, `${name}: ${(body.length / 2 ** 20).toFixed(2)} MiB body`);
    const r = await raw(f.port, 'POST', `/api/v1/namespaces/${NS}/configmaps?fieldValidation=Ignore`, body, yaml);
    t.equal(r.status, 400, `${name}: 400`);
    t.match(String(r.json.message), /expands to more than 3145728 bytes/, name);
  }
  {
    const r = await raw(f.port, 'PATCH', `/api/v1/namespaces/${NS}/configmaps/cm0?fieldManager=t`, adjacent['JSON-style "k":*a (×400)'].replace('adj0', 'cm0'), { 'Content-Type': 'application/apply-patch+yaml' });
    t.equal(r.status, 400, 'server-side apply with "k":*a aliases: 400');
  }
  const grown = (process.memoryUsage().rss - rss0) / 2 ** 20;
  t.ok(grown < 150, `RSS grew ${grown.toFixed(1)} MiB for three alias bombs (91 MB each when expanded) and ${Object.keys(adjacent).length} adjacent-alias bombs (up to 400 MB each)`);
  // billion laughs: 9 levels of 10 aliases each
  let laughs = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\ndata:\n  k: x\nl0: &l0 ["lol"]\n';
  for (let i = 1; i <= 9; i++) laughs += `l${i}: &l${i} [${Array.from({ length: 10 }, () => `*l${i - 1}`).join(',')}]\n`;
  let r = await raw(f.port, 'POST', `/api/v1/namespaces/${NS}/configmaps`, laughs, yaml);
  t.equal(r.status, 400, 'billion laughs: 400');
  r = await raw(f.port, 'POST', `/api/v1/namespaces/${NS}/configmaps`, yamlCm('loop', '  k: x\nself: &s [*s]\n'), yaml);
  t.equal(r.status, 400, 'an alias inside its own anchor: 400');
  r = await raw(f.port, 'PATCH', `/api/v1/namespaces/${NS}/configmaps/cm0?fieldManager=t`, yamlCm('cm0', bomb), { 'Content-Type': 'application/apply-patch+yaml' });
  t.equal(r.status, 400, 'server-side apply with the bomb: 400');
  t.match(String(r.json.message), /expands to more than 3145728 bytes/);
  t.equal(await intact(f), '');
  // an ordinary alias is a copy of its anchor
  r = await raw(f.port, 'POST', `/api/v1/namespaces/${NS}/configmaps`, 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: aliased\n  labels: &l {app: web}\n  annotations: *l\ndata: {k: v}\n', yaml);
  t.equal(r.status, 201, 'a small alias is fine');
  t.same((r.json.metadata as Record<string, unknown>).annotations, { app: 'web' });
  t.equal((await f.store.list('ConfigMap', { namespace: NS })).items.length, 3, 'no bomb was stored');
  // without aliases a YAML body may be bigger as JSON than the limit (implicit nulls, quotes)
  const names = Array.from({ length: 250_000 }, (_, i) => `k${i}`);
  const keys = names.join(',');
  const asJson = JSON.stringify(Object.fromEntries(names.map((k) => [k, null]))).length;
  t.ok(asJson > 3 << 20 && keys.length < 3 << 20, 'bigger than the limit only as JSON');
  r = await raw(f.port, 'POST', `/api/v1/namespaces/${NS}/configmaps?dryRun=All&fieldValidation=Ignore`, `${yamlCm('wide', '  k: v')}\nextra: {${keys}}\n`, yaml);
  t.equal(r.status, 201, `a ${Math.round(keys.length / 1024)} KiB YAML body of implicit nulls (${(asJson / 2 ** 20).toFixed(1)} MiB as JSON) is not an alias bomb`);
});

const nest = (n: number, leaf = '"x"') => '{"a":'.repeat(n) + leaf + '}'.repeat(n);

t.test('deep nesting is a 400 for every content and patch type, and the limit itself works', async (t) => {
  const f = await setup(t);
  await seed(f);
  const deep = nest(100_000);
  const cases: Array<[string, string, string, string]> = [
    ['create, labels', 'POST', `/api/v1/namespaces/${NS}/configmaps`, `{"metadata":{"name":"d","labels":${deep}}}`],
    ['update', 'PUT', `/api/v1/namespaces/${NS}/configmaps/cm0`, `{"metadata":{"name":"cm0","labels":${deep}}}`],
    ['json-patch', 'PATCH', `/api/v1/namespaces/${NS}/configmaps/cm0`, `[{"op":"add","path":"/metadata/labels","value":${deep}}]`],
    ['merge-patch', 'PATCH', `/api/v1/namespaces/${NS}/configmaps/cm0`, `{"metadata":{"labels":${deep}}}`],
    ['strategic-merge-patch', 'PATCH', `/api/v1/namespaces/${NS}/configmaps/cm0`, `{"metadata":{"labels":${deep}}}`],
    ['apply (JSON)', 'PATCH', `/api/v1/namespaces/${NS}/configmaps/cm0?fieldManager=t`, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm0","labels":${deep}}}`],
    ['apply (YAML flow)', 'PATCH', `/api/v1/namespaces/${NS}/configmaps/cm0?fieldManager=t`, `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm0, labels: ${'['.repeat(100_000)}${']'.repeat(100_000)}}`],
    ['apply (YAML block)', 'PATCH', `/api/v1/namespaces/${NS}/configmaps/cm0?fieldManager=t`, `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm0\n  labels:\n    k:\n      ${'- '.repeat(100_000)}x\n`],
    ['create (YAML)', 'POST', `/api/v1/namespaces/${NS}/configmaps`, `metadata: {name: e, labels: ${'{a: '.repeat(100_000)}x${'}'.repeat(100_000)}}`],
    ['delete options', 'DELETE', `/api/v1/namespaces/${NS}/configmaps/cm0`, deep],
  ];
  const types: Record<string, string> = {
    'json-patch': 'application/json-patch+json',
    'merge-patch': 'application/merge-patch+json',
    'strategic-merge-patch': 'application/strategic-merge-patch+json',
  };
  for (const [what, method, path, body] of cases) {
    const ct = types[what] ?? (what.startsWith('apply') ? 'application/apply-patch+yaml' : what.includes('YAML') ? 'application/yaml' : 'application/json');
    const t0 = Date.now();
    const r = await raw(f.port, method, path, body, { 'Content-Type': ct });
    t.equal(r.status, 400, `${what}: 400 (${Date.now() - t0} ms)`);
    t.match(String(r.json.message), new RegExp(`exceeded max depth ${MAX_DEPTH}`), `${what}: names the limit`);
    t.equal(await intact(f), '', `${what}: nothing changed`);
  }

  // a body at the limit goes through every path without a 5xx (nest(n) nests n levels)
  const cm = (depth: number, name: string) => `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"${name}"},"data":{"k":"v"},"extra":${nest(depth - 1)}}`;
  let r = await raw(f.port, 'POST', `/api/v1/namespaces/${NS}/configmaps`, cm(MAX_DEPTH, 'limit'));
  t.ok(r.status < 300, `create at depth ${MAX_DEPTH}: ${r.status}`);
  r = await raw(f.port, 'POST', `/api/v1/namespaces/${NS}/configmaps`, cm(MAX_DEPTH + 1, 'over'));
  t.equal(r.status, 400, `create at depth ${MAX_DEPTH + 1}: 400`);
  await raw(f.port, 'POST', `/api/v1/namespaces/${NS}/configmaps`, JSON.stringify({ metadata: { name: 'p' }, data: { k: 'v' } }));
  const atLimit: Array<[string, string]> = [
    ['application/merge-patch+json', `{"extra":${nest(MAX_DEPTH - 1)}}`],
    ['application/strategic-merge-patch+json', `{"extra":${nest(MAX_DEPTH - 1, '"y"')}}`],
    ['application/json-patch+json', `[{"op":"add","path":"/extra","value":${nest(MAX_DEPTH - 2, '"z"')}}]`],
  ];
  for (const [ct, body] of atLimit) {
    r = await raw(f.port, 'PATCH', `/api/v1/namespaces/${NS}/configmaps/p`, body, { 'Content-Type': ct });
    t.ok(r.status < 300, `${ct} at depth ${MAX_DEPTH}: ${r.status} ${r.status >= 300 ? String(r.json.message) : ''}`);
  }
  r = await raw(f.port, 'PATCH', `/api/v1/namespaces/${NS}/configmaps/p?fieldManager=t&force=true&fieldValidation=Ignore`, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"p"},"extra":${nest(MAX_DEPTH - 1, '"w"')}}`, { 'Content-Type': 'application/apply-patch+yaml' });
  t.ok(r.status < 300, `apply at depth ${MAX_DEPTH}: ${r.status} ${r.status >= 300 ? String(r.json.message) : ''}`);
  r = await raw(f.port, 'PATCH', `/api/v1/namespaces/${NS}/configmaps/p?fieldManager=t&force=true&fieldValidation=Ignore`, `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: p}\nextra: ${nest(MAX_DEPTH - 1, 'v')}`, { 'Content-Type': 'application/apply-patch+yaml' });
  t.ok(r.status < 300, `apply as YAML at depth ${MAX_DEPTH}: ${r.status} ${r.status >= 300 ? String(r.json.message) : ''}`);
  // a JSON patch cannot grow the stored object past the limit one request at a time
  await raw(f.port, 'PUT', `/api/v1/namespaces/${NS}/configmaps/p`, JSON.stringify({ metadata: { name: 'p' }, data: { k: 'v' } }));
  await raw(f.port, 'PATCH', `/api/v1/namespaces/${NS}/configmaps/p`, `[{"op":"add","path":"/extra","value":${nest(MAX_DEPTH - 3)}}]`, { 'Content-Type': 'application/json-patch+json' });
  r = await raw(f.port, 'PATCH', `/api/v1/namespaces/${NS}/configmaps/p`, `[{"op":"add","path":"/extra${'/a'.repeat(MAX_DEPTH - 4)}","value":${nest(10)}}]`, { 'Content-Type': 'application/json-patch+json' });
  t.equal(r.status, 400, 'a JSON patch whose result nests past the limit: 400');
  t.equal((await raw(f.port, 'GET', '/api/v1/namespaces')).status, 200, 'the server still answers');
});

t.test('a small JSON patch cannot grow an object without bound: copies stop at 3 MiB with a 422', async (t) => {
  const f = await setup(t);
  await seed(f);
  const jp = { 'Content-Type': 'application/json-patch+json' };
  const x = '/metadata/annotations/x';
  // the reviewer's patch: a 1 KB object copied into its own child, 17 times doubling it (128 MB), then 30 (128 GB)
  for (const n of [17, 30]) {
    const ops: unknown[] = [
      { op: 'add', path: '/metadata/annotations', value: {} },
      { op: 'add', path: x, value: { k: 'y'.repeat(1000) } },
    ];
    for (let i = 0; i < n; i++) ops.push({ op: 'copy', from: x, path: `${x}/c${i}` });
    const body = JSON.stringify(ops);
    const rss0 = process.memoryUsage().rss;
    const t0 = Date.now();
    const r = await raw(f.port, 'PATCH', `/api/v1/namespaces/${NS}/configmaps/cm0`, body, jp);
    const ms = Date.now() - t0;
    t.equal(r.status, 422, `${n} copies in a ${body.length}-byte body: 422`);
    t.equal(r.json.reason, 'Invalid');
    t.match(String(r.json.message), /Unable to complete the copy, the accumulated size increase of copy is \d+, exceeding the limit 3145728/);
    const grown = (process.memoryUsage().rss - rss0) / 2 ** 20;
    t.ok(grown < 64 && ms < 2000, `answered in ${ms} ms, RSS grew ${grown.toFixed(1)} MiB`);
  }
  t.equal(await intact(f), '', 'nothing changed');
  // within the limit a copy applies
  const r = await raw(f.port, 'PATCH', `/api/v1/namespaces/${NS}/configmaps/cm1`, JSON.stringify([{ op: 'copy', from: '/data/k', path: '/data/k2' }]), jp);
  t.equal(r.status, 200, r.text);
  t.same(r.json.data, { k: 'cm1', k2: 'cm1' });
});

t.test('protobuf bodies nested deep are a 400', async (t) => {
  const f = await setup(t);
  await seed(f);
  // 200,000 nested groups of an unknown field (start-group tags, never ended): protobufjs skips
  // unknown groups recursively, up to its own nesting limit; k8s messages nest at most 11 deep
  // and none contains itself (checked against protobuf/schema.ts)
  const body = Buffer.concat([Buffer.from('k8s\0', 'binary'), Buffer.alloc(200_000, (15 << 3) | 3)]);
  const r = await raw(f.port, 'POST', `/api/v1/namespaces/${NS}/configmaps`, body, { 'Content-Type': 'application/vnd.kubernetes.protobuf' });
  t.equal(r.status, 400, `400: ${String(r.json.message).slice(0, 80)}`);
  t.match(String(r.json.message), /nesting depth/);
  t.equal((await raw(f.port, 'GET', '/api/v1/namespaces')).status, 200);
});

t.test('filters alone: panic recovery turns any throw into a Status; the body limit answers before reading', async (t) => {
  const log = pino({ level: 'silent' });
  let handled = 0;
  const run = chain([recoverPanics(log), bodyLimit(10)], async (c) => {
    handled++;
    if (c.target === '/throw') throw new Error('boom');
    if (c.target === '/throw-late') {
      c.res.writeHead(200, { 'Content-Type': 'text/plain' });
      c.res.write('partial');
      throw new Error('late');
    }
    c.res.end('ok');
  });
  const server = http.createServer((req, res) => void run(requestContext(req, res)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as net.AddressInfo).port;
  let r = await raw(port, 'GET', '/throw');
  t.equal(r.status, 500);
  t.match(String(r.json.message), /Internal error occurred: boom/);
  r = await raw(port, 'GET', '/throw-late');
  t.equal(r.status, 200, 'a reply that had started is ended');
  t.match(r.text, /partial/);
  const before = handled;
  r = await raw(port, 'POST', '/x', 'x'.repeat(11));
  t.equal(r.status, 413);
  t.equal(r.json.message, 'Request entity too large: limit is 10');
  t.equal(handled, before, 'the handler never ran');
  r = await raw(port, 'POST', '/x', 'x'.repeat(10));
  t.equal(r.text, 'ok');
});

t.test('kubeloop up --help names the limits these filters enforce', async (t) => {
  t.equal(MAX_BODY, 3 << 20);
  t.match(helpText(), /bodies at most 3 MiB \(413\)/);
  t.match(helpText(), new RegExp(`deeper than ${MAX_DEPTH} levels`));
});
