/**
 * Wrong-typed and invalid objects through the HTTP API (issue 14, finding 5): every case gets the
 * Status upstream gives (400 decode error naming the Go field, or 422 with field causes), never a
 * 500, and nothing is stored. Secrets' `stringData` is merged into `data`. A small fixed-seed
 * fuzz puts null/number/string/list/object where workload fields belong and checks for 5xx.
 */
import t from 'tap';
import { base64ErrorAt } from '../src/server/schema.js';
import { cronScheduleError, timeZoneError } from '../src/api/validation/cron.js';
import { inProcessApi } from './helpers/api.js';
import { prng } from './helpers/hostile-kit.js';

type Rec = Record<string, unknown>;

async function api(t: { teardown(fn: () => unknown): void }) {
  const server = await inProcessApi(t, { dirPrefix: 'kubeloop-vt-' });
  return async (method: string, path: string, body?: unknown, contentType = 'application/json') => {
    const res = await fetch(`${server.url}${path}`, {
      method,
      headers: { 'Content-Type': contentType },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let json: Rec = {};
    try {
      json = JSON.parse(text) as Rec;
    } catch {
      // not JSON
    }
    return { status: res.status, json, text };
  };
}

const NS = 'default';
const PATHS: Record<string, string> = {
  ConfigMap: `/api/v1/namespaces/${NS}/configmaps`,
  Secret: `/api/v1/namespaces/${NS}/secrets`,
  Pod: `/api/v1/namespaces/${NS}/pods`,
  Service: `/api/v1/namespaces/${NS}/services`,
  Deployment: `/apis/apps/v1/namespaces/${NS}/deployments`,
  StatefulSet: `/apis/apps/v1/namespaces/${NS}/statefulsets`,
  DaemonSet: `/apis/apps/v1/namespaces/${NS}/daemonsets`,
  ReplicaSet: `/apis/apps/v1/namespaces/${NS}/replicasets`,
  Job: `/apis/batch/v1/namespaces/${NS}/jobs`,
  CronJob: `/apis/batch/v1/namespaces/${NS}/cronjobs`,
};

const podSpec = (extra: Rec = {}, restartPolicy = 'Always'): Rec => ({
  restartPolicy,
  containers: [{ name: 'c', image: 'busybox', command: ['sleep', '1'], ...extra }],
});
const template = (spec: Rec = podSpec()): Rec => ({ metadata: { labels: { app: 'x' } }, spec });

interface Case {
  name: string;
  kind: string;
  body: Rec;
  code: number;
  /** the Status message, exactly */
  message?: string;
  /** how the Status message ends (the `<Kind> "<name>"` head is the store's) */
  tail?: string;
  /** field paths the Status causes must name */
  fields?: string[];
}

const CASES: Case[] = [
  {
    name: 'ConfigMap data value a number',
    kind: 'ConfigMap',
    body: { metadata: { name: 'cm-num' }, data: { k: 1 } },
    code: 400,
    message: 'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal number into Go struct field ConfigMap.data of type string',
  },
  {
    name: 'ConfigMap data value a bool',
    kind: 'ConfigMap',
    body: { metadata: { name: 'cm-bool' }, data: { k: true } },
    code: 400,
    message: 'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal bool into Go struct field ConfigMap.data of type string',
  },
  {
    name: 'ConfigMap data a list',
    kind: 'ConfigMap',
    body: { metadata: { name: 'cm-list' }, data: ['k'] },
    code: 400,
    message: 'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal array into Go struct field ConfigMap.data of type map[string]string',
  },
  {
    name: 'ConfigMap binaryData not base64',
    kind: 'ConfigMap',
    body: { metadata: { name: 'cm-b64' }, binaryData: { k: 'not base64' } },
    code: 400,
    message: 'ConfigMap in version "v1" cannot be handled as a ConfigMap: illegal base64 data at input byte 3',
  },
  {
    name: 'ConfigMap key not a config key',
    kind: 'ConfigMap',
    body: { metadata: { name: 'cm-key' }, data: { 'a b': 'v' } },
    code: 422,
    fields: ['data[a b]'],
  },
  {
    name: 'ConfigMap key in data and binaryData',
    kind: 'ConfigMap',
    body: { metadata: { name: 'cm-dup' }, data: { k: 'v' }, binaryData: { k: 'dg==' } },
    code: 422,
    fields: ['data[k]'],
  },
  {
    name: 'ConfigMap over 1 MiB',
    kind: 'ConfigMap',
    body: { metadata: { name: 'cm-big' }, data: { a: 'x'.repeat(600_000), b: 'y'.repeat(600_000) } },
    code: 422,
    fields: [''],
  },
  {
    name: 'Secret data not base64',
    kind: 'Secret',
    body: { metadata: { name: 's-b64' }, data: { k: 'abc' } },
    code: 400,
    message: 'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 0',
  },
  {
    name: 'Secret stringData value a number',
    kind: 'Secret',
    body: { metadata: { name: 's-sd' }, stringData: { k: 1 } },
    code: 400,
    message: 'Secret in version "v1" cannot be handled as a Secret: json: cannot unmarshal number into Go struct field Secret.stringData of type string',
  },
  {
    name: 'Secret type a number',
    kind: 'Secret',
    body: { metadata: { name: 's-type' }, type: 5 },
    code: 400,
    message: 'Secret in version "v1" cannot be handled as a Secret: json: cannot unmarshal number into Go struct field Secret.type of type string',
  },
  {
    name: 'TLS Secret without its keys',
    kind: 'Secret',
    body: { metadata: { name: 's-tls' }, type: 'kubernetes.io/tls', data: {} },
    code: 422,
    fields: ['data[tls.crt]', 'data[tls.key]'],
  },
  {
    name: 'container command of numbers',
    kind: 'Pod',
    body: { metadata: { name: 'p-cmd' }, spec: podSpec({ command: [1, 2] }) },
    code: 400,
    message: 'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal number into Go struct field Container.spec.containers.command of type string',
  },
  {
    name: 'container args a string',
    kind: 'Pod',
    body: { metadata: { name: 'p-args' }, spec: podSpec({ args: 'a b' }) },
    code: 400,
    message: 'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal string into Go struct field Container.spec.containers.args of type []string',
  },
  {
    name: 'containerPort a fraction',
    kind: 'Pod',
    body: { metadata: { name: 'p-port' }, spec: podSpec({ ports: [{ containerPort: 80.5 }] }) },
    code: 400,
    message: 'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal number 80.5 into Go struct field ContainerPort.spec.containers.ports.containerPort of type int32',
  },
  {
    name: 'containerPort a string',
    kind: 'Pod',
    body: { metadata: { name: 'p-port2' }, spec: podSpec({ ports: [{ containerPort: '80' }] }) },
    code: 400,
    message: 'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal string into Go struct field ContainerPort.spec.containers.ports.containerPort of type int32',
  },
  {
    name: 'env an object',
    kind: 'Pod',
    body: { metadata: { name: 'p-env' }, spec: podSpec({ env: { A: '1' } }) },
    code: 400,
    message: 'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal object into Go struct field Container.spec.containers.env of type []v1.EnvVar',
  },
  {
    name: 'env value a number',
    kind: 'Pod',
    body: { metadata: { name: 'p-envv' }, spec: podSpec({ env: [{ name: 'A', value: 1 }] }) },
    code: 400,
    message: 'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal number into Go struct field EnvVar.spec.containers.env.value of type string',
  },
  {
    name: 'Deployment container args of objects',
    kind: 'Deployment',
    body: { metadata: { name: 'd-args' }, spec: { selector: { matchLabels: { app: 'x' } }, template: template(podSpec({ args: [{}] })) } },
    code: 400,
    message:
      'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal object into Go struct field Container.spec.template.spec.containers.args of type string',
  },
  {
    name: 'Job without spec.template',
    kind: 'Job',
    body: { metadata: { name: 'j-notpl' }, spec: {} },
    code: 422,
    fields: ['spec.template.spec.containers', 'spec.template.spec.restartPolicy'],
  },
  {
    name: 'Job spec.template a list',
    kind: 'Job',
    body: { metadata: { name: 'j-tpl-list' }, spec: { template: [] } },
    code: 400,
    message: 'Job in version "v1" cannot be handled as a Job: json: cannot unmarshal array into Go struct field JobSpec.spec.template of type v1.PodTemplateSpec',
  },
  {
    name: 'CronJob schedule garbage',
    kind: 'CronJob',
    body: { metadata: { name: 'cj-garbage' }, spec: { schedule: 'garbage', jobTemplate: { spec: { template: template(podSpec({}, 'Never')) } } } },
    code: 422,
    tail: 'is invalid: spec.schedule: Invalid value: "garbage": expected exactly 5 fields, found 1: [garbage]',
    fields: ['spec.schedule'],
  },
  {
    name: 'CronJob schedule out of range',
    kind: 'CronJob',
    body: { metadata: { name: 'cj-range' }, spec: { schedule: '61 * * * *', jobTemplate: { spec: { template: template(podSpec({}, 'Never')) } } } },
    code: 422,
    fields: ['spec.schedule'],
  },
  {
    name: 'CronJob time zone unknown',
    kind: 'CronJob',
    body: { metadata: { name: 'cj-tz' }, spec: { schedule: '* * * * *', timeZone: 'Mars/Olympus', jobTemplate: { spec: { template: template(podSpec({}, 'Never')) } } } },
    code: 422,
    tail: 'is invalid: spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus',
    fields: ['spec.timeZone'],
  },
];

t.test('cron schedules and time zones as robfig/cron and time.LoadLocation', async (t) => {
  const schedules: Array<[string, string | undefined]> = [
    ['* * * * *', undefined],
    ['*/5 0-23/2 1,15 jan-DEC mon-fri', undefined],
    ['@hourly', undefined],
    ['@every 1h30m', undefined],
    ['TZ=Europe/Paris 0 9 * * *', undefined],
    ['garbage', 'expected exactly 5 fields, found 1: [garbage]'],
    ['* * * * * *', 'expected exactly 5 fields, found 6: [* * * * * *]'],
    ['61 * * * *', 'end of range (61) above maximum (59): 61'],
    ['* * 0 * *', 'beginning of range (0) below minimum (1): 0'],
    ['5-2 * * * *', 'beginning of range (5) beyond end of range (2): 5-2'],
    ['*/0 * * * *', 'step of range should be a positive number: */0'],
    ['x * * * *', 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'],
    ['1-2-3 * * * *', 'too many hyphens: 1-2-3'],
    ['@fortnightly', 'unrecognized descriptor: @fortnightly'],
    ['TZ=Mars/Olympus * * * * *', 'provided bad location Mars/Olympus: unknown time zone Mars/Olympus'],
  ];
  for (const [s, want] of schedules) t.equal(cronScheduleError(s), want, s);
  t.equal(timeZoneError('Europe/Paris'), undefined);
  t.equal(timeZoneError('UTC'), undefined);
  t.equal(timeZoneError('europe/paris'), 'unknown time zone europe/paris', 'zone names are case-sensitive, as zoneinfo files');
  t.equal(timeZoneError('Mars/Olympus'), 'unknown time zone Mars/Olympus');
});

t.test('base64 as Go decodes []byte', async (t) => {
  t.equal(base64ErrorAt(''), undefined);
  t.equal(base64ErrorAt('dg=='), undefined);
  t.equal(base64ErrorAt('dmFs\ndWU='), undefined, 'newlines are skipped');
  t.equal(base64ErrorAt('abc'), 0);
  t.equal(base64ErrorAt('not base64'), 3);
  t.equal(base64ErrorAt('dg='), 3);
  t.equal(base64ErrorAt('dg==x'), 4);
  t.equal(base64ErrorAt('d==='), 1);
});

t.test('wrong types and invalid objects: upstream Status, nothing stored', async (t) => {
  const call = await api(t);
  for (const c of CASES) {
    const r = await call('POST', PATHS[c.kind], c.body);
    t.equal(r.status, c.code, `${c.name}: ${r.status} ${String(r.json.message ?? r.text).slice(0, 200)}`);
    t.equal(r.json.kind, 'Status', `${c.name}: a Status body`);
    if (c.message) t.equal(r.json.message, c.message, `${c.name}: message`);
    if (c.tail) t.ok(String(r.json.message).endsWith(c.tail), `${c.name}: message ends ${JSON.stringify(c.tail)}`);
    if (c.fields) {
      const causes = ((r.json.details as Rec | undefined)?.causes ?? []) as { field: string }[];
      for (const f of c.fields) t.ok(causes.some((x) => x.field === f), `${c.name}: a cause names ${JSON.stringify(f)}`);
    }
    const name = (c.body.metadata as Rec).name as string;
    t.equal((await call('GET', `${PATHS[c.kind]}/${name}`)).status, 404, `${c.name}: nothing stored`);
  }

  // the same checks guard updates and patches
  t.equal((await call('POST', PATHS.ConfigMap, { metadata: { name: 'cm' }, data: { k: 'v' } })).status, 201);
  let r = await call('PATCH', `${PATHS.ConfigMap}/cm`, { data: { k: 1 } }, 'application/merge-patch+json');
  t.equal(r.status, 400, 'a merge patch writing a number into data is a 400');
  r = await call('PATCH', `${PATHS.ConfigMap}/cm`, [{ op: 'add', path: '/data/j', value: [1] }], 'application/json-patch+json');
  t.equal(r.status, 400, 'a JSON patch writing a list into data is a 400');
  r = await call('PUT', `${PATHS.ConfigMap}/cm`, { metadata: { name: 'cm' }, data: { k: { x: 1 } } });
  t.equal(r.status, 400, 'a PUT with an object in data is a 400');
  t.same((await call('GET', `${PATHS.ConfigMap}/cm`)).json.data, { k: 'v' }, 'the ConfigMap is unchanged');

  // typed query parameters and DeleteOptions bodies: a wrong type is a 400, never NaN
  for (const q of ['?limit=x', '?watch=true&timeoutSeconds=abc', '?watch=true&timeoutSeconds=1.5']) {
    r = await call('GET', `${PATHS.ConfigMap}${q}`);
    t.equal(r.status, 400, `GET ${q}`);
  }
  r = await call('DELETE', `${PATHS.ConfigMap}/cm?gracePeriodSeconds=abc`);
  t.equal(r.status, 400, 'gracePeriodSeconds=abc is a 400');
  t.match(r.json.message, /gracePeriodSeconds/);
  r = await call('DELETE', `${PATHS.ConfigMap}/cm`, { gracePeriodSeconds: 'x' });
  t.equal(r.status, 400, 'a DeleteOptions body with a string grace period is a 400');
  t.equal(r.json.message, 'DeleteOptions in version "v1" cannot be handled as a DeleteOptions: json: cannot unmarshal string into Go struct field DeleteOptions.gracePeriodSeconds of type int64');
  t.equal((await call('GET', `${PATHS.ConfigMap}/cm`)).status, 200, 'and deletes nothing');
  r = await call('PATCH', `${PATHS.ConfigMap}/ssa?fieldManager=t`, 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {k: 1}\n', 'application/apply-patch+yaml');
  t.equal(r.status, 400, 'server-side apply checks types too');

  // quantities accept JSON numbers, as resource.Quantity does
  r = await call('POST', PATHS.Pod, { metadata: { name: 'p-qty' }, spec: podSpec({ resources: { limits: { cpu: 1, memory: '64Mi' } } }) });
  t.equal(r.status, 201, `a number quantity is accepted: ${String(r.json.message ?? '')}`);
});

t.test('Secret stringData is merged into data (base64) and dropped', async (t) => {
  const call = await api(t);
  let r = await call('POST', PATHS.Secret, { metadata: { name: 's' }, data: { a: Buffer.from('old').toString('base64'), b: 'Yg==' }, stringData: { a: 'new', c: 'ç' } });
  t.equal(r.status, 201);
  const expectData = { a: Buffer.from('new').toString('base64'), b: 'Yg==', c: Buffer.from('ç').toString('base64') };
  t.same(r.json.data, expectData, 'stringData overrides data and lands base64-encoded');
  t.notOk('stringData' in r.json, 'stringData is not stored');
  r = await call('GET', `${PATHS.Secret}/s`);
  t.same(r.json.data, expectData);
  t.notOk('stringData' in r.json);
  r = await call('PATCH', `${PATHS.Secret}/s`, { stringData: { d: 'dd' } }, 'application/merge-patch+json');
  t.equal(r.status, 200);
  t.equal((r.json.data as Rec).d, Buffer.from('dd').toString('base64'), 'a patch with stringData lands in data');
  t.notOk('stringData' in r.json);
  r = await call('PATCH', `${PATHS.Secret}/s`, { type: 'kubernetes.io/tls' }, 'application/merge-patch+json');
  t.equal(r.status, 422, 'type is immutable');
  t.match(r.json.message, /type: Invalid value: "kubernetes.io\/tls": field is immutable/);
});

t.test('fuzz: wrong shapes in workload fields never give a 5xx (seed 14, 400 requests)', async (t) => {
  const call = await api(t);
  // mulberry32, so the fuzz is the same on every run
  const random = prng(14).next;
  const junk: unknown[] = [null, 7, -1, 1.5, 's', '', [], [1], {}, { x: 1 }, true];
  const base: Record<string, () => Rec> = {
    Deployment: () => ({ spec: { replicas: 1, selector: { matchLabels: { app: 'x' } }, template: template() } }),
    StatefulSet: () => ({ spec: { serviceName: 's', selector: { matchLabels: { app: 'x' } }, template: template() } }),
    DaemonSet: () => ({ spec: { selector: { matchLabels: { app: 'x' } }, template: template() } }),
    ReplicaSet: () => ({ spec: { replicas: 1, selector: { matchLabels: { app: 'x' } }, template: template() } }),
    Job: () => ({ spec: { template: template(podSpec({}, 'Never')) } }),
    CronJob: () => ({ spec: { schedule: '* * * * *', jobTemplate: { spec: { template: template(podSpec({}, 'Never')) } } } }),
    Pod: () => ({ spec: podSpec({ ports: [{ containerPort: 80 }], env: [{ name: 'A', value: 'b' }] }) }),
    Service: () => ({ spec: { selector: { app: 'x' }, ports: [{ port: 80, targetPort: 8080 }] } }),
    ConfigMap: () => ({ data: { k: 'v' }, binaryData: { b: 'dg==' } }),
    Secret: () => ({ type: 'Opaque', data: { k: 'dg==' }, stringData: { s: 'x' } }),
  };
  const paths = [
    ['spec'],
    ['spec', 'template'],
    ['spec', 'template', 'spec'],
    ['spec', 'template', 'metadata'],
    ['spec', 'selector'],
    ['spec', 'replicas'],
    ['spec', 'jobTemplate'],
    ['spec', 'jobTemplate', 'spec'],
    ['spec', 'strategy'],
    ['spec', 'updateStrategy'],
    ['metadata', 'labels'],
    ['metadata', 'annotations'],
    ['metadata', 'finalizers'],
    ['metadata', 'ownerReferences'],
    ['spec', 'containers'],
    ['spec', 'ports'],
    ['spec', 'selector'],
    ['spec', 'type'],
    ['spec', 'clusterIP'],
    ['data'],
    ['binaryData'],
    ['stringData'],
    ['type'],
    ['immutable'],
  ];
  const kinds = Object.keys(base);
  let fives = 0;
  for (let i = 0; i < 400; i++) {
    const kind = kinds[Math.floor(random() * kinds.length)];
    const obj = base[kind]();
    const name = `f${i}`;
    obj.metadata = { name };
    const p = paths[Math.floor(random() * paths.length)];
    let cur = obj;
    for (const k of p.slice(0, -1)) cur = (cur[k] ??= {}) as Rec;
    const value = junk[Math.floor(random() * junk.length)];
    cur[p[p.length - 1]] = value;
    const r = await call('POST', PATHS[kind], obj);
    if (r.status >= 500) {
      fives++;
      t.fail(`${kind} ${p.join('.')} = ${JSON.stringify(value)}: ${r.status} ${String(r.json.message)}`);
    }
    if (r.status >= 400) t.equal((await call('GET', `${PATHS[kind]}/${name}`)).status, 404, `${kind} ${p.join('.')} = ${JSON.stringify(value)}: nothing stored`);
    else await call('DELETE', `${PATHS[kind]}/${name}`);
  }
  t.equal(fives, 0, 'no 5xx');
});
