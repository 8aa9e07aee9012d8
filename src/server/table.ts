/**
 * `as=Table` responses (meta.k8s.io/v1 Table): what `kubectl get` prints. Rows carry the object
 * as PartialObjectMetadata (default), the whole object (`includeObject=Object`, for
 * `--sort-by`) or nothing (`None`).
 */
import type { KObject } from '../api/types.js';
import { printerFor } from './printers.js';

export type IncludeObject = 'None' | 'Metadata' | 'Object';

export interface TableOptions {
  includeObject: IncludeObject;
  /** leave out columnDefinitions (watch events after the first) */
  noHeaders?: boolean;
  /** the version the client asked for: `v1` or `v1beta1` */
  version?: string;
}

function rowObject(o: KObject, include: IncludeObject): unknown {
  if (include === 'None') return undefined;
  if (include === 'Object') return o;
  const { managedFields: _mf, ...metadata } = o.metadata ?? {};
  return { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata };
}

export function toTable(kind: string, objects: readonly KObject[], opts: TableOptions, listMeta: Record<string, unknown> = {}): Record<string, unknown> {
  const p = printerFor(kind);
  const now = Date.now();
  return {
    kind: 'Table',
    apiVersion: `meta.k8s.io/${opts.version ?? 'v1'}`,
    metadata: listMeta,
    ...(opts.noHeaders ? {} : { columnDefinitions: p.columns }),
    rows: objects.map((o) => {
      const object = rowObject(o, opts.includeObject);
      return { cells: p.cells(o, now), ...(object !== undefined ? { object } : {}) };
    }),
  };
}

/** Does the Accept header ask for a Table? Returns the version asked for, or undefined. */
export function tableVersion(accept: string | undefined): string | undefined {
  for (const part of (accept ?? '').split(',')) {
    const p = part.replace(/\s+/g, '');
    if (!p.includes('as=Table')) {
      if (/^(application\/json|\*\/\*)/.test(p)) return undefined;
      continue;
    }
    if (!p.includes('g=meta.k8s.io')) continue;
    return p.includes('v=v1beta1') ? 'v1beta1' : 'v1';
  }
  return undefined;
}
