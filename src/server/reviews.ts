/**
 * The review kinds, answered and never stored: `SelfSubjectAccessReview` and
 * `SelfSubjectRulesReview` (authorization.k8s.io/v1, `kubectl auth can-i`, `can-i --list`) and
 * `SelfSubjectReview` (authentication.k8s.io/v1, `kubectl auth whoami`).
 *
 * There is no authorization layer yet: every authenticated user — the cluster's own credential,
 * the only one the daemon issues — may do everything (as system:masters), so every access review
 * is allowed, with a reason that says why. The user of a SelfSubjectReview is the one the
 * request authenticated as: the client certificate's CN and O, or the token's user; upstream
 * adds `system:authenticated` to every authenticated user's groups.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError, badRequest, invalidObject } from '../api/errors.js';
import type { KindInfo } from '../api/kind.js';
import { validateObject } from '../api/validation/index.js';
import type { KObject } from '../api/types.js';
import type { User } from './auth.js';
import { decodeObject, readBody, sendJson } from './http.js';
import type { ResourceRoute } from './route.js';

type Rec = Record<string, unknown>;
const isObj = (v: unknown): v is Rec => v !== null && typeof v === 'object' && !Array.isArray(v);

/** why every review is allowed: the reason upstream's authorizers put in status.reason */
export const ALLOWED_REASON = 'kubeloop has no authorization layer: the cluster credential may do everything';

/** `POST /apis/<group>/v1/<reviews>`: the review with its status, 201; anything else is a 404/405 Status. */
export async function serveReview(req: IncomingMessage, res: ServerResponse, route: ResourceRoute, info: KindInfo, user: User | undefined): Promise<void> {
  if (route.namespace || route.name !== undefined || route.subresource || route.watchPath) {
    throw new ApiError('NotFound', 'the server could not find the requested resource');
  }
  if (req.method !== 'POST') {
    throw new ApiError('MethodNotAllowed', `${req.method ?? 'GET'} is not served here; ${info.plural} (${info.apiVersion}) serves the verb create (POST) only`);
  }
  const obj = decodeObject(await readBody(req, res), req.headers['content-type']);
  if ((obj.apiVersion !== undefined && obj.apiVersion !== info.apiVersion) || (obj.kind !== undefined && obj.kind !== info.kind)) {
    throw badRequest(`the object is a ${String(obj.kind)} of ${String(obj.apiVersion)}: POST a ${info.kind} of ${info.apiVersion} here`);
  }
  obj.apiVersion = info.apiVersion;
  obj.kind = info.kind;
  const errs = validateObject(obj as KObject);
  if (errs.length) throw invalidObject(info.kind, '', errs);
  const meta = isObj(obj.metadata) ? obj.metadata : {};
  const out: Rec = { ...obj, metadata: { ...meta, creationTimestamp: null } };
  if (info.kind === 'SelfSubjectAccessReview') {
    out.status = { allowed: true, reason: ALLOWED_REASON };
  } else if (info.kind === 'SelfSubjectRulesReview') {
    // everything, as system:masters' rules read
    out.status = {
      resourceRules: [{ verbs: ['*'], apiGroups: ['*'], resources: ['*'] }],
      nonResourceRules: [{ verbs: ['*'], nonResourceURLs: ['*'] }],
      incomplete: false,
    };
  } else {
    const name = user?.name ?? 'system:anonymous';
    const groups = user ? [...user.groups, 'system:authenticated'] : ['system:unauthenticated'];
    out.status = { userInfo: { username: name, groups } };
  }
  sendJson(res, 201, out);
}
