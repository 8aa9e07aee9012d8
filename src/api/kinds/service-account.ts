/** v1 ServiceAccount: a `default` one per namespace (controllers/service-account.ts). Token volumes are not projected yet. */
import { defineKind, infoOf } from '../kind.js';

export const serviceAccount = defineKind({
  info: infoOf('ServiceAccount', 'v1', 'serviceaccounts', { shortNames: ['sa'] }),
  model: 'V1ServiceAccount',
  protobuf: `
message ServiceAccount {
  optional ObjectMeta metadata = 1;
  repeated ObjectReference secrets = 2;
  repeated LocalObjectReference imagePullSecrets = 3;
  optional bool automountServiceAccountToken = 4;
}
message ObjectReference {
  optional string kind = 1;
  optional string namespace = 2;
  optional string name = 3;
  optional string uid = 4;
  optional string apiVersion = 5;
  optional string resourceVersion = 6;
  optional string fieldPath = 7;
}
`,
  // upstream `serviceAccountColumnDefinitions`: Name, Secrets, Age
  columns: [{ name: 'Secrets', type: 'string', value: (o) => (Array.isArray(o.secrets) ? o.secrets.length : 0) }],
});
