/**
 * Case tables for Endpoints (reference §3.6), Pods, workloads, Namespaces and kinds validated by
 * metadata only: input fragment → exact upstream-formatted messages.
 */
import t from 'tap';
import { applyDefaults } from '../../src/api/defaults.js';
import { formatFieldError } from '../../src/api/field.js';
import type { KObject } from '../../src/api/types.js';
import { validateObject } from '../../src/api/validation/index.js';

type Rec = Record<string, unknown>;

const DNS1123_LABEL =
  "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const IP = 'must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)';
const LOOPBACK = 'may not be in the loopback range (127.0.0.0/8, ::1/128)';
const HINT = '(kubeloop: start the daemon with --allow-loopback-endpoints to allow this)';
const RANGE = 'must be between 1 and 65535, inclusive';
const ENV_NAME =
  "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')";
const PORT_NAME_CHARS = 'must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)';

function run(obj: Rec, opts: { old?: Rec; allowLoopbackEndpoints?: boolean; defaults?: boolean } = {}): string[] {
  const o = structuredClone(obj);
  if (opts.defaults !== false) applyDefaults(o as KObject);
  return validateObject(o as KObject, opts.old as KObject | undefined, { allowLoopbackEndpoints: opts.allowLoopbackEndpoints }).map(
    formatFieldError,
  );
}

// ------------------------------------------------------------------------------- Endpoints (3.6)

const endpoints = (subsets: unknown, name = 'web'): Rec => ({ apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace: 'default' }, subsets });

t.test('Endpoints case table (reference 3.6)', async (t) => {
  const table: Array<[string, Rec, string[], boolean?]> = [
    ['one address, one unnamed port', endpoints([{ addresses: [{ ip: '10.1.2.3' }], ports: [{ port: 8080 }] }]), []],
    ['no subsets', endpoints(undefined), []],
    ['headless: addresses without ports', endpoints([{ addresses: [{ ip: '10.1.2.3' }] }]), []],
    ['name may be a DNS subdomain', endpoints([], 'web.v1'), []],
    ['name not a DNS subdomain', endpoints([], 'Web'), [`metadata.name: Invalid value: "Web": ${DNS1123_SUBDOMAIN}`]],
    ['subset without addresses', endpoints([{ ports: [{ port: 80 }] }]), ['subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`']],
    ['only notReadyAddresses', endpoints([{ notReadyAddresses: [{ ip: '10.1.2.3' }], ports: [{ port: 80 }] }]), []],
    [
      'unparsable ip reports twice, as upstream',
      endpoints([{ addresses: [{ ip: '10.1.2' }] }]),
      [`subsets[0].addresses[0].ip: Invalid value: "10.1.2": ${IP}`, 'subsets[0].addresses[0].ip: Invalid value: "10.1.2": must be a valid IP address'],
    ],
    [
      'loopback rejected with the kubeloop hint',
      endpoints([{ addresses: [{ ip: '127.0.0.1' }], notReadyAddresses: [{ ip: '::1' }] }]),
      [`subsets[0].addresses[0].ip: Invalid value: "127.0.0.1": ${LOOPBACK} ${HINT}`, `subsets[0].notReadyAddresses[0].ip: Invalid value: "::1": ${LOOPBACK} ${HINT}`],
    ],
    ['loopback allowed when the daemon allows it', endpoints([{ addresses: [{ ip: '127.244.0.7' }], ports: [{ port: 80 }] }]), [], true],
    [
      'other special ranges stay rejected when loopback is allowed',
      endpoints([{ addresses: [{ ip: '0.0.0.0' }, { ip: '169.254.0.9' }, { ip: '224.0.0.1' }] }]),
      [
        'subsets[0].addresses[0].ip: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)',
        'subsets[0].addresses[1].ip: Invalid value: "169.254.0.9": may not be in the link-local range (169.254.0.0/16, fe80::/10)',
        'subsets[0].addresses[2].ip: Invalid value: "224.0.0.1": may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)',
      ],
      true,
    ],
    [
      'hostname and nodeName',
      endpoints([{ addresses: [{ ip: '10.1.2.3', hostname: 'web.0', nodeName: 'Node_1' }] }]),
      ['subsets[0].addresses[0].hostname: Invalid value: "web.0": must not contain dots', `subsets[0].addresses[0].nodeName: Invalid value: "Node_1": ${DNS1123_SUBDOMAIN}`],
    ],
    ['nodeName may be an IP string', endpoints([{ addresses: [{ ip: '10.1.2.3', nodeName: '10.0.0.1' }] }]), []],
    [
      'two ports need names; names are DNS labels; no duplicate check',
      endpoints([{ addresses: [{ ip: '10.1.2.3' }], ports: [{ port: 80 }, { name: 'Web', port: 81 }, { name: 'x', port: 82 }, { name: 'x', port: 83 }] }]),
      ['subsets[0].ports[0].name: Required value', `subsets[0].ports[1].name: Invalid value: "Web": ${DNS1123_LABEL}`],
    ],
    [
      'port range, protocol, appProtocol',
      endpoints([{ addresses: [{ ip: '10.1.2.3' }], ports: [{ name: 'a', port: 0 }, { name: 'b', port: 80, protocol: 'ICMP' }, { name: 'c', port: 81, appProtocol: 'a/b/c' }] }]),
      [
        `subsets[0].ports[0].port: Invalid value: 0: ${RANGE}`,
        'subsets[0].ports[1].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"',
        "subsets[0].ports[2].appProtocol: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
      ],
    ],
  ];
  for (const [name, obj, want, allow] of table) t.strictSame(run(obj, { allowLoopbackEndpoints: allow }), want, name);
  t.strictSame(run(endpoints([{ addresses: [{ ip: '10.1.2.3' }], ports: [{ port: 80, protocol: undefined }] }]), { defaults: false }), ['subsets[0].ports[0].protocol: Required value'], 'protocol required without defaults');
  const old = endpoints([{ addresses: [{ ip: '10.1.2.3', nodeName: 'a' }] }]);
  t.strictSame(run(endpoints([{ addresses: [{ ip: '10.1.2.3', nodeName: 'b' }] }]), { old }), [], 'nodeName may change on update');
  t.strictSame(run(endpoints([], 'other'), { old }), ['metadata.name: Invalid value: "other": field is immutable'], 'name is immutable');
});

// ------------------------------------------------------------------------------- Pods

const pod = (spec: Rec, meta: Rec = {}): Rec => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'default', ...meta }, spec });
const ctr = (extra: Rec = {}): Rec => ({ name: 'app', image: 'node:20', ...extra });

t.test('Pod case table', async (t) => {
  const C0 = 'spec.containers[0]';
  const table: Array<[string, Rec, string[]]> = [
    ['minimal pod', pod({ containers: [ctr()] }), []],
    ['no containers', pod({ containers: [] }), ['spec.containers: Required value']],
    ['containers missing', pod({}), ['spec.containers: Required value']],
    ['name not a DNS subdomain', pod({ containers: [ctr()] }, { name: 'P_1' }), [`metadata.name: Invalid value: "P_1": ${DNS1123_SUBDOMAIN}`]],
    ['container without name and image', pod({ containers: [{}] }), [`${C0}.name: Required value`, `${C0}.image: Required value`]],
    ['container name not a DNS label', pod({ containers: [ctr({ name: 'App' })] }), [`${C0}.name: Invalid value: "App": ${DNS1123_LABEL}`]],
    ['duplicate container names', pod({ containers: [ctr(), ctr()] }), ['spec.containers[1].name: Duplicate value: "app"']],
    [
      'ports: number, name, duplicate name, protocol',
      pod({
        containers: [
          ctr({
            ports: [
              { containerPort: 0 },
              { containerPort: 70000, name: 'http' },
              { containerPort: 8080, name: 'http' },
              { containerPort: 8081, name: 'Web_1' },
              { containerPort: 8082, protocol: 'ICMP', hostPort: 99999 },
            ],
          }),
        ],
      }),
      [
        `${C0}.ports[0].containerPort: Required value`,
        `${C0}.ports[1].containerPort: Invalid value: 70000: ${RANGE}`,
        `${C0}.ports[2].name: Duplicate value: "http"`,
        `${C0}.ports[3].name: Invalid value: "Web_1": ${PORT_NAME_CHARS}`,
        `${C0}.ports[4].hostPort: Invalid value: 99999: ${RANGE}`,
        `${C0}.ports[4].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"`,
      ],
    ],
    [
      'hostPort conflict across containers',
      pod({ containers: [ctr({ ports: [{ containerPort: 80, hostPort: 8080 }] }), ctr({ name: 'b', ports: [{ containerPort: 81, hostPort: 8080 }] })] }),
      ['spec.containers[1].ports[0].hostPort: Duplicate value: "TCP//8080"'],
    ],
    [
      'env names and valueFrom',
      pod({
        containers: [
          ctr({
            env: [
              { name: '1BAD', value: 'x' },
              { name: 'GOOD.name-1', value: 'x' },
              { name: '..', value: 'x' },
              { name: 'A', valueFrom: {} },
              { name: 'B', value: 'v', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
              { name: 'C', valueFrom: { fieldRef: { fieldPath: 'metadata.name' }, configMapKeyRef: { name: 'cm', key: 'k' } } },
              { name: 'D', valueFrom: { fieldRef: { fieldPath: 'status.phase' } } },
              { name: 'E', valueFrom: { fieldRef: { fieldPath: 'spec.bogus' } } },
              { name: 'F', valueFrom: { secretKeyRef: { name: 's', key: '' } } },
              { name: 'G', valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } },
            ],
          }),
        ],
      }),
      [
        `${C0}.env[0].name: Invalid value: "1BAD": ${ENV_NAME}`,
        `${C0}.env[2].name: Invalid value: "..": must not be '..'`,
        `${C0}.env[3].valueFrom: Invalid value: "": must specify one of: \`fieldRef\`, \`resourceFieldRef\`, \`configMapKeyRef\` or \`secretKeyRef\``,
        `${C0}.env[4].valueFrom: Invalid value: "": may not be specified when \`value\` is not empty`,
        `${C0}.env[5].valueFrom: Invalid value: "": may not have more than one field specified at a time`,
        `${C0}.env[6].valueFrom.fieldRef.fieldPath: Unsupported value: "status.phase": supported values: "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"`,
        `${C0}.env[7].valueFrom.fieldRef.fieldPath: Invalid value: "spec.bogus": error converting fieldPath: field label not supported: spec.bogus`,
        `${C0}.env[8].valueFrom.secretKeyRef.key: Required value`,
      ],
    ],
    ['restartPolicy unsupported', pod({ containers: [ctr()], restartPolicy: 'Sometimes' }), ['spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"']],
    ['dnsPolicy unsupported', pod({ containers: [ctr()], dnsPolicy: 'Cluster' }), ['spec.dnsPolicy: Unsupported value: "Cluster": supported values: "ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"']],
    ['dnsPolicy None without dnsConfig', pod({ containers: [ctr()], dnsPolicy: 'None' }), ['spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None']],
    ['imagePullPolicy unsupported', pod({ containers: [ctr({ imagePullPolicy: 'Sometimes' })] }), [`${C0}.imagePullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never"`]],
    ['image with surrounding space (pods only)', pod({ containers: [ctr({ image: ' node ' })] }), [`${C0}.image: Invalid value: " node ": must not have leading or trailing whitespace`]],
    ['readiness probe without handler', pod({ containers: [ctr({ readinessProbe: {} })] }), [`${C0}.readinessProbe: Required value: must specify a handler type`]],
    [
      'probe with two handlers',
      pod({ containers: [ctr({ livenessProbe: { exec: { command: ['true'] }, tcpSocket: { port: 80 } } })] }),
      [`${C0}.livenessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type`],
    ],
    [
      'httpGet port name invalid and exec without command',
      pod({ containers: [ctr({ readinessProbe: { httpGet: { port: 'HTTP' } }, livenessProbe: { exec: {} } })] }),
      [
        `${C0}.livenessProbe.exec.command: Required value`,
        `${C0}.readinessProbe.httpGet.port: Invalid value: "HTTP": ${PORT_NAME_CHARS}`,
        `${C0}.readinessProbe.httpGet.port: Invalid value: "HTTP": must contain at least one letter (a-z)`,
      ],
    ],
    [
      'probe numbers',
      pod({ containers: [ctr({ livenessProbe: { tcpSocket: { port: 80 }, successThreshold: 2, periodSeconds: -1 }, readinessProbe: { grpc: { port: 0 }, terminationGracePeriodSeconds: 5 } })] }),
      [
        `${C0}.livenessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0`,
        `${C0}.livenessProbe.successThreshold: Invalid value: 2: must be 1`,
        `${C0}.readinessProbe.grpc.port: Invalid value: 0: ${RANGE}`,
        `${C0}.readinessProbe.terminationGracePeriodSeconds: Invalid value: 5: must not be set for readinessProbes`,
      ],
    ],
    [
      'readiness may have successThreshold > 1',
      pod({ containers: [ctr({ readinessProbe: { httpGet: { port: 8080 }, successThreshold: 3 } })] }),
      [],
    ],
    [
      'lifecycle sleep beyond the grace period',
      pod({ containers: [ctr({ lifecycle: { preStop: { sleep: { seconds: 60 } } } })] }),
      [`${C0}.lifecycle.preStop.sleep: Invalid value: 60: must be non-negative and less than terminationGracePeriodSeconds (30)`],
    ],
    [
      'volumes and mounts',
      pod({ volumes: [{ name: 'data' }, { name: 'data' }, { name: 'x', emptyDir: {}, configMap: { name: 'c' } }], containers: [ctr({ volumeMounts: [{ name: 'nope', mountPath: '/a' }, { name: 'data' }] })] }),
      [
        'spec.volumes[1].name: Duplicate value: "data"',
        'spec.volumes[2].configMap: Forbidden: may not specify more than 1 volume type',
        `${C0}.volumeMounts[0].name: Not found: "nope"`,
        `${C0}.volumeMounts[1].mountPath: Required value`,
      ],
    ],
    [
      'init containers',
      pod({ containers: [ctr()], initContainers: [ctr(), { name: 'init', image: 'x', readinessProbe: { exec: { command: ['true'] } }, restartPolicy: 'Never' }] }),
      [
        'spec.initContainers[0].name: Duplicate value: "app"',
        'spec.initContainers[1].restartPolicy: Unsupported value: "Never": supported values: "Always"',
        'spec.initContainers[1].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always',
      ],
    ],
    ['restartPolicy on a regular container', pod({ containers: [ctr({ restartPolicy: 'Always' })] }), [`${C0}.restartPolicy: Forbidden: may not be set for non-init containers`]],
    [
      'hostname, nodeName, activeDeadlineSeconds',
      pod({ containers: [ctr()], hostname: 'a.b', nodeName: 'Node_1', activeDeadlineSeconds: 0 }),
      [
        `spec.nodeName: Invalid value: "Node_1": ${DNS1123_SUBDOMAIN}`,
        'spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive',
        'spec.hostname: Invalid value: "a.b": must not contain dots',
      ],
    ],
  ];
  for (const [name, obj, want] of table) t.strictSame(run(obj), want, name);
  t.strictSame(
    run(pod({ containers: [{ name: 'app', image: 'x', terminationMessagePolicy: 'File' }], restartPolicy: 'Always', dnsPolicy: 'ClusterFirst' }), { defaults: false }),
    ['spec.terminationGracePeriodSeconds: Required value', `${C0}.imagePullPolicy: Required value`],
    'what defaulting fills is required',
  );
});

t.test('Pod updates may change only a few fields', async (t) => {
  const stored = (): Rec => {
    const p = pod({ containers: [ctr({ command: ['node', 'a.js'] })] });
    applyDefaults(p as KObject);
    return p;
  };
  const old = stored();
  const img = stored();
  ((img.spec as Rec).containers as Rec[])[0].image = 'node:22';
  (img.spec as Rec).activeDeadlineSeconds = 100;
  t.strictSame(run(img, { old }), [], 'image and activeDeadlineSeconds');
  const bound = stored();
  (bound.spec as Rec).nodeName = 'node-1';
  t.strictSame(run(bound, { old }), [], 'first nodeName (kubeloop binding)');
  const cmd = stored();
  ((cmd.spec as Rec).containers as Rec[])[0].command = ['node', 'b.js'];
  const errs = run(cmd, { old });
  t.equal(errs.length, 1);
  t.match(errs[0], /^spec: Forbidden: pod updates may not change fields other than `spec.containers\[\*\]\.image`,/);
  t.match(errs[0], /changed: spec\.containers/);
});

// ------------------------------------------------------------------------------- workloads

const tpl = (labels: Rec | undefined, spec: Rec = {}): Rec => ({ metadata: labels ? { labels } : {}, spec: { containers: [ctr()], ...spec } });
const deploy = (spec: Rec, meta: Rec = {}): Rec => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'web', namespace: 'default', ...meta },
  spec: { selector: { matchLabels: { app: 'web' } }, template: tpl({ app: 'web' }), ...spec },
});

t.test('Deployment case table', async (t) => {
  const SEL_MISMATCH = '`selector` does not match template `labels`';
  const table: Array<[string, Rec, string[]]> = [
    ['valid', deploy({}), []],
    ['negative replicas', deploy({ replicas: -1 }), ['spec.replicas: Invalid value: -1: must be greater than or equal to 0']],
    ['selector missing', deploy({ selector: undefined }), ['spec.selector: Required value', `spec.template.metadata.labels: Invalid value: {"app":"web"}: ${SEL_MISMATCH}`]],
    ['empty selector', deploy({ selector: {} }), ['spec.selector: Invalid value: {}: empty selector is invalid for deployment']],
    ['selector does not match', deploy({ template: tpl({ app: 'api' }) }), [`spec.template.metadata.labels: Invalid value: {"app":"api"}: ${SEL_MISMATCH}`]],
    [
      'bad selector expression',
      deploy({ selector: { matchExpressions: [{ key: 'app', operator: 'Is', values: ['web'] }] } }),
      [
        'spec.selector.matchExpressions[0].operator: Invalid value: "Is": not a valid selector operator',
        'spec.selector: Invalid value: {"matchExpressions":[{"key":"app","operator":"Is","values":["web"]}]}: invalid label selector',
      ],
    ],
    [
      'In without values',
      deploy({ selector: { matchExpressions: [{ key: 'app', operator: 'In' }] } }),
      [
        "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
        'spec.selector: Invalid value: {"matchExpressions":[{"key":"app","operator":"In"}]}: invalid label selector',
      ],
    ],
    ['matchExpressions selector', deploy({ selector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['web', 'api'] }] } }), []],
    ['restartPolicy Never', deploy({ template: tpl({ app: 'web' }, { restartPolicy: 'Never' }) }), ['spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"']],
    [
      'template pod spec errors are prefixed',
      deploy({ template: tpl({ app: 'web' }, { containers: [{ name: 'c', image: 'i', ports: [{ containerPort: 0 }] }] }) }),
      ['spec.template.spec.containers[0].ports[0].containerPort: Required value'],
    ],
    [
      'template labels are reported at spec.template.labels (upstream path)',
      deploy({ selector: { matchLabels: { app: 'web' } }, template: tpl({ app: 'web', 'bad key': 'x' }) }),
      [
        "spec.template.labels: Invalid value: \"bad key\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
      ],
    ],
    [
      'maxSurge and maxUnavailable both 0',
      deploy({ strategy: { rollingUpdate: { maxSurge: 0, maxUnavailable: 0 } } }),
      ['spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0'],
    ],
    [
      'percent forms',
      deploy({ strategy: { rollingUpdate: { maxSurge: 'lots', maxUnavailable: '150%' } } }),
      [
        "spec.strategy.rollingUpdate.maxSurge: Invalid value: \"lots\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
        'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "150%": must not be greater than 100%',
      ],
    ],
    ['negative maxSurge', deploy({ strategy: { rollingUpdate: { maxSurge: -1, maxUnavailable: 1 } } }), ['spec.strategy.rollingUpdate.maxSurge: Invalid value: -1: must be greater than or equal to 0']],
    ['Recreate with rollingUpdate', deploy({ strategy: { type: 'Recreate', rollingUpdate: {} } }), ["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"]],
    ['unknown strategy', deploy({ strategy: { type: 'BlueGreen' } }), ['spec.strategy: Unsupported value: {"type":"BlueGreen"}: supported values: "Recreate", "RollingUpdate"']],
    ['progressDeadlineSeconds not above minReadySeconds', deploy({ minReadySeconds: 700 }), ['spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds']],
    ['revisionHistoryLimit negative', deploy({ revisionHistoryLimit: -2 }), ['spec.revisionHistoryLimit: Invalid value: -2: must be greater than or equal to 0']],
  ];
  for (const [name, obj, want] of table) t.strictSame(run(obj), want, name);

  const old = deploy({});
  applyDefaults(old as KObject);
  t.strictSame(run(deploy({ replicas: 5 }), { old }), [], 'scaling is an allowed update');
  t.strictSame(
    run(deploy({ selector: { matchLabels: { app: 'web', tier: 'fe' } }, template: tpl({ app: 'web', tier: 'fe' }) }), { old }),
    ['spec.selector: Invalid value: {"matchLabels":{"app":"web","tier":"fe"}}: field is immutable'],
    'selector is immutable in apps/v1',
  );
});

t.test('ReplicaSet, ReplicationController, StatefulSet, DaemonSet, Job, CronJob', async (t) => {
  const rs = (spec: Rec): Rec => ({ apiVersion: 'apps/v1', kind: 'ReplicaSet', metadata: { name: 'web-1', namespace: 'default' }, spec });
  const rc = (spec: Rec): Rec => ({ apiVersion: 'v1', kind: 'ReplicationController', metadata: { name: 'web', namespace: 'default' }, spec });
  const sts = (spec: Rec, name = 'db'): Rec => ({ apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name, namespace: 'default' }, spec });
  const ds = (spec: Rec): Rec => ({ apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'agent', namespace: 'default' }, spec });
  const job = (spec: Rec): Rec => ({ apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'once', namespace: 'default' }, spec });
  const sel = { matchLabels: { app: 'x' } };
  const table: Array<[string, Rec, string[]]> = [
    ['ReplicaSet valid', rs({ selector: sel, template: tpl({ app: 'x' }) }), []],
    ['ReplicaSet empty selector (upstream says deployment)', rs({ selector: {}, template: tpl({ app: 'x' }) }), ['spec.selector: Invalid value: {}: empty selector is invalid for deployment']],
    ['ReplicaSet activeDeadlineSeconds', rs({ selector: sel, template: tpl({ app: 'x' }, { activeDeadlineSeconds: 10 }) }), ['spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported']],
    ['RC selector defaulted from template labels', rc({ template: tpl({ app: 'x' }) }), []],
    ['RC without template', rc({ selector: { app: 'x' } }), ['spec.template: Required value']],
    ['RC without selector or labels', rc({ template: tpl(undefined) }), ['spec.selector: Required value']],
    ['RC mismatch', rc({ selector: { app: 'y' }, template: tpl({ app: 'x' }) }), ['spec.template.metadata.labels: Invalid value: {"app":"x"}: `selector` does not match template `labels`']],
    ['StatefulSet valid', sts({ selector: sel, serviceName: 'db', template: tpl({ app: 'x' }) }), []],
    ['StatefulSet name must be a DNS label', sts({ selector: sel, template: tpl({ app: 'x' }) }, 'db.v1'), ['metadata.name: Invalid value: "db.v1": must not contain dots']],
    ['StatefulSet podManagementPolicy', sts({ selector: sel, template: tpl({ app: 'x' }), podManagementPolicy: 'Fast' }), ['spec.podManagementPolicy: Invalid value: "Fast": must be \'OrderedReady\' or \'Parallel\'']],
    ['StatefulSet template pod spec is not validated (upstream TODO)', sts({ selector: sel, template: tpl({ app: 'x' }, { containers: [] }) }), []],
    ['DaemonSet valid', ds({ selector: sel, template: tpl({ app: 'x' }) }), []],
    [
      'DaemonSet both maxSurge and maxUnavailable',
      ds({ selector: sel, template: tpl({ app: 'x' }), updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 1 } } }),
      ['spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero'],
    ],
    ['Job valid', job({ template: tpl(undefined, { restartPolicy: 'Never' }) }), []],
    ['Job with the default restartPolicy', job({ template: tpl(undefined) }), ['spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"']],
    ['CronJob without schedule', { apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'c', namespace: 'default' }, spec: { jobTemplate: { spec: { template: tpl(undefined, { restartPolicy: 'OnFailure' }) } } } }, ['spec.schedule: Required value']],
  ];
  for (const [name, obj, want] of table) t.strictSame(run(obj), want, name);

  const old = sts({ selector: sel, serviceName: 'db', template: tpl({ app: 'x' }) });
  applyDefaults(old as KObject);
  t.strictSame(run(sts({ selector: sel, serviceName: 'db', template: tpl({ app: 'x' }), replicas: 3 }), { old }), [], 'StatefulSet replicas may change');
  t.strictSame(
    run(sts({ selector: sel, serviceName: 'db2', template: tpl({ app: 'x' }) }), { old }),
    ["spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"],
    'StatefulSet serviceName may not change',
  );
});

// ------------------------------------------------------------------------------- metadata-only kinds

t.test('Namespaces and kinds validated by metadata only', async (t) => {
  const ns = (name: string, extra: Rec = {}): Rec => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, ...extra } });
  t.strictSame(run(ns('team-a')), [], 'valid namespace');
  t.strictSame(run(ns('team.a')), ['metadata.name: Invalid value: "team.a": must not contain dots'], 'namespace name is a DNS label');
  t.strictSame(run(ns('x', { namespace: 'default' })), ['metadata.namespace: Forbidden: not allowed on this type'], 'cluster-scoped');
  t.strictSame(run(ns('x'), { old: ns('y') }), ['metadata.name: Invalid value: "x": field is immutable'], 'name immutable');
  const cm = (meta: Rec): Rec => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'default', ...meta }, data: { a: 'b' } });
  t.strictSame(run(cm({ name: 'cfg.v1' })), [], 'ConfigMap name is a DNS subdomain');
  t.strictSame(run(cm({})), ['metadata.name: Required value: name or generateName is required'], 'name required');
  t.strictSame(run(cm({ name: 'c', finalizers: ['custom'] })), ['metadata.finalizers[0]: Invalid value: "custom": name is neither a standard finalizer name nor is it fully qualified'], 'finalizer names');
  t.strictSame(run({ kind: 'Widget', metadata: { name: 'W', namespace: 'default' } }), [`metadata.name: Invalid value: "W": ${DNS1123_SUBDOMAIN}`], 'unknown kind');
  t.doesNotThrow(() => run({} as Rec));
  t.doesNotThrow(() => run({ kind: 'Pod', spec: { containers: 'x' } }));
  t.doesNotThrow(() => run({ kind: 'Deployment', spec: { template: 5, selector: 'x', strategy: [] } }));
  t.doesNotThrow(() => run({ kind: 'Endpoints', subsets: [{ addresses: 'x', ports: [5] }] }));
});
