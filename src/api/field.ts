/**
 * Field errors in the shape of k8s.io/apimachinery/pkg/util/validation/field:
 * `<path>: <Type>[: <value>][: <detail>]`. Paths are rendered `.child` and `[index]`.
 */

export type FieldErrorType =
  | 'FieldValueRequired'
  | 'FieldValueInvalid'
  | 'FieldValueDuplicate'
  | 'FieldValueForbidden'
  | 'FieldValueNotSupported'
  | 'FieldValueNotFound'
  | 'FieldValueTooLong';

export interface FieldError {
  type: FieldErrorType;
  /** rendered path, e.g. `spec.ports[1].name` */
  field: string;
  value?: unknown;
  detail?: string;
}

const LABELS: Record<FieldErrorType, string> = {
  FieldValueRequired: 'Required value',
  FieldValueInvalid: 'Invalid value',
  FieldValueDuplicate: 'Duplicate value',
  FieldValueForbidden: 'Forbidden',
  FieldValueNotSupported: 'Unsupported value',
  FieldValueNotFound: 'Not found',
  FieldValueTooLong: 'Too long',
};

/** Types whose message carries the offending value, as upstream's `ErrorBody`. */
const SHOWS_VALUE = new Set<FieldErrorType>([
  'FieldValueInvalid',
  'FieldValueDuplicate',
  'FieldValueNotSupported',
  'FieldValueNotFound',
]);

export function renderValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'object') {
    // upstream prints structs with %#v; a compact JSON form is the readable equivalent
    return JSON.stringify(v);
  }
  return String(v);
}

/** The message without the path: `Invalid value: 0: must be between 1 and 65535, inclusive`. */
export function fieldErrorBody(e: FieldError): string {
  let s = LABELS[e.type];
  if (SHOWS_VALUE.has(e.type)) s += `: ${renderValue(e.value)}`;
  if (e.detail) s += `: ${e.detail}`;
  return s;
}

export function formatFieldError(e: FieldError): string {
  return `${e.field}: ${fieldErrorBody(e)}`;
}

/** A field path builder: `path('spec').child('ports').index(1).child('name').toString()`. */
export class Path {
  readonly #s: string;
  constructor(s = '') {
    this.#s = s;
  }
  child(name: string): Path {
    return new Path(this.#s ? `${this.#s}.${name}` : name);
  }
  index(i: number): Path {
    return new Path(`${this.#s}[${i}]`);
  }
  key(k: string): Path {
    return new Path(`${this.#s}[${k}]`);
  }
  toString(): string {
    return this.#s;
  }
}

export const path = (...parts: string[]): Path => parts.reduce((p, n) => p.child(n), new Path());

const str = (p: Path | string): string => (typeof p === 'string' ? p : p.toString());

export const required = (p: Path | string, detail?: string): FieldError => ({
  type: 'FieldValueRequired',
  field: str(p),
  ...(detail ? { detail } : {}),
});
export const invalid = (p: Path | string, value: unknown, detail?: string): FieldError => ({
  type: 'FieldValueInvalid',
  field: str(p),
  value,
  ...(detail ? { detail } : {}),
});
export const duplicate = (p: Path | string, value: unknown): FieldError => ({
  type: 'FieldValueDuplicate',
  field: str(p),
  value,
});
export const forbidden = (p: Path | string, detail: string): FieldError => ({
  type: 'FieldValueForbidden',
  field: str(p),
  detail,
});
export const notFound = (p: Path | string, value: unknown): FieldError => ({
  type: 'FieldValueNotFound',
  field: str(p),
  value,
});
export const notSupported = (p: Path | string, value: unknown, supported: readonly string[]): FieldError => ({
  type: 'FieldValueNotSupported',
  field: str(p),
  value,
  detail: `supported values: ${supported.map((v) => JSON.stringify(v)).join(', ')}`,
});
export const tooLong = (p: Path | string, max: number): FieldError => ({
  type: 'FieldValueTooLong',
  field: str(p),
  detail: `must have at most ${max} bytes`,
});
