/**
 * Defaults as upstream's SetDefaults_* (core/v1, apps/v1, batch/v1) plus the registry steps
 * kubeloop runs before validation: input manifest → whole defaulted object.
 */
import t from 'tap';
import { applyDefaults, prepareServiceUpdate, prepareUpdate } from '../../src/api/defaults.js';
import type { KObject } from '../../src/api/types.js';

type Rec = Record<string, unknown>;

const defaulted = <T>(o: T): T => {
  const c = structuredClone(o);
  applyDefaults(c as KObject);
  return c;
};
const svc = (spec: Rec): Rec => ({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec });

t.test('Service defaults', async (t) => {
  t.strictSame(
    defaulted(svc({ selector: { app: 'web' }, ports: [{ port: 80 }] })),
    svc({
      selector: { app: 'web' },
      ports: [{ port: 80, protocol: 'TCP', targetPort: 80 }],
      sessionAffinity: 'None',
      type: 'ClusterIP',
      internalTrafficPolicy: 'Cluster',
      ipFamilyPolicy: 'SingleStack',
      ipFamilies: ['IPv4'],
    }),
    'ClusterIP: everything SetDefaults_Service and IP family init give',
  );
  t.notOk('namespace' in (defaulted(svc({})).metadata as Rec), 'metadata.namespace is left to the store');

  const np = defaulted(svc({ type: 'NodePort', ports: [{ port: 80, targetPort: 'http' }] })).spec as Rec;
  t.equal(np.externalTrafficPolicy, 'Cluster', 'NodePort is externally accessible');
  t.equal(np.internalTrafficPolicy, 'Cluster');
  t.strictSame(np.ports, [{ port: 80, targetPort: 'http', protocol: 'TCP' }], 'named targetPort kept');
  t.notOk('allocateLoadBalancerNodePorts' in np);

  const lb = defaulted(svc({ type: 'LoadBalancer', ports: [{ port: 443, protocol: 'UDP', targetPort: 0 }] })).spec as Rec;
  t.equal(lb.allocateLoadBalancerNodePorts, true);
  t.equal(lb.externalTrafficPolicy, 'Cluster');
  t.strictSame(lb.ports, [{ port: 443, protocol: 'UDP', targetPort: 443 }], 'targetPort 0 becomes port');

  const eip = defaulted(svc({ externalIPs: ['203.0.113.9'], ports: [{ port: 80, targetPort: '' }] })).spec as Rec;
  t.equal(eip.externalTrafficPolicy, 'Cluster', 'ClusterIP with externalIPs is externally accessible');
  t.equal((eip.ports as Rec[])[0].targetPort, 80, 'empty targetPort becomes port');

  t.strictSame(
    defaulted(svc({ type: 'ExternalName', externalName: 'db.example.com' })).spec,
    { type: 'ExternalName', externalName: 'db.example.com', sessionAffinity: 'None' },
    'ExternalName: no traffic policies, no IP families',
  );

  const aff = defaulted(svc({ sessionAffinity: 'ClientIP', ports: [{ port: 80 }] })).spec as Rec;
  t.strictSame(aff.sessionAffinityConfig, { clientIP: { timeoutSeconds: 10800 } }, 'ClientIP timeout defaults to 3 hours');
  const aff2 = defaulted(svc({ sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } })).spec as Rec;
  t.strictSame(aff2.sessionAffinityConfig, { clientIP: { timeoutSeconds: 60 } }, 'explicit timeout kept');
  const none = defaulted(svc({ sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } })).spec as Rec;
  t.notOk('sessionAffinityConfig' in none, 'None drops the config');

  const fixed = defaulted(svc({ clusterIP: '127.96.0.5' })).spec as Rec;
  t.strictSame(fixed.clusterIPs, ['127.96.0.5'], 'clusterIPs follows a lone clusterIP');
  t.strictSame(defaulted(svc({ clusterIP: 'fd00::5' })).spec, { clusterIP: 'fd00::5', clusterIPs: ['fd00::5'], sessionAffinity: 'None', type: 'ClusterIP', internalTrafficPolicy: 'Cluster', ipFamilyPolicy: 'SingleStack', ipFamilies: ['IPv6'] });
  t.equal((defaulted(svc({ clusterIP: 'None' })).spec as Rec).ipFamilyPolicy, 'RequireDualStack', 'headless without selector');
  t.equal((defaulted(svc({ clusterIP: 'None', selector: { a: 'b' } })).spec as Rec).ipFamilyPolicy, 'SingleStack', 'headless with selector');
  t.strictSame((defaulted(svc({ ipFamilies: ['IPv6'], ipFamilyPolicy: 'PreferDualStack' })).spec as Rec).ipFamilies, ['IPv6'], 'explicit families kept');
});

t.test('Endpoints defaults', async (t) => {
  const ep = defaulted({ kind: 'Endpoints', subsets: [{ addresses: [{ ip: '10.0.0.1' }], ports: [{ port: 80 }, { port: 53, protocol: 'UDP' }] }] });
  t.strictSame(ep.subsets[0].ports, [{ port: 80, protocol: 'TCP' }, { port: 53, protocol: 'UDP' }]);
});

t.test('Pod defaults', async (t) => {
  const pod = defaulted({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p' },
    spec: {
      volumes: [{ name: 'scratch' }, { name: 'cfg', configMap: { name: 'c' } }],
      containers: [
        {
          name: 'app',
          image: 'node:20',
          ports: [{ containerPort: 8080 }],
          env: [{ name: 'POD', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
          resources: { limits: { cpu: '1' } },
          readinessProbe: { httpGet: { port: 8080 } },
          livenessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 5 },
          lifecycle: { preStop: { httpGet: { port: 8080, path: '/quit' } } },
        },
      ],
    },
  });
  t.strictSame(pod.spec, {
    volumes: [{ name: 'scratch', emptyDir: {} }, { name: 'cfg', configMap: { name: 'c', defaultMode: 420 } }],
    containers: [
      {
        name: 'app',
        image: 'node:20',
        ports: [{ containerPort: 8080, protocol: 'TCP' }],
        env: [{ name: 'POD', valueFrom: { fieldRef: { fieldPath: 'metadata.name', apiVersion: 'v1' } } }],
        resources: { limits: { cpu: '1' }, requests: { cpu: '1' } },
        readinessProbe: { httpGet: { port: 8080, path: '/', scheme: 'HTTP' }, timeoutSeconds: 1, periodSeconds: 10, successThreshold: 1, failureThreshold: 3 },
        livenessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 5, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3 },
        lifecycle: { preStop: { httpGet: { port: 8080, path: '/quit', scheme: 'HTTP' } } },
        imagePullPolicy: 'IfNotPresent',
        terminationMessagePath: '/dev/termination-log',
        terminationMessagePolicy: 'File',
      },
    ],
    enableServiceLinks: true,
    dnsPolicy: 'ClusterFirst',
    restartPolicy: 'Always',
    securityContext: {},
    terminationGracePeriodSeconds: 30,
    schedulerName: 'default-scheduler',
  });

  const pullPolicy = (image: string): unknown =>
    (defaulted({ kind: 'Pod', spec: { containers: [{ name: 'a', image }] } }).spec.containers[0] as Rec).imagePullPolicy;
  const table: Array<[string, string]> = [
    ['nginx', 'Always'],
    ['nginx:latest', 'Always'],
    ['nginx:1.25', 'IfNotPresent'],
    ['nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef', 'IfNotPresent'],
    ['nginx:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef', 'Always'],
    ['localhost:5000/app', 'Always'],
    ['localhost:5000/app:v1', 'IfNotPresent'],
  ];
  for (const [image, want] of table) t.equal(pullPolicy(image), want, `imagePullPolicy for ${image}`);

  const hostNet = defaulted({ kind: 'Pod', spec: { hostNetwork: true, containers: [{ name: 'a', image: 'x', ports: [{ containerPort: 9000 }] }] } });
  t.strictSame(hostNet.spec.containers[0].ports, [{ containerPort: 9000, protocol: 'TCP', hostPort: 9000 }], 'hostNetwork: hostPort = containerPort');
  const explicit = defaulted({ kind: 'Pod', spec: { restartPolicy: 'Never', dnsPolicy: 'Default', terminationGracePeriodSeconds: 0, containers: [] } });
  t.strictSame([explicit.spec.restartPolicy, explicit.spec.dnsPolicy, explicit.spec.terminationGracePeriodSeconds], ['Never', 'Default', 0], 'explicit values kept');
});

t.test('workload defaults', async (t) => {
  const template = { metadata: { labels: { app: 'x' } }, spec: { containers: [{ name: 'a', image: 'x:1' }] } };
  const podSpecDefaults = {
    containers: [{ name: 'a', image: 'x:1', imagePullPolicy: 'IfNotPresent', terminationMessagePath: '/dev/termination-log', terminationMessagePolicy: 'File' }],
    dnsPolicy: 'ClusterFirst',
    restartPolicy: 'Always',
    securityContext: {},
    terminationGracePeriodSeconds: 30,
    schedulerName: 'default-scheduler',
  };
  const tplDefaulted = { metadata: { labels: { app: 'x' } }, spec: podSpecDefaults };

  t.strictSame(defaulted({ kind: 'Deployment', spec: { selector: { matchLabels: { app: 'x' } }, template } }).spec, {
    selector: { matchLabels: { app: 'x' } },
    template: tplDefaulted,
    replicas: 1,
    strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '25%', maxSurge: '25%' } },
    revisionHistoryLimit: 10,
    progressDeadlineSeconds: 600,
  }, 'Deployment (templates get no enableServiceLinks: that is SetDefaults_Pod only)');
  t.strictSame(defaulted({ kind: 'Deployment', spec: { replicas: 0, strategy: { type: 'Recreate' } } }).spec.strategy, { type: 'Recreate' }, 'Recreate gets no rollingUpdate');
  t.equal(defaulted({ kind: 'Deployment', spec: { replicas: 0 } }).spec.replicas, 0, 'replicas 0 kept');

  t.strictSame(defaulted({ kind: 'ReplicaSet', spec: { template } }).spec, { template: tplDefaulted, replicas: 1 }, 'ReplicaSet: no selector defaulting in apps/v1');

  const rc = defaulted({ kind: 'ReplicationController', metadata: { name: 'r' }, spec: { template } });
  t.strictSame(rc.spec, { template: tplDefaulted, selector: { app: 'x' }, replicas: 1 }, 'RC selector from template labels');
  t.strictSame(rc.metadata, { name: 'r', labels: { app: 'x' } }, 'RC labels from template labels');
  t.strictSame(defaulted({ kind: 'ReplicationController', metadata: { labels: { own: 'y' } }, spec: { selector: { s: 't' }, template } }).spec.selector, { s: 't' }, 'explicit RC selector kept');

  t.strictSame(defaulted({ kind: 'StatefulSet', spec: { template } }).spec, {
    template: tplDefaulted,
    podManagementPolicy: 'OrderedReady',
    updateStrategy: { type: 'RollingUpdate', rollingUpdate: { partition: 0 } },
    persistentVolumeClaimRetentionPolicy: { whenDeleted: 'Retain', whenScaled: 'Retain' },
    replicas: 1,
    revisionHistoryLimit: 10,
  });
  t.strictSame(defaulted({ kind: 'DaemonSet', spec: { template } }).spec, {
    template: tplDefaulted,
    updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } },
    revisionHistoryLimit: 10,
  });

  const job: Rec = defaulted({ kind: 'Job', metadata: { name: 'j' }, spec: { template } });
  t.strictSame(job.spec as Rec, {
    template: tplDefaulted,
    completions: 1,
    parallelism: 1,
    backoffLimit: 6,
    completionMode: 'NonIndexed',
    suspend: false,
    podReplacementPolicy: 'TerminatingOrFailed',
  });
  t.strictSame((job.metadata as Rec).labels, { app: 'x' }, 'Job labels from template labels');
  t.strictSame((defaulted({ kind: 'Job', spec: { completions: 5 } }).spec as Rec).parallelism, 1, 'parallelism 1 when only completions given');
  t.notOk('completions' in defaulted({ kind: 'Job', spec: { parallelism: 3 } }).spec, 'completions stays unset when parallelism given');

  const cj = defaulted({ kind: 'CronJob', spec: { schedule: '* * * * *', jobTemplate: { spec: { template } } } });
  t.strictSame(cj.spec, {
    schedule: '* * * * *',
    jobTemplate: { spec: { template: tplDefaulted } },
    concurrencyPolicy: 'Allow',
    suspend: false,
    successfulJobsHistoryLimit: 3,
    failedJobsHistoryLimit: 1,
  }, 'CronJob: the job template is not Job-defaulted, its pod template is');
});

t.test('Namespace, unknown kinds, idempotence, malformed input', async (t) => {
  t.strictSame(defaulted({ kind: 'Namespace', metadata: { name: 'team-a' } }).metadata, { name: 'team-a', labels: { 'kubernetes.io/metadata.name': 'team-a' } });
  t.notOk('status' in defaulted({ kind: 'Namespace', metadata: { name: 'a' } }), 'namespace status is the store\'s');
  const cm = { kind: 'ConfigMap', metadata: { name: 'c' }, data: { a: 'b' } };
  t.strictSame(defaulted(cm), cm, 'unknown kinds untouched');
  for (const o of [
    svc({ ports: [{ port: 80 }], type: 'LoadBalancer', sessionAffinity: 'ClientIP' }),
    { kind: 'Deployment', spec: {} },
    { kind: 'Pod', spec: { containers: [{ name: 'a', image: 'b', livenessProbe: { exec: { command: ['x'] } } }] } },
  ]) {
    const once = defaulted(o);
    t.strictSame(defaulted(once), once, `idempotent for ${o.kind}`);
  }
  for (const o of [{}, { kind: 'Service', spec: 5 }, { kind: 'Service', spec: { ports: 'x' } }, { kind: 'Pod', spec: { containers: [1, null] } }, { kind: 'Deployment', spec: { strategy: 7, template: [] } }]) {
    t.doesNotThrow(() => applyDefaults(o as KObject), JSON.stringify(o));
  }
});

t.test('prepareServiceUpdate (registry steps before update validation)', async (t) => {
  const stored = (spec: Rec): Rec => defaulted(svc(spec));
  const prepared = (old: Rec, change: Rec): Rec => {
    const next = structuredClone(old);
    Object.assign(next.spec as Rec, change);
    for (const [k, v] of Object.entries(change)) if (v === undefined) delete (next.spec as Rec)[k];
    applyDefaults(next as KObject);
    prepareUpdate(next as KObject, old as KObject);
    return next.spec as Rec;
  };
  const cip = stored({ clusterIP: '127.96.0.10', ports: [{ port: 80 }] });
  let s = prepared(cip, { clusterIP: undefined, clusterIPs: undefined });
  t.strictSame([s.clusterIP, s.clusterIPs], ['127.96.0.10', ['127.96.0.10']], 'allocated clusterIP kept when omitted');
  s = prepared(cip, { clusterIP: '127.96.0.11' });
  t.strictSame(s.clusterIPs, ['127.96.0.11'], 'clusterIPs follows a changed clusterIP (validation then rejects it)');
  s = prepared(cip, { type: 'ExternalName', externalName: 'db.example.com' });
  t.strictSame([s.clusterIP, s.clusterIPs, s.ipFamilies, s.ipFamilyPolicy], [undefined, undefined, undefined, undefined], 'leaving ClusterIP drops IP fields');

  const np = stored({ type: 'NodePort', clusterIP: '127.96.0.12', ports: [{ name: 'http', port: 80, nodePort: 30080 }, { name: 'dns', port: 53, protocol: 'UDP', nodePort: 30053 }] });
  s = prepared(np, { ports: [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }] });
  t.strictSame((s.ports as Rec[]).map((p) => p.nodePort), [30080, 30053], 'nodePorts kept by port name when omitted');
  s = prepared(np, { type: 'ClusterIP' });
  t.strictSame([(s.ports as Rec[]).map((p) => p.nodePort), s.externalTrafficPolicy], [[undefined, undefined], undefined], 'leaving NodePort drops nodePorts and externalTrafficPolicy');

  const lbs = stored({ type: 'LoadBalancer', clusterIP: '127.96.0.13', externalTrafficPolicy: 'Local', healthCheckNodePort: 30300, loadBalancerClass: 'example.com/x', ports: [{ port: 80, nodePort: 30081 }] });
  s = prepared(lbs, { healthCheckNodePort: undefined });
  t.equal(s.healthCheckNodePort, 30300, 'healthCheckNodePort kept when omitted');
  s = prepared(lbs, { type: 'NodePort' });
  t.strictSame([s.allocateLoadBalancerNodePorts, s.loadBalancerClass, s.healthCheckNodePort, s.externalTrafficPolicy], [undefined, undefined, undefined, 'Local'], 'leaving LoadBalancer drops LB-only fields');

  const again = structuredClone(np);
  prepareServiceUpdate(again as KObject, np as KObject);
  t.strictSame(again, np, 'no change, no effect');
});

t.test('Secret type defaults to Opaque', async (t) => {
  const s = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 's' }, data: {} } as KObject & { type?: string };
  applyDefaults(s);
  t.equal(s.type, 'Opaque');
  const typed = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 't' }, type: 'kubernetes.io/tls' } as KObject & { type?: string };
  applyDefaults(typed);
  t.equal(typed.type, 'kubernetes.io/tls');
});
