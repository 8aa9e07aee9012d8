/**
 * ConfigMap and Secret validation, as upstream's `ValidateConfigMap(Update)` and
 * `ValidateSecret(Update)`: keys are config keys, the payload is at most 1 MiB, a key is not in
 * both `data` and `binaryData`, typed Secrets carry the keys their type needs, `type` never
 * changes, and an `immutable` object's payload never changes. Values arrive already type-checked
 * (strings; base64 where the field is bytes) or are reported here if they are not.
 */
import { type FieldError, type Path, forbidden, invalid, path, required, tooLong } from '../field.js';
import { isConfigMapKey, nameIsDNSSubdomain } from '../names.js';
import { type Rec, isRec, jsonEqual, validateImmutable, validateObjectMeta, validateObjectMetaUpdate } from './meta.js';

/** core.MaxSecretSize, the limit of a ConfigMap's and a Secret's payload */
export const MAX_PAYLOAD_BYTES = 1024 * 1024;

const byteLength = (v: string, base64: boolean): number => (base64 ? Buffer.from(v, 'base64').length : Buffer.byteLength(v));

/** A string→string map's entries; a non-object or a non-string value is reported. */
function entries(v: unknown, p: Path, errs: FieldError[]): Array<[string, string]> {
  if (v === undefined || v === null) return [];
  if (!isRec(v)) {
    errs.push(invalid(p, v, 'must be an object'));
    return [];
  }
  const out: Array<[string, string]> = [];
  for (const [k, x] of Object.entries(v)) {
    if (typeof x === 'string') out.push([k, x]);
    else errs.push(invalid(p.key(k), x, 'must be a string'));
  }
  return out;
}

export function validateConfigMap(cm: Rec): FieldError[] {
  const errs = validateObjectMeta(cm.metadata, { namespaced: true, nameFn: nameIsDNSSubdomain }, path('metadata'));
  const data = entries(cm.data, path('data'), errs);
  const binary = entries(cm.binaryData, path('binaryData'), errs);
  const binaryKeys = new Set(binary.map(([k]) => k));
  let total = 0;
  for (const [k, v] of data) {
    for (const msg of isConfigMapKey(k)) errs.push(invalid(path('data').key(k), k, msg));
    if (binaryKeys.has(k)) errs.push(invalid(path('data').key(k), k, 'duplicate of key present in binaryData'));
    total += byteLength(v, false);
  }
  for (const [k, v] of binary) {
    for (const msg of isConfigMapKey(k)) errs.push(invalid(path('binaryData').key(k), k, msg));
    total += byteLength(v, true);
  }
  if (total > MAX_PAYLOAD_BYTES) errs.push(tooLong('', MAX_PAYLOAD_BYTES));
  return errs;
}

const SA_NAME_KEY = 'kubernetes.io/service-account.name';

/** The keys each built-in Secret type requires (`ValidateSecret`'s switch). */
function validateSecretType(type: string, data: Map<string, string>, annotations: unknown, errs: FieldError[]): void {
  const dp = path('data');
  switch (type) {
    case 'kubernetes.io/service-account-token': {
      const name = isRec(annotations) ? annotations[SA_NAME_KEY] : undefined;
      if (typeof name !== 'string' || name === '') errs.push(required(path('metadata', 'annotations').key(SA_NAME_KEY)));
      break;
    }
    case 'kubernetes.io/dockercfg':
    case 'kubernetes.io/dockerconfigjson': {
      const key = type === 'kubernetes.io/dockercfg' ? '.dockercfg' : '.dockerconfigjson';
      const v = data.get(key);
      if (v === undefined) {
        errs.push(required(dp.key(key)));
        break;
      }
      let ok = false;
      try {
        const parsed: unknown = JSON.parse(Buffer.from(v, 'base64').toString('utf8'));
        ok = isRec(parsed);
      } catch {
        ok = false;
      }
      if (!ok) errs.push(invalid(dp.key(key), '<secret contents redacted>', 'must be a JSON object'));
      break;
    }
    case 'kubernetes.io/basic-auth':
      if (!data.has('username') && !data.has('password')) {
        errs.push(required(dp.key('username')));
        errs.push(required(dp.key('password')));
      }
      break;
    case 'kubernetes.io/ssh-auth':
      if (!data.get('ssh-privatekey')) errs.push(required(dp.key('ssh-privatekey')));
      break;
    case 'kubernetes.io/tls':
      if (!data.has('tls.crt')) errs.push(required(dp.key('tls.crt')));
      if (!data.has('tls.key')) errs.push(required(dp.key('tls.key')));
      break;
    default:
    // Opaque and custom types carry any keys
  }
}

export function validateSecret(s: Rec): FieldError[] {
  const errs = validateObjectMeta(s.metadata, { namespaced: true, nameFn: nameIsDNSSubdomain }, path('metadata'));
  const dp = path('data');
  const data = new Map(entries(s.data, dp, errs));
  let total = 0;
  for (const [k, v] of data) {
    for (const msg of isConfigMapKey(k)) errs.push(invalid(dp.key(k), k, msg));
    total += byteLength(v, true);
  }
  if (total > MAX_PAYLOAD_BYTES) errs.push(tooLong(dp, MAX_PAYLOAD_BYTES));
  if (s.type !== undefined && s.type !== null && typeof s.type !== 'string') errs.push(invalid(path('type'), s.type, 'must be a string'));
  else validateSecretType((s.type as string | undefined) ?? '', data, isRec(s.metadata) ? s.metadata.annotations : undefined, errs);
  return errs;
}

/** `immutable: true` freezes the payload, and cannot be unset. */
function validateImmutablePayload(obj: Rec, old: Rec, fields: readonly string[]): FieldError[] {
  if (old.immutable !== true) return [];
  const errs: FieldError[] = [];
  if (obj.immutable !== true) errs.push(forbidden(path('immutable'), 'field is immutable when `immutable` is set'));
  for (const f of fields) {
    if (!jsonEqual(obj[f] ?? {}, old[f] ?? {})) errs.push(forbidden(path(f), 'field is immutable when `immutable` is set'));
  }
  return errs;
}

export function validateConfigMapUpdate(cm: Rec, old: Rec): FieldError[] {
  return [
    ...validateObjectMetaUpdate(cm.metadata, old.metadata, path('metadata')),
    ...validateImmutablePayload(cm, old, ['data', 'binaryData']),
    ...validateConfigMap(cm),
  ];
}

export function validateSecretUpdate(s: Rec, old: Rec): FieldError[] {
  return [
    ...validateObjectMetaUpdate(s.metadata, old.metadata, path('metadata')),
    ...validateImmutable(s.type ?? '', old.type ?? '', path('type')),
    ...validateImmutablePayload(s, old, ['data']),
    ...validateSecret(s),
  ];
}
