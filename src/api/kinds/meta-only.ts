/** Validation shared by kind declarations: ObjectMeta alone, and "metadata update + spec rules". */
import type { FieldError } from '../field.js';
import { path } from '../field.js';
import { type NameFn, nameIsDNSSubdomain } from '../names.js';
import { type Rec, validateObjectMeta, validateObjectMetaUpdate } from '../validation/meta.js';

/** ObjectMeta of a create, plus the immutable-metadata rules of an update. */
export function validateMetaOnly(o: Rec, old: Rec | undefined, o2: { namespaced: boolean; nameFn?: NameFn }): FieldError[] {
  const errs = old ? validateObjectMetaUpdate(o.metadata, old.metadata, path('metadata')) : [];
  errs.push(...validateObjectMeta(o.metadata, { namespaced: o2.namespaced, nameFn: o2.nameFn ?? nameIsDNSSubdomain }, path('metadata')));
  return errs;
}

/** `validate(o)` (which checks metadata itself) on create; on update the metadata-update rules first. */
export function withMetaUpdate(validate: (o: Rec) => FieldError[]): (o: Rec, old: Rec | undefined) => FieldError[] {
  return (o, old) => (old ? [...validateObjectMetaUpdate(o.metadata, old.metadata, path('metadata')), ...validate(o)] : validate(o));
}
