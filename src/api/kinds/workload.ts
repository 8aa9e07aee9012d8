/** The validator shape of the workload kinds: the kind's rules, plus metadata and spec update rules. */
import type { FieldError } from '../field.js';
import { path } from '../field.js';
import { type Rec, validateObjectMetaUpdate } from '../validation/meta.js';
import { validateWorkloadSpecUpdate } from '../validation/workloads.js';

export function workloadValidator(kind: string, validate: (o: Rec) => FieldError[]): (o: Rec, old: Rec | undefined) => FieldError[] {
  return (o, old) => {
    if (!old) return validate(o);
    return [...validateObjectMetaUpdate(o.metadata, old.metadata, path('metadata')), ...validate(o), ...validateWorkloadSpecUpdate(kind, o, old)];
  };
}
