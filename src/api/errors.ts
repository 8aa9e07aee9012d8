import { type FieldError, formatFieldError } from './field.js';

/**
 * The one error family of kubeloop. Each reason has a stable HTTP code (as
 * metav1.StatusReason); `server/` turns these into `Status` JSON, `dns/` into
 * rcodes, `cli/` into one-line messages. Nothing else formats errors.
 */
export type Reason =
  | 'NotFound'
  | 'AlreadyExists'
  | 'Conflict'
  | 'Invalid'
  | 'Gone'
  | 'Expired'
  | 'BadRequest'
  | 'UnsupportedMediaType'
  | 'MethodNotAllowed'
  | 'Forbidden'
  | 'Unauthorized'
  | 'NotAcceptable'
  | 'RequestEntityTooLarge'
  | 'TooManyRequests'
  | 'InternalError'
  | 'ServiceUnavailable'
  | 'Timeout';

export const REASON_CODES: Readonly<Record<Reason, number>> = Object.freeze({
  BadRequest: 400,
  Unauthorized: 401,
  Forbidden: 403,
  NotFound: 404,
  MethodNotAllowed: 405,
  NotAcceptable: 406,
  RequestEntityTooLarge: 413,
  TooManyRequests: 429,
  AlreadyExists: 409,
  Conflict: 409,
  Gone: 410,
  Expired: 410,
  UnsupportedMediaType: 415,
  Invalid: 422,
  InternalError: 500,
  ServiceUnavailable: 503,
  Timeout: 504,
});

export interface ErrorDetails {
  /** resource kind, e.g. `Service` (upstream puts the lower-case plural group resource in `details.kind`) */
  kind?: string;
  name?: string;
  group?: string;
  causes?: FieldError[];
  /** for `ServiceUnavailable`/`Timeout`: when to try again (the API sends it as `Retry-After`) */
  retryAfterSeconds?: number;
}

export class ApiError extends Error {
  readonly reason: Reason;
  readonly code: number;
  readonly details: ErrorDetails;
  constructor(reason: Reason, message: string, details: ErrorDetails = {}) {
    super(message);
    this.name = 'ApiError';
    this.reason = reason;
    this.code = REASON_CODES[reason];
    this.details = details;
  }
}

export const isApiError = (e: unknown, reason?: Reason): e is ApiError =>
  e instanceof ApiError && (reason === undefined || e.reason === reason);

/** Upstream resource names are lower-case plurals (`services`); messages use them as `services "x" not found`. */
export const notFound = (resource: string, name: string): ApiError =>
  new ApiError('NotFound', `${resource} "${name}" not found`, { kind: resource, name });

export const alreadyExists = (resource: string, name: string): ApiError =>
  new ApiError('AlreadyExists', `${resource} "${name}" already exists`, { kind: resource, name });

export const conflict = (resource: string, name: string, why: string): ApiError =>
  new ApiError(
    'Conflict',
    `Operation cannot be fulfilled on ${resource} "${name}": ${why}`,
    { kind: resource, name },
  );

export const gone = (message: string): ApiError => new ApiError('Gone', message);

export const badRequest = (message: string): ApiError => new ApiError('BadRequest', message);

/**
 * `<Kind> "<name>" is invalid: <cause>` (one cause) or `...: [<c1>, <c2>]` (several), exactly
 * as apimachinery's NewInvalid builds its message.
 */
export function invalidObject(kind: string, name: string, causes: FieldError[]): ApiError {
  const msgs = causes.map(formatFieldError);
  const body = msgs.length === 1 ? msgs[0] : `[${msgs.join(', ')}]`;
  return new ApiError('Invalid', `${kind} "${name}" is invalid: ${body}`, { kind, name, causes });
}
