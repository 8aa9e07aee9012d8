/**
 * The review kinds kubectl's `auth can-i` (`--list`) and `auth whoami` create: answered by the API server
 * from the request's user (server/reviews.ts), never stored (`virtual`).
 */
import { type FieldError, invalid, path } from '../field.js';
import { defineKind, infoOf } from '../kind.js';

type Rec = Record<string, unknown>;
const isRec = (v: unknown): v is Rec => v !== null && typeof v === 'object' && !Array.isArray(v);

/** SelfSubjectAccessReview: exactly one of spec.resourceAttributes and spec.nonResourceAttributes (upstream ValidateSelfSubjectAccessReviewSpec). */
function validateSelfSubjectAccessReview(o: Rec): FieldError[] {
  const spec = isRec(o.spec) ? o.spec : {};
  const res = spec.resourceAttributes;
  const non = spec.nonResourceAttributes;
  if (res !== undefined && non !== undefined) return [invalid(path('spec', 'nonResourceAttributes'), non, 'cannot be specified in combination with resourceAttributes')];
  if (res === undefined && non === undefined) return [invalid(path('spec', 'resourceAttributes'), null, 'exactly one of nonResourceAttributes or resourceAttributes must be specified')];
  if (res !== undefined && !isRec(res)) return [invalid(path('spec', 'resourceAttributes'), res, 'must be an object')];
  if (non !== undefined && !isRec(non)) return [invalid(path('spec', 'nonResourceAttributes'), non, 'must be an object')];
  return [];
}

export const selfSubjectAccessReview = defineKind({
  info: infoOf('SelfSubjectAccessReview', 'authorization.k8s.io/v1', 'selfsubjectaccessreviews', { namespaced: false }),
  model: 'V1SelfSubjectAccessReview',
  protobuf: `
message SelfSubjectAccessReview {
  optional ObjectMeta metadata = 1;
  optional SelfSubjectAccessReviewSpec spec = 2;
}
message SelfSubjectAccessReviewSpec {
  optional ResourceAttributes resourceAttributes = 1;
  optional NonResourceAttributes nonResourceAttributes = 2;
}
message ResourceAttributes {
  optional string namespace = 1;
  optional string verb = 2;
  optional string group = 3;
  optional string version = 4;
  optional string resource = 5;
  optional string subresource = 6;
  optional string name = 7;
}
message NonResourceAttributes {
  optional string path = 1;
  optional string verb = 2;
}
`,
  validate: (o) => validateSelfSubjectAccessReview(o),
  verbs: ['create'],
  virtual: true,
});

export const selfSubjectReview = defineKind({
  info: infoOf('SelfSubjectReview', 'authentication.k8s.io/v1', 'selfsubjectreviews', { namespaced: false }),
  model: 'V1SelfSubjectReview',
  protobuf: `
message SelfSubjectReview {
  optional ObjectMeta metadata = 1;
}
`,
  validate: () => [],
  verbs: ['create'],
  virtual: true,
});

export const selfSubjectRulesReview = defineKind({
  info: infoOf('SelfSubjectRulesReview', 'authorization.k8s.io/v1', 'selfsubjectrulesreviews', { namespaced: false }),
  model: 'V1SelfSubjectRulesReview',
  protobuf: `
message SelfSubjectRulesReview {
  optional ObjectMeta metadata = 1;
  optional SelfSubjectRulesReviewSpec spec = 2;
}
message SelfSubjectRulesReviewSpec {
  optional string namespace = 1;
}
`,
  validate: () => [],
  verbs: ['create'],
  virtual: true,
});
