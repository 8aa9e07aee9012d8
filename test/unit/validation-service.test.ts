/**
 * Service validation case table: every rule of reference §3.2 (names) and §3.3 items 1-19,
 * the update rules of §3.4 and the status rules, each with the exact upstream-formatted
 * messages (field path, error type, value, detail). An empty `want` is a case that must pass.
 */
import t from 'tap';
import { applyDefaults } from '../../src/api/defaults.js';
import { formatFieldError } from '../../src/api/field.js';
import type { KObject } from '../../src/api/types.js';
import { validateObject, validateServiceStatus } from '../../src/api/validation/index.js';

type Rec = Record<string, unknown>;

interface Case {
  /** reference rule: `3.2`, `3.3.5`, ... */
  rule: string;
  name: string;
  /** keys replacing those of the base spec (`undefined` deletes) */
  spec?: Rec;
  /** keys replacing those of the base metadata (`undefined` deletes) */
  meta?: Rec;
  /**
   * Apply the patch to the already-defaulted base and skip defaulting: for rules that
   * defaulting makes unreachable (upstream tests the internal object the same way).
   */
  afterDefaults?: boolean;
  want: string[];
}

const DNS1035 =
  "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_LABEL =
  "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const QNAME_NAME_PART =
  "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const QNAME_TOO_MANY_SLASHES =
  "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
const LABEL_VALUE =
  "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const IP = 'must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)';
const CIDR = 'must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)';
const LB_ONLY = "may only be used when `type` is 'LoadBalancer'";
const SRC_ANN = 'service.beta.kubernetes.io/load-balancer-source-ranges';
const LOOPBACK = 'may not be in the loopback range (127.0.0.0/8, ::1/128) (kubeloop: start the daemon with --allow-loopback-endpoints to allow loopback externalIPs)';

const base = (): Rec => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: 'web', namespace: 'default' },
  spec: { selector: { app: 'web' }, ports: [{ port: 80 }] },
});

function patch(into: Rec, p: Rec | undefined): void {
  for (const [k, v] of Object.entries(p ?? {})) {
    if (v === undefined) delete into[k];
    else into[k] = structuredClone(v);
  }
}

function build(c: Pick<Case, 'spec' | 'meta' | 'afterDefaults'>): Rec {
  const o = base();
  if (c.afterDefaults) applyDefaults(o as KObject);
  patch(o.metadata as Rec, c.meta);
  patch(o.spec as Rec, c.spec);
  if (!c.afterDefaults) applyDefaults(o as KObject);
  return o;
}

const check = (o: Rec, old?: Rec): string[] => validateObject(o as KObject, old as KObject | undefined).map(formatFieldError);

const nodePortSpec = (ports: Rec[]): Rec => ({ type: 'NodePort', ports });
const lb = (extra: Rec = {}): Rec => ({ type: 'LoadBalancer', ...extra });

const cases: Case[] = [
  // ---- 3.2 names and 3.3.1 ObjectMeta
  { rule: '3.2', name: 'a valid ClusterIP service', want: [] },
  { rule: '3.2', name: 'name with upper case and underscore', meta: { name: 'Web_1' }, want: [`metadata.name: Invalid value: "Web_1": ${DNS1035}`] },
  { rule: '3.2', name: 'name starting with a digit (DNS-1123 ok, DNS-1035 not)', meta: { name: '1web' }, want: [`metadata.name: Invalid value: "1web": ${DNS1035}`] },
  { rule: '3.2', name: 'name longer than 63', meta: { name: 'a'.repeat(64) }, want: [`metadata.name: Invalid value: "${'a'.repeat(64)}": must be no more than 63 characters`] },
  { rule: '3.2', name: 'name with a dot', meta: { name: 'web.v1' }, want: [`metadata.name: Invalid value: "web.v1": ${DNS1035}`] },
  { rule: '3.2', name: 'name missing', meta: { name: undefined }, want: ['metadata.name: Required value: name or generateName is required'] },
  { rule: '3.2', name: 'generateName instead of name', meta: { name: undefined, generateName: 'web-' }, want: [] },
  { rule: '3.2', name: 'generateName invalid', meta: { name: undefined, generateName: 'Web-' }, want: [`metadata.generateName: Invalid value: "Web-": ${DNS1035}`] },
  { rule: '3.2', name: 'namespace missing', meta: { namespace: undefined }, want: ['metadata.namespace: Required value'] },
  { rule: '3.2', name: 'namespace not a DNS label', meta: { namespace: 'my.ns' }, want: ['metadata.namespace: Invalid value: "my.ns": must not contain dots'] },
  { rule: '3.3.1', name: 'label key invalid', meta: { labels: { '-app': 'x' } }, want: [`metadata.labels: Invalid value: "-app": ${QNAME_NAME_PART}`] },
  { rule: '3.3.1', name: 'label key with two slashes', meta: { labels: { 'a/b/c': 'x' } }, want: [`metadata.labels: Invalid value: "a/b/c": ${QNAME_TOO_MANY_SLASHES}`] },
  { rule: '3.3.1', name: 'label key empty prefix', meta: { labels: { '/app': 'x' } }, want: ['metadata.labels: Invalid value: "/app": prefix part must be non-empty'] },
  { rule: '3.3.1', name: 'label value invalid', meta: { labels: { app: 'a b' } }, want: [`metadata.labels: Invalid value: "a b": ${LABEL_VALUE}`] },
  { rule: '3.3.1', name: 'annotation key invalid', meta: { annotations: { 'bad key': 'x' } }, want: [`metadata.annotations: Invalid value: "bad key": ${QNAME_NAME_PART}`] },
  { rule: '3.3.1', name: 'annotation key upper case is fine', meta: { annotations: { 'Example.com/Key': 'x' } }, want: [] },
  { rule: '3.3.1', name: 'annotations over 256 KiB', meta: { annotations: { big: 'x'.repeat(256 * 1024) } }, want: ['metadata.annotations: Too long: must have at most 262144 bytes'] },

  // ---- 3.3.2 topology annotations
  {
    rule: '3.3.2',
    name: 'topology-mode and topology-aware-hints differ',
    meta: { annotations: { 'service.kubernetes.io/topology-mode': 'Auto', 'service.kubernetes.io/topology-aware-hints': 'Disabled' } },
    want: [
      'metadata.annotations[service.kubernetes.io/topology-mode]: Invalid value: "Auto": must match annotations[service.kubernetes.io/topology-aware-hints] when both are specified',
    ],
  },
  {
    rule: '3.3.2',
    name: 'topology annotations equal',
    meta: { annotations: { 'service.kubernetes.io/topology-mode': 'Auto', 'service.kubernetes.io/topology-aware-hints': 'Auto' } },
    want: [],
  },

  // ---- 3.3.3 ports required
  { rule: '3.3.3', name: 'no ports', spec: { ports: [] }, want: ['spec.ports: Required value'] },
  { rule: '3.3.3', name: 'headless without ports', spec: { ports: [], clusterIP: 'None' }, want: [] },
  { rule: '3.3.3', name: 'ExternalName without ports', spec: { ports: undefined, selector: undefined, type: 'ExternalName', externalName: 'db.example.com' }, want: [] },

  // ---- 3.3.4 type-specific
  { rule: '3.3.4', name: 'LoadBalancer headless', spec: lb({ clusterIP: 'None' }), want: ['spec.clusterIPs[0]: Invalid value: "None": may not be set to \'None\' for LoadBalancer services'] },
  { rule: '3.3.4', name: 'NodePort headless', spec: { type: 'NodePort', clusterIP: 'None' }, want: ['spec.clusterIPs[0]: Invalid value: "None": may not be set to \'None\' for NodePort services'] },
  {
    rule: '3.3.4',
    name: 'ExternalName with clusterIP',
    spec: { type: 'ExternalName', externalName: 'db.example.com', clusterIP: '10.0.0.10' },
    want: ['spec.clusterIPs: Forbidden: may not be set for ExternalName services'],
  },
  {
    rule: '3.3.4',
    name: 'ExternalName with ipFamilies and ipFamilyPolicy',
    spec: { type: 'ExternalName', externalName: 'db.example.com', ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack' },
    want: ['spec.ipFamilies: Forbidden: may not be set for ExternalName services', 'spec.ipFamilyPolicy: Forbidden: may not be set for ExternalName services'],
  },
  { rule: '3.3.4', name: 'ExternalName without externalName', spec: { type: 'ExternalName' }, want: ['spec.externalName: Required value'] },
  { rule: '3.3.4', name: 'ExternalName just a dot', spec: { type: 'ExternalName', externalName: '.' }, want: ['spec.externalName: Required value'] },
  {
    rule: '3.3.4',
    name: 'ExternalName not a DNS subdomain',
    spec: { type: 'ExternalName', externalName: 'DB_host' },
    want: [`spec.externalName: Invalid value: "DB_host": ${DNS1123_SUBDOMAIN}`],
  },
  { rule: '3.3.4', name: 'ExternalName fully qualified (one trailing dot)', spec: { type: 'ExternalName', externalName: 'db.example.com.' }, want: [] },

  // ---- 3.3.5 ports
  {
    rule: '3.3.5',
    name: 'two ports, one unnamed',
    spec: { ports: [{ port: 80, name: 'http' }, { port: 443 }] },
    want: ['spec.ports[1].name: Required value'],
  },
  { rule: '3.3.5', name: 'single unnamed port is fine', want: [] },
  { rule: '3.3.5', name: 'port name not a DNS label', spec: { ports: [{ port: 80, name: 'HTTP' }] }, want: [`spec.ports[0].name: Invalid value: "HTTP": ${DNS1123_LABEL}`] },
  {
    rule: '3.3.5',
    name: 'duplicate port names',
    spec: { ports: [{ port: 80, name: 'http' }, { port: 81, name: 'http' }] },
    want: ['spec.ports[1].name: Duplicate value: "http"'],
  },
  {
    rule: '3.3.5',
    name: 'port 0 (targetPort defaults to it)',
    spec: { ports: [{ port: 0 }] },
    want: ['spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive', 'spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive'],
  },
  {
    rule: '3.3.5',
    name: 'port 65536',
    spec: { ports: [{ port: 65536, targetPort: 8080 }] },
    want: ['spec.ports[0].port: Invalid value: 65536: must be between 1 and 65535, inclusive'],
  },
  { rule: '3.3.5', name: 'protocol missing (no defaults)', afterDefaults: true, spec: { ports: [{ port: 80, targetPort: 80 }] }, want: ['spec.ports[0].protocol: Required value'] },
  {
    rule: '3.3.5',
    name: 'protocol unsupported',
    spec: { ports: [{ port: 80, protocol: 'ICMP' }] },
    want: ['spec.ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"'],
  },
  { rule: '3.3.5', name: 'SCTP and UDP are supported', spec: { ports: [{ port: 80, name: 'a', protocol: 'SCTP' }, { port: 80, name: 'b', protocol: 'UDP' }] }, want: [] },
  {
    rule: '3.3.5',
    name: 'targetPort number out of range',
    spec: { ports: [{ port: 80, targetPort: 70000 }] },
    want: ['spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive'],
  },
  { rule: '3.3.5', name: 'targetPort named', spec: { ports: [{ port: 80, targetPort: 'http-web' }] }, want: [] },
  {
    rule: '3.3.5',
    name: 'targetPort name breaking every IANA_SVC_NAME rule',
    spec: { ports: [{ port: 80, targetPort: '-Web--port-too-long' }] },
    want: [
      'spec.ports[0].targetPort: Invalid value: "-Web--port-too-long": must be no more than 15 characters',
      'spec.ports[0].targetPort: Invalid value: "-Web--port-too-long": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)',
      'spec.ports[0].targetPort: Invalid value: "-Web--port-too-long": must not contain consecutive hyphens',
      'spec.ports[0].targetPort: Invalid value: "-Web--port-too-long": must not begin or end with a hyphen',
    ],
  },
  {
    rule: '3.3.5',
    name: 'targetPort numeric string is a name without a letter',
    spec: { ports: [{ port: 80, targetPort: '8080' }] },
    want: ['spec.ports[0].targetPort: Invalid value: "8080": must contain at least one letter (a-z)'],
  },
  {
    rule: '3.3.5',
    name: 'appProtocol not a qualified name',
    spec: { ports: [{ port: 80, appProtocol: 'a/b/c' }] },
    want: [`spec.ports[0].appProtocol: Invalid value: "a/b/c": ${QNAME_TOO_MANY_SLASHES}`],
  },
  { rule: '3.3.5', name: 'appProtocol qualified', spec: { ports: [{ port: 80, appProtocol: 'kubernetes.io/h2c' }] }, want: [] },
  { rule: '3.3.5', name: 'headless may have targetPort != port', spec: { clusterIP: 'None', ports: [{ port: 80, targetPort: 8080 }] }, want: [] },

  // ---- 3.3.6 selector
  { rule: '3.3.6', name: 'selector key invalid', spec: { selector: { 'app!': 'web' } }, want: [`spec.selector: Invalid value: "app!": ${QNAME_NAME_PART}`] },
  { rule: '3.3.6', name: 'selector value invalid', spec: { selector: { app: 'web!' } }, want: [`spec.selector: Invalid value: "web!": ${LABEL_VALUE}`] },
  { rule: '3.3.6', name: 'no selector (manual Endpoints)', spec: { selector: undefined }, want: [] },

  // ---- 3.3.7 session affinity
  { rule: '3.3.7', name: 'sessionAffinity missing (no defaults)', afterDefaults: true, spec: { sessionAffinity: undefined }, want: ['spec.sessionAffinity: Required value'] },
  {
    rule: '3.3.7',
    name: 'sessionAffinity unsupported',
    spec: { sessionAffinity: 'Cookie' },
    want: ['spec.sessionAffinity: Unsupported value: "Cookie": supported values: "ClientIP", "None"'],
  },
  { rule: '3.3.7', name: 'ClientIP gets the default timeout', spec: { sessionAffinity: 'ClientIP' }, want: [] },
  {
    rule: '3.3.7',
    name: 'ClientIP without config (no defaults)',
    afterDefaults: true,
    spec: { sessionAffinity: 'ClientIP' },
    want: ['spec.sessionAffinityConfig: Required value: when session affinity type is ClientIP'],
  },
  {
    rule: '3.3.7',
    name: 'ClientIP without clientIP (no defaults)',
    afterDefaults: true,
    spec: { sessionAffinity: 'ClientIP', sessionAffinityConfig: {} },
    want: ['spec.sessionAffinityConfig.clientIP: Required value: when session affinity type is ClientIP'],
  },
  {
    rule: '3.3.7',
    name: 'ClientIP without timeoutSeconds (no defaults)',
    afterDefaults: true,
    spec: { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: {} } },
    want: ['spec.sessionAffinityConfig.clientIP.timeoutSeconds: Required value: when session affinity type is ClientIP'],
  },
  {
    rule: '3.3.7',
    name: 'ClientIP timeout 0',
    spec: { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 0 } } },
    want: ['spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400'],
  },
  {
    rule: '3.3.7',
    name: 'ClientIP timeout 86401',
    spec: { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 86401 } } },
    want: ['spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be greater than 0 and less than 86400'],
  },
  { rule: '3.3.7', name: 'ClientIP timeout 86400 is valid', spec: { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 86400 } } }, want: [] },
  {
    rule: '3.3.7',
    name: 'None with a config (no defaults)',
    afterDefaults: true,
    spec: { sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } },
    want: ['spec.sessionAffinityConfig: Forbidden: must not be set when session affinity is None'],
  },

  // ---- 3.3.8 clusterIP / clusterIPs / ipFamilies / ipFamilyPolicy
  { rule: '3.3.8', name: 'explicit clusterIP', spec: { clusterIP: '127.96.0.10' }, want: [] },
  {
    rule: '3.3.8',
    name: 'clusterIPs[0] differs from clusterIP',
    spec: { clusterIP: '127.96.0.10', clusterIPs: ['127.96.0.11'] },
    want: ['spec.clusterIPs: Invalid value: ["127.96.0.11"]: first value must match `clusterIP`'],
  },
  {
    rule: '3.3.8',
    name: 'clusterIPs without clusterIP',
    spec: { clusterIPs: ['127.96.0.11'] },
    want: ['spec.clusterIPs: Invalid value: ["127.96.0.11"]: must be empty when `clusterIP` is not specified'],
  },
  {
    rule: '3.3.8',
    name: 'clusterIP without clusterIPs (no normalization)',
    afterDefaults: true,
    spec: { clusterIP: '127.96.0.10' },
    want: ['spec.clusterIPs: Required value'],
  },
  {
    rule: '3.3.8',
    name: 'ipFamilies unsupported and duplicated',
    spec: { ipFamilies: ['IPv5', 'IPv5'] },
    want: [
      'spec.ipFamilies[0]: Unsupported value: "IPv5": supported values: "IPv4", "IPv6"',
      'spec.ipFamilies[1]: Unsupported value: "IPv5": supported values: "IPv4", "IPv6"',
      'spec.ipFamilies[1]: Duplicate value: "IPv5"',
    ],
  },
  {
    rule: '3.3.8',
    name: 'ipFamilyPolicy unsupported',
    spec: { ipFamilyPolicy: 'DualStackPlease' },
    want: ['spec.ipFamilyPolicy: Unsupported value: "DualStackPlease": supported values: "PreferDualStack", "RequireDualStack", "SingleStack"'],
  },
  {
    rule: '3.3.8',
    name: "'None' not alone",
    spec: { clusterIP: 'None', clusterIPs: ['None', '127.96.0.1'] },
    want: ['spec.clusterIPs: Invalid value: ["None","127.96.0.1"]: \'None\' must be the first and only value'],
  },
  { rule: '3.3.8', name: 'clusterIP not an IP', spec: { clusterIP: '127.96.0' }, want: [`spec.clusterIPs[0]: Invalid value: "127.96.0": ${IP}`] },
  {
    rule: '3.3.8',
    name: 'three clusterIPs',
    spec: { clusterIP: '127.96.0.1', clusterIPs: ['127.96.0.1', 'fd00::1', '127.96.0.2'] },
    want: ['spec.clusterIPs: Invalid value: ["127.96.0.1","fd00::1","127.96.0.2"]: may only hold up to 2 values'],
  },
  {
    rule: '3.3.8',
    name: 'two IPv4 clusterIPs',
    spec: { clusterIP: '127.96.0.1', clusterIPs: ['127.96.0.1', '127.96.0.2'] },
    want: ['spec.clusterIPs: Invalid value: ["127.96.0.1","127.96.0.2"]: may specify no more than one IP for each IP family'],
  },
  {
    rule: '3.3.8',
    name: 'clusterIP family disagrees with ipFamilies',
    spec: { clusterIP: '127.96.0.1', ipFamilies: ['IPv6'] },
    want: ['spec.clusterIPs[0]: Invalid value: "127.96.0.1": expected an IPv6 value as indicated by `ipFamilies[0]`'],
  },
  {
    rule: '3.3.8',
    name: 'IPv6 clusterIP with IPv4 family',
    spec: { clusterIP: 'fd00::10', ipFamilies: ['IPv4'] },
    want: ['spec.clusterIPs[0]: Invalid value: "fd00::10": expected an IPv4 value as indicated by `ipFamilies[0]`'],
  },
  {
    rule: '3.3.8',
    name: 'dual-stack pair is syntactically valid',
    spec: { clusterIP: '127.96.0.1', clusterIPs: ['127.96.0.1', 'fd00::1'], ipFamilies: ['IPv4', 'IPv6'], ipFamilyPolicy: 'RequireDualStack' },
    want: [],
  },

  // ---- 3.3.9 externalIPs
  { rule: '3.3.9', name: 'externalIP documentation address', spec: { externalIPs: ['203.0.113.250'] }, want: [] },
  { rule: '3.3.9', name: 'externalIP not an IP', spec: { externalIPs: ['203.0.113'] }, want: [`spec.externalIPs[0]: Invalid value: "203.0.113": ${IP}`] },
  {
    rule: '3.3.9',
    name: 'externalIPs special ranges (IPv4)',
    spec: { externalIPs: ['0.0.0.0', '127.0.0.2', '169.254.1.1', '224.0.0.5'] },
    want: [
      'spec.externalIPs[0]: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)',
      `spec.externalIPs[1]: Invalid value: "127.0.0.2": ${LOOPBACK}`,
      'spec.externalIPs[2]: Invalid value: "169.254.1.1": may not be in the link-local range (169.254.0.0/16, fe80::/10)',
      'spec.externalIPs[3]: Invalid value: "224.0.0.5": may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)',
    ],
  },
  {
    rule: '3.3.9',
    name: 'externalIPs special ranges (IPv6)',
    spec: { externalIPs: ['::', '::1', 'fe80::1', 'ff02::2', '::ffff:127.0.0.1'] },
    want: [
      'spec.externalIPs[0]: Invalid value: "::": may not be unspecified (::)',
      `spec.externalIPs[1]: Invalid value: "::1": ${LOOPBACK}`,
      'spec.externalIPs[2]: Invalid value: "fe80::1": may not be in the link-local range (169.254.0.0/16, fe80::/10)',
      'spec.externalIPs[3]: Invalid value: "ff02::2": may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)',
      `spec.externalIPs[4]: Invalid value: "::ffff:127.0.0.1": ${LOOPBACK}`,
    ],
  },

  // ---- 3.3.10 type
  { rule: '3.3.10', name: 'type missing (no defaults)', afterDefaults: true, spec: { type: undefined }, want: ['spec.type: Required value'] },
  {
    rule: '3.3.10',
    name: 'type unsupported',
    spec: { type: 'Ingress' },
    want: ['spec.type: Unsupported value: "Ingress": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"'],
  },

  // ---- 3.3.11 nodePort on ClusterIP
  {
    rule: '3.3.11',
    name: 'nodePort on a ClusterIP service',
    spec: { ports: [{ port: 80, nodePort: 30080 }] },
    want: ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"],
  },
  { rule: '3.3.11', name: 'nodePort on a NodePort service (range is the allocator\'s)', spec: nodePortSpec([{ port: 80, nodePort: 80 }]), want: [] },

  // ---- 3.3.12 duplicate nodePorts
  {
    rule: '3.3.12',
    name: 'same nodePort twice on TCP',
    spec: nodePortSpec([{ name: 'a', port: 80, nodePort: 30080 }, { name: 'b', port: 81, nodePort: 30080 }]),
    want: ['spec.ports[1].nodePort: Duplicate value: 30080'],
  },
  {
    rule: '3.3.12',
    name: 'same nodePort on TCP and UDP',
    spec: nodePortSpec([{ name: 'a', port: 53, nodePort: 30053 }, { name: 'b', port: 53, protocol: 'UDP', nodePort: 30053 }]),
    want: [],
  },

  // ---- 3.3.13 duplicate (protocol, port)
  {
    rule: '3.3.13',
    name: 'same port twice on TCP',
    spec: { ports: [{ name: 'a', port: 80 }, { name: 'b', port: 80, targetPort: 8080 }] },
    want: ['spec.ports[1]: Duplicate value: {"protocol":"TCP","port":80}'],
  },
  { rule: '3.3.13', name: 'same port on TCP and UDP', spec: { ports: [{ name: 'a', port: 80 }, { name: 'b', port: 80, protocol: 'UDP' }] }, want: [] },

  // ---- 3.3.14 loadBalancerSourceRanges
  { rule: '3.3.14', name: 'source ranges on ClusterIP', spec: { loadBalancerSourceRanges: ['10.0.0.0/8'] }, want: [`spec.LoadBalancerSourceRanges: Forbidden: ${LB_ONLY}`] },
  { rule: '3.3.14', name: 'source range not a CIDR', spec: lb({ loadBalancerSourceRanges: ['10.0.0.0'] }), want: [`spec.LoadBalancerSourceRanges[0]: Invalid value: "10.0.0.0": ${CIDR}`] },
  { rule: '3.3.14', name: 'space-padded source range is tolerated', spec: lb({ loadBalancerSourceRanges: [' 10.0.0.0/8 ', 'fd00::/64'] }), want: [] },
  { rule: '3.3.14', name: 'source-range annotation on ClusterIP', meta: { annotations: { [SRC_ANN]: '10.0.0.0/8' } }, want: [`metadata.annotations[${SRC_ANN}]: Forbidden: ${LB_ONLY}`] },
  { rule: '3.3.14', name: 'source-range annotation present but empty on ClusterIP', meta: { annotations: { [SRC_ANN]: '' } }, want: [`metadata.annotations[${SRC_ANN}]: Forbidden: ${LB_ONLY}`] },
  {
    rule: '3.3.14',
    name: 'source-range annotation with a bad entry',
    spec: lb(),
    meta: { annotations: { [SRC_ANN]: '10.0.0.0/8, nope' } },
    want: [`metadata.annotations[${SRC_ANN}]: Invalid value: "nope": ${CIDR}`],
  },
  {
    rule: '3.3.14',
    name: 'annotation ignored when the field is set',
    spec: lb({ loadBalancerSourceRanges: ['10.0.0.0/8'] }),
    meta: { annotations: { [SRC_ANN]: 'nope' } },
    want: [],
  },

  // ---- 3.3.15 allocateLoadBalancerNodePorts
  { rule: '3.3.15', name: 'allocateLoadBalancerNodePorts on NodePort', spec: { type: 'NodePort', allocateLoadBalancerNodePorts: false }, want: [`spec.allocateLoadBalancerNodePorts: Forbidden: ${LB_ONLY}`] },
  {
    rule: '3.3.15',
    name: 'LoadBalancer without allocateLoadBalancerNodePorts (no defaults): path without spec.',
    afterDefaults: true,
    spec: lb({ allocateLoadBalancerNodePorts: undefined, externalTrafficPolicy: 'Cluster' }),
    want: ['allocateLoadBalancerNodePorts: Required value'],
  },
  { rule: '3.3.15', name: 'LoadBalancer without nodePorts', spec: lb({ allocateLoadBalancerNodePorts: false }), want: [] },

  // ---- 3.3.16 loadBalancerClass
  { rule: '3.3.16', name: 'loadBalancerClass on ClusterIP', spec: { loadBalancerClass: 'example.com/lb' }, want: [`spec.loadBalancerClass: Forbidden: ${LB_ONLY}`] },
  {
    rule: '3.3.16',
    name: 'loadBalancerClass not a qualified name',
    spec: lb({ loadBalancerClass: 'example.com/lb/x' }),
    want: [`spec.loadBalancerClass: Invalid value: "example.com/lb/x": ${QNAME_TOO_MANY_SLASHES}`],
  },
  { rule: '3.3.16', name: 'loadBalancerClass on LoadBalancer', spec: lb({ loadBalancerClass: 'example.com/lb' }), want: [] },

  // ---- 3.3.17 externalTrafficPolicy / healthCheckNodePort
  {
    rule: '3.3.17',
    name: 'externalTrafficPolicy on an internal ClusterIP',
    spec: { externalTrafficPolicy: 'Local' },
    want: ['spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services'],
  },
  { rule: '3.3.17', name: 'externalTrafficPolicy with externalIPs', spec: { externalTrafficPolicy: 'Local', externalIPs: ['203.0.113.7'] }, want: [] },
  {
    rule: '3.3.17',
    name: 'NodePort without externalTrafficPolicy (no defaults)',
    afterDefaults: true,
    spec: { type: 'NodePort' },
    want: ['spec.externalTrafficPolicy: Required value'],
  },
  {
    rule: '3.3.17',
    name: 'externalTrafficPolicy unsupported',
    spec: { type: 'NodePort', externalTrafficPolicy: 'Global' },
    want: ['spec.externalTrafficPolicy: Unsupported value: "Global": supported values: "Cluster", "Local"'],
  },
  {
    rule: '3.3.17',
    name: 'healthCheckNodePort without LoadBalancer+Local',
    spec: { type: 'NodePort', healthCheckNodePort: 30100 },
    want: ["spec.healthCheckNodePort: Invalid value: 30100: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"],
  },
  {
    rule: '3.3.17',
    name: 'healthCheckNodePort out of range',
    spec: lb({ externalTrafficPolicy: 'Local', healthCheckNodePort: 70000 }),
    want: ['spec.healthCheckNodePort: Invalid value: 70000: must be between 1 and 65535, inclusive'],
  },
  { rule: '3.3.17', name: 'LoadBalancer+Local without healthCheckNodePort (kubeloop allocates none)', spec: lb({ externalTrafficPolicy: 'Local' }), want: [] },

  // ---- 3.3.18 internalTrafficPolicy
  {
    rule: '3.3.18',
    name: 'internalTrafficPolicy missing on ClusterIP (no defaults)',
    afterDefaults: true,
    spec: { internalTrafficPolicy: undefined },
    want: ['spec.internalTrafficPolicy: Required value'],
  },
  {
    rule: '3.3.18',
    name: 'internalTrafficPolicy missing on ExternalName is fine',
    spec: { type: 'ExternalName', externalName: 'db.example.com', ports: undefined },
    want: [],
  },
  {
    rule: '3.3.18',
    name: 'internalTrafficPolicy unsupported',
    spec: { internalTrafficPolicy: 'Node' },
    want: ['spec.internalTrafficPolicy: Unsupported value: "Node": supported values: "Cluster", "Local"'],
  },

  // ---- 3.3.19 trafficDistribution
  {
    rule: '3.3.19',
    name: 'trafficDistribution unsupported',
    spec: { trafficDistribution: 'Nearest' },
    want: ['spec.trafficDistribution: Unsupported value: "Nearest": supported values: "PreferClose"'],
  },
  { rule: '3.3.19', name: 'trafficDistribution PreferClose', spec: { trafficDistribution: 'PreferClose' }, want: [] },

  // ---- all problems at once, in upstream order
  {
    rule: '3.3',
    name: 'many problems reported together in rule order',
    meta: { name: 'Bad' },
    spec: {
      type: 'ClusterIP',
      ports: [{ name: 'a', port: 80, nodePort: 30000 }, { name: 'a', port: 80 }],
      sessionAffinity: 'Sticky',
      externalIPs: ['127.0.0.1'],
      loadBalancerClass: 'x',
    },
    want: [
      `metadata.name: Invalid value: "Bad": ${DNS1035}`,
      'spec.ports[1].name: Duplicate value: "a"',
      'spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"',
      `spec.externalIPs[0]: Invalid value: "127.0.0.1": ${LOOPBACK}`,
      "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
      'spec.ports[1]: Duplicate value: {"protocol":"TCP","port":80}',
      `spec.loadBalancerClass: Forbidden: ${LB_ONLY}`,
    ],
  },
];

t.test('loopback externalIPs are accepted with --allow-loopback-endpoints (other special ranges are not)', async (t) => {
  const o = build({ spec: { externalIPs: ['127.0.0.2', '::1', '0.0.0.0', '169.254.1.1'] } });
  const errs = validateObject(o as KObject, undefined, { allowLoopbackEndpoints: true }).map(formatFieldError);
  t.strictSame(errs, [
    'spec.externalIPs[2]: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)',
    'spec.externalIPs[3]: Invalid value: "169.254.1.1": may not be in the link-local range (169.254.0.0/16, fe80::/10)',
  ]);
  const old = build({ spec: { clusterIP: '127.96.0.9', clusterIPs: ['127.96.0.9'] } });
  const next = build({ spec: { clusterIP: '127.96.0.9', clusterIPs: ['127.96.0.9'], externalIPs: ['127.0.0.5'] } });
  t.strictSame(validateObject(next as KObject, old as KObject, { allowLoopbackEndpoints: true }).map(formatFieldError), [], 'on update too');
  t.strictSame(check(next, old), [`spec.externalIPs[0]: Invalid value: "127.0.0.5": ${LOOPBACK}`], 'and refused without the flag');
});

t.test('ValidateService case table (reference 3.2, 3.3 items 1-19)', async (t) => {
  const covered = new Set(cases.map((c) => c.rule));
  for (let i = 1; i <= 19; i++) t.ok(covered.has(`3.3.${i}`), `rule 3.3.${i} has cases`);
  t.ok(covered.has('3.2'), 'names have cases');
  for (const c of cases) t.strictSame(check(build(c)), c.want, `[${c.rule}] ${c.name}`);
});

// ------------------------------------------------------------------------------- updates (3.4)

interface UpdateCase {
  name: string;
  old: Rec;
  /** keys replacing those of the old (stored) spec; `undefined` deletes */
  spec?: Rec;
  meta?: Rec;
  want: string[];
}

/** A stored service: defaulted, with the values the allocator would have filled in. */
function stored(spec: Rec): Rec {
  const o = base();
  patch(o.spec as Rec, spec);
  applyDefaults(o as KObject);
  (o.metadata as Rec).uid = 'u-1';
  (o.metadata as Rec).resourceVersion = '7';
  return o;
}

const clusterIPSvc = stored({ clusterIP: '127.96.0.10' });
const nodePortSvc = stored({ type: 'NodePort', clusterIP: '127.96.0.11', ports: [{ port: 80, nodePort: 30080 }] });
const lbLocal = stored({ type: 'LoadBalancer', clusterIP: '127.96.0.12', externalTrafficPolicy: 'Local', healthCheckNodePort: 30200, loadBalancerClass: 'example.com/a', ports: [{ port: 80, nodePort: 30081 }] });
const headless = stored({ clusterIP: 'None' });
const dual = stored({ clusterIP: '127.96.0.13', clusterIPs: ['127.96.0.13', 'fd00::13'], ipFamilies: ['IPv4', 'IPv6'], ipFamilyPolicy: 'PreferDualStack' });
const extName = stored({ type: 'ExternalName', externalName: 'db.example.com', ports: undefined });

const updates: UpdateCase[] = [
  { name: 'unchanged', old: clusterIPSvc, want: [] },
  { name: 'clusterIP changed', old: clusterIPSvc, spec: { clusterIP: '127.96.0.99' }, want: ['spec.clusterIPs[0]: Invalid value: ["127.96.0.99"]: may not change once set'] },
  {
    name: 'clusterIPs changed with clusterIP',
    old: clusterIPSvc,
    spec: { clusterIP: '127.96.0.99', clusterIPs: ['127.96.0.99'] },
    want: ['spec.clusterIPs[0]: Invalid value: ["127.96.0.99"]: may not change once set'],
  },
  { name: 'ClusterIP to headless', old: clusterIPSvc, spec: { clusterIP: 'None' }, want: ['spec.clusterIPs[0]: Invalid value: ["None"]: may not change once set'] },
  { name: 'headless to ClusterIP', old: headless, spec: { clusterIP: '127.96.0.50' }, want: ['spec.clusterIPs[0]: Invalid value: ["127.96.0.50"]: may not change once set'] },
  { name: 'headless stays headless', old: headless, spec: { ports: [{ port: 81 }] }, want: [] },
  { name: 'replace without clusterIP keeps the allocated one', old: clusterIPSvc, spec: { clusterIP: undefined, clusterIPs: undefined }, want: [] },
  {
    name: 'ClusterIP to ExternalName (clusterIP fields carried over are dropped)',
    old: clusterIPSvc,
    spec: { type: 'ExternalName', externalName: 'db.example.com' },
    want: [],
  },
  { name: 'ExternalName to ClusterIP', old: extName, spec: { type: 'ClusterIP', externalName: undefined, ports: [{ port: 80 }] }, want: [] },
  { name: 'NodePort to ClusterIP drops nodePorts and externalTrafficPolicy', old: nodePortSvc, spec: { type: 'ClusterIP' }, want: [] },
  {
    name: 'NodePort to ClusterIP with a changed nodePort keeps it (and fails)',
    old: nodePortSvc,
    spec: { type: 'ClusterIP', ports: [{ port: 80, targetPort: 80, protocol: 'TCP', nodePort: 30099 }] },
    want: ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"],
  },
  { name: 'LoadBalancer to ClusterIP drops LB-only fields', old: lbLocal, spec: { type: 'ClusterIP' }, want: [] },
  {
    name: 'healthCheckNodePort changed',
    old: lbLocal,
    spec: { healthCheckNodePort: 30201 },
    want: ['spec.healthCheckNodePort: Forbidden: field is immutable'],
  },
  {
    name: 'loadBalancerClass changed',
    old: lbLocal,
    spec: { loadBalancerClass: 'example.com/b' },
    want: ['spec.loadBalancerClass: Invalid value: "example.com/b": may not change once set'],
  },
  {
    name: 'dual-stack downgrade without SingleStack',
    old: dual,
    spec: { clusterIPs: ['127.96.0.13'], ipFamilies: ['IPv4'] },
    want: [
      'spec.ipFamilyPolicy: Invalid value: "PreferDualStack": must be set to \'SingleStack\' when releasing the secondary clusterIP',
      'spec.ipFamilyPolicy: Invalid value: "PreferDualStack": must be set to \'SingleStack\' when releasing the secondary ipFamily',
    ],
  },
  { name: 'dual-stack downgrade with SingleStack', old: dual, spec: { clusterIPs: ['127.96.0.13'], ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack' }, want: [] },
  {
    name: 'ipFamilies changed',
    old: clusterIPSvc,
    spec: { ipFamilies: ['IPv6'] },
    want: [
      'spec.ipFamilies[0]: Invalid value: ["IPv6"]: may not change once set',
      'spec.clusterIPs[0]: Invalid value: "127.96.0.10": expected an IPv6 value as indicated by `ipFamilies[0]`',
    ],
  },
  { name: 'name changed', old: clusterIPSvc, meta: { name: 'web2' }, want: ['metadata.name: Invalid value: "web2": field is immutable'] },
  { name: 'namespace changed', old: clusterIPSvc, meta: { namespace: 'other' }, want: ['metadata.namespace: Invalid value: "other": field is immutable'] },
  { name: 'uid changed', old: clusterIPSvc, meta: { uid: 'u-2' }, want: ['metadata.uid: Invalid value: "u-2": field is immutable'] },
];

t.test('ValidateServiceUpdate case table (reference 3.4)', async (t) => {
  for (const c of updates) {
    const next = structuredClone(c.old);
    patch(next.metadata as Rec, c.meta);
    patch(next.spec as Rec, c.spec);
    applyDefaults(next as KObject);
    t.strictSame(check(next, c.old), c.want, c.name);
  }
});

t.test('update validation does not mutate its input', async (t) => {
  const next = structuredClone(nodePortSvc);
  (next.spec as Rec).type = 'ClusterIP';
  const before = structuredClone(next);
  check(next, nodePortSvc);
  t.strictSame(next, before);
});

// ------------------------------------------------------------------------------- status

t.test('ValidateLoadBalancerStatus', async (t) => {
  const svc = (type: string, ingress: Rec[]): Rec => ({ ...stored({ type }), status: { loadBalancer: { ingress } } });
  const table: Array<[string, Rec, string[]]> = [
    ['LB with ip and ipMode', svc('LoadBalancer', [{ ip: '203.0.113.1', ipMode: 'VIP' }]), []],
    ['ingress on a ClusterIP service', svc('ClusterIP', [{ ip: '203.0.113.1', ipMode: 'VIP' }]), ["status.loadBalancer.ingress: Forbidden: may only be used when `spec.type` is 'LoadBalancer'"]],
    ['bad ip', svc('LoadBalancer', [{ ip: '203.0.113', ipMode: 'VIP' }]), [`status.loadBalancer.ingress[0].ip: Invalid value: "203.0.113": ${IP}`]],
    ['ip without ipMode', svc('LoadBalancer', [{ ip: '203.0.113.1' }]), ['status.loadBalancer.ingress[0].ipMode: Required value: must be specified when `ip` is set']],
    ['ipMode without ip', svc('LoadBalancer', [{ hostname: 'lb.example.com', ipMode: 'VIP' }]), ['status.loadBalancer.ingress[0].ipMode: Forbidden: may not be specified when `ip` is not set']],
    ['ipMode unsupported', svc('LoadBalancer', [{ ip: '203.0.113.1', ipMode: 'Tunnel' }]), ['status.loadBalancer.ingress[0].ipMode: Unsupported value: "Tunnel": supported values: "Proxy", "VIP"']],
    ['hostname is an IP', svc('LoadBalancer', [{ hostname: '203.0.113.1' }]), ['status.loadBalancer.ingress[0].hostname: Invalid value: "203.0.113.1": must be a DNS name, not an IP address']],
  ];
  for (const [name, o, want] of table) t.strictSame(validateServiceStatus(o).map(formatFieldError), want, name);
});

t.test('LoadBalancer ingress ipMode defaults to VIP', async (t) => {
  const o = { ...base(), spec: { type: 'LoadBalancer', ports: [{ port: 80 }] }, status: { loadBalancer: { ingress: [{ ip: '203.0.113.1' }, { hostname: 'x.example.com' }] } } };
  applyDefaults(o as KObject);
  t.strictSame(o.status.loadBalancer.ingress, [{ ip: '203.0.113.1', ipMode: 'VIP' }, { hostname: 'x.example.com' }]);
  t.strictSame(validateServiceStatus(o as Rec), []);
});

t.test('malformed input gives field errors, never an exception', async (t) => {
  const bad: Rec[] = [
    { kind: 'Service' },
    { kind: 'Service', metadata: 5, spec: 'x' },
    { kind: 'Service', metadata: { name: 7, namespace: 'default' }, spec: { ports: { port: 80 }, selector: [], type: 3 } },
    { kind: 'Service', metadata: { name: 'a', namespace: 'default' }, spec: { ports: [null, 5, { port: 'eighty' }], clusterIPs: [1, 2], externalIPs: [null] } },
  ];
  for (const o of bad) {
    applyDefaults(o as KObject);
    const errs = check(o);
    t.ok(errs.length > 0, `reports ${JSON.stringify(o).slice(0, 60)}`);
  }
  t.strictSame(
    check({ kind: 'Service', metadata: { name: 7, namespace: 'default' }, spec: { type: 'ClusterIP', ports: { port: 80 }, sessionAffinity: 'None', internalTrafficPolicy: 'Cluster' } }),
    ['metadata.name: Invalid value: 7: must be a string', 'spec.ports: Invalid value: {"port":80}: must be a list', 'spec.ports: Required value'],
  );
});
