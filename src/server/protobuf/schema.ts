/**
 * Protobuf message definitions for the kinds kubectl's typed clients create
 * (`kubectl create service|deployment|configmap|secret|namespace|job|cronjob`), written for
 * kubeloop after the field numbers of upstream's go-to-protobuf output
 * (k8s.io/api/{core,apps,batch}/v1 and k8s.io/apimachinery meta/v1, intstr, resource,
 * runtime). Only what those objects can carry is defined; protobufjs skips other fields.
 *
 * Conventions for the JSON conversion (decode.ts):
 * - a field named `_inline_<x>` is an embedded Go struct: its fields belong to the parent;
 * - `Time`, `IntOrString` and `Quantity` become their JSON forms.
 */
import { KIND_DECLS } from '../../api/kinds/index.js';

const BASE_PROTO = `
syntax = "proto2";
package k8s;

message Unknown {
  optional TypeMeta typeMeta = 1;
  optional bytes raw = 2;
  optional string contentEncoding = 3;
  optional string contentType = 4;
}
message TypeMeta {
  optional string apiVersion = 1;
  optional string kind = 2;
}

message Time {
  optional int64 seconds = 1;
  optional int32 nanos = 2;
}
message IntOrString {
  optional int64 type = 1;
  optional int32 intVal = 2;
  optional string strVal = 3;
}
message Quantity {
  optional string string = 1;
}
message ObjectMeta {
  optional string name = 1;
  optional string generateName = 2;
  optional string namespace = 3;
  optional string selfLink = 4;
  optional string uid = 5;
  optional string resourceVersion = 6;
  optional int64 generation = 7;
  optional Time creationTimestamp = 8;
  optional Time deletionTimestamp = 9;
  optional int64 deletionGracePeriodSeconds = 10;
  map<string, string> labels = 11;
  map<string, string> annotations = 12;
  repeated OwnerReference ownerReferences = 13;
  repeated string finalizers = 14;
}
message OwnerReference {
  optional string kind = 1;
  optional string name = 3;
  optional string uid = 4;
  optional string apiVersion = 5;
  optional bool controller = 6;
  optional bool blockOwnerDeletion = 7;
}
message LabelSelector {
  map<string, string> matchLabels = 1;
  repeated LabelSelectorRequirement matchExpressions = 2;
}
message LabelSelectorRequirement {
  optional string key = 1;
  optional string operator = 2;
  repeated string values = 3;
}

// ---- core/v1
message Namespace {
  optional ObjectMeta metadata = 1;
  optional NamespaceSpec spec = 2;
}
message NamespaceSpec {
  repeated string finalizers = 1;
}
message ConfigMap {
  optional ObjectMeta metadata = 1;
  map<string, string> data = 2;
  map<string, bytes> binaryData = 3;
  optional bool immutable = 4;
}
message Secret {
  optional ObjectMeta metadata = 1;
  map<string, bytes> data = 2;
  optional string type = 3;
  map<string, string> stringData = 4;
  optional bool immutable = 5;
}
message Service {
  optional ObjectMeta metadata = 1;
  optional ServiceSpec spec = 2;
}
message ServiceSpec {
  repeated ServicePort ports = 1;
  map<string, string> selector = 2;
  optional string clusterIP = 3;
  optional string type = 4;
  repeated string externalIPs = 5;
  optional string sessionAffinity = 7;
  optional string loadBalancerIP = 8;
  repeated string loadBalancerSourceRanges = 9;
  optional string externalName = 10;
  optional string externalTrafficPolicy = 11;
  optional int32 healthCheckNodePort = 12;
  optional bool publishNotReadyAddresses = 13;
  optional SessionAffinityConfig sessionAffinityConfig = 14;
  optional string ipFamilyPolicy = 17;
  repeated string clusterIPs = 18;
  repeated string ipFamilies = 19;
  optional bool allocateLoadBalancerNodePorts = 20;
  optional string loadBalancerClass = 21;
  optional string internalTrafficPolicy = 22;
  optional string trafficDistribution = 23;
}
message ServicePort {
  optional string name = 1;
  optional string protocol = 2;
  optional int32 port = 3;
  optional IntOrString targetPort = 4;
  optional int32 nodePort = 5;
  optional string appProtocol = 6;
}
message SessionAffinityConfig {
  optional ClientIPConfig clientIP = 1;
}
message ClientIPConfig {
  optional int32 timeoutSeconds = 1;
}
message Pod {
  optional ObjectMeta metadata = 1;
  optional PodSpec spec = 2;
}
message PodTemplateSpec {
  optional ObjectMeta metadata = 1;
  optional PodSpec spec = 2;
}
message PodSpec {
  repeated Volume volumes = 1;
  repeated Container containers = 2;
  optional string restartPolicy = 3;
  optional int64 terminationGracePeriodSeconds = 4;
  optional int64 activeDeadlineSeconds = 5;
  optional string dnsPolicy = 6;
  map<string, string> nodeSelector = 7;
  optional string serviceAccountName = 8;
  optional string serviceAccount = 9;
  optional string nodeName = 10;
  optional bool hostNetwork = 11;
  optional bool hostPID = 12;
  optional bool hostIPC = 13;
  repeated LocalObjectReference imagePullSecrets = 15;
  optional string hostname = 16;
  optional string subdomain = 17;
  optional string schedulerName = 19;
  repeated Container initContainers = 20;
  optional bool automountServiceAccountToken = 21;
  repeated Toleration tolerations = 22;
  repeated HostAlias hostAliases = 23;
  optional string priorityClassName = 24;
  optional int32 priority = 25;
  optional bool shareProcessNamespace = 27;
  optional string runtimeClassName = 29;
  optional bool enableServiceLinks = 30;
  optional string preemptionPolicy = 31;
  optional bool setHostnameAsFQDN = 35;
  optional bool hostUsers = 37;
}
message Container {
  optional string name = 1;
  optional string image = 2;
  repeated string command = 3;
  repeated string args = 4;
  optional string workingDir = 5;
  repeated ContainerPort ports = 6;
  repeated EnvVar env = 7;
  optional ResourceRequirements resources = 8;
  repeated VolumeMount volumeMounts = 9;
  optional Probe livenessProbe = 10;
  optional Probe readinessProbe = 11;
  optional string terminationMessagePath = 13;
  optional string imagePullPolicy = 14;
  optional bool stdin = 16;
  optional bool stdinOnce = 17;
  optional bool tty = 18;
  repeated EnvFromSource envFrom = 19;
  optional string terminationMessagePolicy = 20;
  optional Probe startupProbe = 22;
  optional string restartPolicy = 24;
}
message ContainerPort {
  optional string name = 1;
  optional int32 hostPort = 2;
  optional int32 containerPort = 3;
  optional string protocol = 4;
  optional string hostIP = 5;
}
message EnvVar {
  optional string name = 1;
  optional string value = 2;
  optional EnvVarSource valueFrom = 3;
}
message EnvVarSource {
  optional ObjectFieldSelector fieldRef = 1;
  optional ResourceFieldSelector resourceFieldRef = 2;
  optional ConfigMapKeySelector configMapKeyRef = 3;
  optional SecretKeySelector secretKeyRef = 4;
}
message ObjectFieldSelector {
  optional string apiVersion = 1;
  optional string fieldPath = 2;
}
message ResourceFieldSelector {
  optional string containerName = 1;
  optional string resource = 2;
  optional Quantity divisor = 3;
}
message ConfigMapKeySelector {
  optional LocalObjectReference _inline_localObjectReference = 1;
  optional string key = 2;
  optional bool optional = 3;
}
message SecretKeySelector {
  optional LocalObjectReference _inline_localObjectReference = 1;
  optional string key = 2;
  optional bool optional = 3;
}
message EnvFromSource {
  optional string prefix = 1;
  optional ConfigMapEnvSource configMapRef = 2;
  optional SecretEnvSource secretRef = 3;
}
message ConfigMapEnvSource {
  optional LocalObjectReference _inline_localObjectReference = 1;
  optional bool optional = 2;
}
message SecretEnvSource {
  optional LocalObjectReference _inline_localObjectReference = 1;
  optional bool optional = 2;
}
message LocalObjectReference {
  optional string name = 1;
}
message ResourceRequirements {
  map<string, Quantity> limits = 1;
  map<string, Quantity> requests = 2;
}
message VolumeMount {
  optional string name = 1;
  optional bool readOnly = 2;
  optional string mountPath = 3;
  optional string subPath = 4;
  optional string mountPropagation = 5;
  optional string subPathExpr = 6;
}
message Probe {
  optional ProbeHandler _inline_handler = 1;
  optional int32 initialDelaySeconds = 2;
  optional int32 timeoutSeconds = 3;
  optional int32 periodSeconds = 4;
  optional int32 successThreshold = 5;
  optional int32 failureThreshold = 6;
  optional int64 terminationGracePeriodSeconds = 7;
}
message ProbeHandler {
  optional ExecAction exec = 1;
  optional HTTPGetAction httpGet = 2;
  optional TCPSocketAction tcpSocket = 3;
}
message ExecAction {
  repeated string command = 1;
}
message HTTPGetAction {
  optional string path = 1;
  optional IntOrString port = 2;
  optional string host = 3;
  optional string scheme = 4;
  repeated HTTPHeader httpHeaders = 5;
}
message HTTPHeader {
  optional string name = 1;
  optional string value = 2;
}
message TCPSocketAction {
  optional IntOrString port = 1;
  optional string host = 2;
}
message Volume {
  optional string name = 1;
  optional VolumeSource _inline_volumeSource = 2;
}
message VolumeSource {
  optional HostPathVolumeSource hostPath = 1;
  optional EmptyDirVolumeSource emptyDir = 2;
  optional SecretVolumeSource secret = 6;
  optional PersistentVolumeClaimVolumeSource persistentVolumeClaim = 10;
  optional ConfigMapVolumeSource configMap = 19;
}
message HostPathVolumeSource {
  optional string path = 1;
  optional string type = 2;
}
message EmptyDirVolumeSource {
  optional string medium = 1;
  optional Quantity sizeLimit = 2;
}
message SecretVolumeSource {
  optional string secretName = 1;
  repeated KeyToPath items = 2;
  optional int32 defaultMode = 3;
  optional bool optional = 4;
}
message ConfigMapVolumeSource {
  optional LocalObjectReference _inline_localObjectReference = 1;
  repeated KeyToPath items = 2;
  optional int32 defaultMode = 3;
  optional bool optional = 4;
}
message KeyToPath {
  optional string key = 1;
  optional string path = 2;
  optional int32 mode = 3;
}
message PersistentVolumeClaimVolumeSource {
  optional string claimName = 1;
  optional bool readOnly = 2;
}
message Toleration {
  optional string key = 1;
  optional string operator = 2;
  optional string value = 3;
  optional string effect = 4;
  optional int64 tolerationSeconds = 5;
}
message HostAlias {
  optional string ip = 1;
  repeated string hostnames = 2;
}

// ---- apps/v1
message Deployment {
  optional ObjectMeta metadata = 1;
  optional DeploymentSpec spec = 2;
}
message DeploymentSpec {
  optional int32 replicas = 1;
  optional LabelSelector selector = 2;
  optional PodTemplateSpec template = 3;
  optional DeploymentStrategy strategy = 4;
  optional int32 minReadySeconds = 5;
  optional int32 revisionHistoryLimit = 6;
  optional bool paused = 7;
  optional int32 progressDeadlineSeconds = 9;
}
message DeploymentStrategy {
  optional string type = 1;
  optional RollingUpdateDeployment rollingUpdate = 2;
}
message RollingUpdateDeployment {
  optional IntOrString maxUnavailable = 1;
  optional IntOrString maxSurge = 2;
}
message ReplicaSet {
  optional ObjectMeta metadata = 1;
  optional ReplicaSetSpec spec = 2;
}
message ReplicaSetSpec {
  optional int32 replicas = 1;
  optional LabelSelector selector = 2;
  optional PodTemplateSpec template = 3;
  optional int32 minReadySeconds = 4;
}

// ---- batch/v1
message Job {
  optional ObjectMeta metadata = 1;
  optional JobSpec spec = 2;
}
message JobSpec {
  optional int32 parallelism = 1;
  optional int32 completions = 2;
  optional int64 activeDeadlineSeconds = 3;
  optional LabelSelector selector = 4;
  optional bool manualSelector = 5;
  optional PodTemplateSpec template = 6;
  optional int32 backoffLimit = 7;
  optional int32 ttlSecondsAfterFinished = 8;
  optional string completionMode = 9;
  optional bool suspend = 10;
}
message CronJob {
  optional ObjectMeta metadata = 1;
  optional CronJobSpec spec = 2;
}
message CronJobSpec {
  optional string schedule = 1;
  optional int64 startingDeadlineSeconds = 2;
  optional string concurrencyPolicy = 3;
  optional bool suspend = 4;
  optional JobTemplateSpec jobTemplate = 5;
  optional int32 successfulJobsHistoryLimit = 6;
  optional int32 failedJobsHistoryLimit = 7;
  optional string timeZone = 8;
}
message JobTemplateSpec {
  optional ObjectMeta metadata = 1;
  optional JobSpec spec = 2;
}
`;

/** The messages above, then the ones the kinds declare (api/kinds/ `protobuf`). */
export const K8S_PROTO = BASE_PROTO + KIND_DECLS.map((d) => d.protobuf ?? '').join('');

/** `apiVersion/kind` → message name, for the objects decode.ts accepts as protobuf: the kinds above and every kind that declares its messages. */
export const PROTO_KINDS: Readonly<Record<string, string>> = Object.freeze({
  ...Object.fromEntries(KIND_DECLS.filter((d) => d.protobuf).map((d) => [`${d.info.apiVersion}/${d.info.kind}`, d.info.kind])),
  // autoscaling/v1, served as a conversion of the v2 kind, is what the HPA's messages describe (api/kinds/autoscaling.ts)
  'autoscaling/v1/HorizontalPodAutoscaler': 'HorizontalPodAutoscalerV1',
  'autoscaling/v2/HorizontalPodAutoscaler': '',
  'v1/Namespace': 'Namespace',
  'v1/ConfigMap': 'ConfigMap',
  'v1/Secret': 'Secret',
  'v1/Service': 'Service',
  'v1/Pod': 'Pod',
  'apps/v1/Deployment': 'Deployment',
  'apps/v1/ReplicaSet': 'ReplicaSet',
  'batch/v1/Job': 'Job',
  'batch/v1/CronJob': 'CronJob',
});

/**
 * Go pointer fields (`*int32`, `*bool`): present on the wire only when set, so a zero value
 * there is meaningful. Every other scalar is always written, and its zero value is dropped the
 * way JSON `omitempty` would.
 */
export const POINTER_FIELDS = new Set([
  'replicas',
  'parallelism',
  'completions',
  'backoffLimit',
  'activeDeadlineSeconds',
  'ttlSecondsAfterFinished',
  'startingDeadlineSeconds',
  'successfulJobsHistoryLimit',
  'failedJobsHistoryLimit',
  'revisionHistoryLimit',
  'progressDeadlineSeconds',
  'terminationGracePeriodSeconds',
  'suspend',
  'manualSelector',
  'immutable',
  'optional',
  'automountServiceAccountToken',
  'enableServiceLinks',
  'allocateLoadBalancerNodePorts',
  'shareProcessNamespace',
  'setHostnameAsFQDN',
  'hostUsers',
  'priority',
  'defaultMode',
  'mode',
  'tolerationSeconds',
  'controller',
  'blockOwnerDeletion',
  'timeoutSeconds',
  'minReplicas',
  'targetCPUUtilizationPercentage',
]);
