/**
 * `validateObject` — the one entry point: kind dispatch, create vs update (`old` given), all
 * problems at once in upstream order. Input is the defaulted object (see `applyDefaults`).
 * Kinds without rules here get ObjectMeta validation only.
 */
import type { FieldError } from '../field.js';
import type { ValidateOptions } from '../kind.js';
import { kindDecl } from '../kinds/index.js';
import { validateMetaOnly } from '../kinds/meta-only.js';
import type { KObject } from '../types.js';
import { type Rec, isRec } from './meta.js';

/**
 * All problems of a create (`old` undefined) or update of `obj`, by its kind's declaration
 * (api/kinds/); kinds that declare no validator get ObjectMeta validation by their name rule.
 */
export function validateObject(obj: KObject, old?: KObject, opts: ValidateOptions = {}): FieldError[] {
  const o: Rec = isRec(obj) ? (obj as Rec) : {};
  const prev: Rec | undefined = old && isRec(old) ? (old as Rec) : undefined;
  const kind = typeof o.kind === 'string' ? o.kind : '';
  const decl = kindDecl(kind);
  if (decl?.validate) return decl.validate(o, prev, opts);
  return validateMetaOnly(o, prev, { namespaced: decl?.info.namespaced ?? true, nameFn: decl?.nameRule });
}

export type { ValidateOptions } from '../kind.js';
export { validateServiceStatus } from './service.js';
export { LOOPBACK_HINT } from './endpoints.js';
