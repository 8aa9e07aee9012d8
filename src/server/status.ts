/**
 * The one place errors become Kubernetes `Status` bodies (metav1.Status), so kubectl prints
 * what it prints against a cluster: `Error from server (NotFound): services "x" not found`.
 */
import { ApiError, REASON_CODES, type Reason } from '../api/errors.js';
import { fieldErrorBody } from '../api/field.js';

export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}

export interface StatusBody {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure' | 'Success';
  message?: string;
  reason?: string;
  details?: { name?: string; group?: string; kind?: string; uid?: string; causes?: StatusCause[]; retryAfterSeconds?: number };
  code: number;
}

/** What a request was about, to complete messages the way upstream words them. */
export interface ResourceContext {
  /** lower-case plural, e.g. `deployments` */
  resource: string;
  group: string;
}

/**
 * Status for any thrown value. ApiErrors keep their reason, code and causes; `ctx` adds the
 * group to resource names (`deployments.apps "x" not found`). Anything else is a 500 whose
 * message is the error's.
 */
export function toStatus(err: unknown, ctx?: ResourceContext): StatusBody {
  if (!(err instanceof ApiError)) {
    const message = err instanceof Error ? err.message : String(err);
    return failure('InternalError', `Internal error occurred: ${message}`, 500);
  }
  let message = err.message;
  const details: NonNullable<StatusBody['details']> = {};
  const d = err.details;
  if (d.name !== undefined) details.name = d.name;
  if (d.group !== undefined) details.group = d.group;
  if (d.kind !== undefined) details.kind = d.kind;
  if (d.retryAfterSeconds !== undefined) details.retryAfterSeconds = d.retryAfterSeconds;
  if (ctx?.group && d.kind === ctx.resource) {
    // the store names resources without their group; upstream messages say `deployments.apps`
    details.group = ctx.group;
    message = message.replace(`${ctx.resource} "`, `${ctx.resource}.${ctx.group} "`);
  }
  if (err.reason === 'Invalid' && ctx) details.group ??= ctx.group;
  if (d.causes?.length) {
    details.causes = d.causes.map((c) => ({ reason: c.type, message: fieldErrorBody(c), field: c.field }));
  }
  const extra = (err as ApiError & { statusCauses?: StatusCause[] }).statusCauses;
  if (extra?.length) details.causes = [...(details.causes ?? []), ...extra];
  const body = failure(err.reason, message, err.code);
  if (Object.keys(details).length) body.details = details;
  return body;
}

export function failure(reason: Reason | string, message: string, code?: number): StatusBody {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    code: code ?? REASON_CODES[reason as Reason] ?? 500,
  };
}

export function success(details?: StatusBody['details']): StatusBody {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', ...(details ? { details } : {}), code: 200 };
}

/** An ApiError carrying extra causes that are not field errors (server-side apply conflicts). */
export function errorWithCauses(reason: Reason, message: string, causes: StatusCause[]): ApiError {
  const e = new ApiError(reason, message) as ApiError & { statusCauses?: StatusCause[] };
  e.statusCauses = causes;
  return e;
}

/** `the server could not find the requested resource` (unknown paths). */
export const pathNotFound = (): StatusBody => failure('NotFound', 'the server could not find the requested resource', 404);
