/**
 * What a kind is, declared once (`defineKind`): its identity (KindInfo), its model class, and
 * the object-level behaviour every layer reads — defaulting, update preparation, validation,
 * printer columns, the scale subresource's shape, which verbs it serves. One module per kind
 * (or per small group of kinds) under `api/kinds/`, listed in `api/kinds/index.ts`; the store
 * (defaults, validation, status), the server (discovery, routes, schemas, OpenAPI, managed
 * fields, tables, scale) and the CLI all derive their tables from that list.
 *
 * Server mechanics that are not a property of the kind stay in `server/` keyed by kind: the
 * protobuf message definitions, the pod's streaming subresources, and the hand-written printers
 * of the kinds that predate declared columns (server/printers.ts `PRINTERS` overrides them).
 */
import type { FieldError } from './field.js';
import type { NameFn } from './names.js';

type Rec = Record<string, unknown>;

export interface KindInfo {
  kind: string;
  /** `v1` or `group/version` */
  apiVersion: string;
  group: string;
  version: string;
  /** lower-case plural resource name, as in URLs and error messages */
  plural: string;
  singular: string;
  namespaced: boolean;
  shortNames: readonly string[];
  categories: readonly string[];
  /** has a `/status` subresource: status is not changed by a main-resource update */
  hasStatus: boolean;
}

export interface ValidateOptions {
  /**
   * Accept Endpoints addresses and Service `externalIPs` in 127.0.0.0/8 and ::1 (upstream
   * rejects them); daemon flag `--allow-loopback-endpoints`.
   */
  allowLoopbackEndpoints?: boolean;
  /** the subresource written (pods/ephemeralcontainers has rules of its own) */
  subresource?: 'status' | 'ephemeralcontainers';
}

/** A printer column declared with the kind (as a CRD's additionalPrinterColumns); Name comes first and Age last by themselves. */
export interface DeclaredColumn {
  name: string;
  /** OpenAPI type of the cells: string (default), integer, number, boolean, date */
  type?: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  /** 1: only with `-o wide` */
  priority?: number;
  description?: string;
  value(obj: Rec): string | number | boolean;
}

/** The verbs of upstream's RequestInfo for resource requests. */
export type Verb = 'create' | 'delete' | 'deletecollection' | 'get' | 'list' | 'patch' | 'update' | 'watch';

export interface KindDecl {
  info: KindInfo;
  /** the `@kubernetes/client-node` model class: field schema, OpenAPI, managed fields (e.g. `V1Lease`); none: fields unchecked */
  model?: string;
  /** upstream's SetDefaults for the kind, in place; must not throw on malformed input */
  defaults?(obj: Rec): void;
  /** update-time preparation (after defaulting, before validation), e.g. a Service keeping its allocated ClusterIP */
  prepareUpdate?(obj: Rec, old: Rec): void;
  /**
   * All field errors of a create (`old` undefined) or update, metadata included. Kinds without
   * one get ObjectMeta validation by `nameRule` (DNS subdomain when unset).
   */
  validate?(obj: Rec, old: Rec | undefined, opts: ValidateOptions): FieldError[];
  /** the name rule of a kind validated by metadata only (Namespace: a DNS label) */
  nameRule?: NameFn;
  /** printer columns between Name and Age (`kubectl get`) */
  columns?: readonly DeclaredColumn[];
  /** has `/scale` (autoscaling/v1 Scale): where the replica count and the selector are */
  scale?: { selector: 'labelSelector' | 'map' };
  /**
   * proto2 message definitions of the kind (package `k8s`, the top message named as the kind,
   * upstream's field numbers; shared messages such as ObjectMeta are defined by the server), for
   * the protobuf bodies kubectl's typed clients send (`kubectl create serviceaccount`, `auth can-i`)
   */
  protobuf?: string;
  /** the verbs served when not all eight (upstream registries without e.g. DeleteCollection) */
  verbs?: readonly Verb[];
  /** a create-only "virtual" kind (SelfSubjectAccessReview): answered by the server, never stored */
  virtual?: boolean;
}

/** A kind's info from its apiVersion and plural, with upstream's usual defaults (namespaced, no status). */
export function infoOf(
  kind: string,
  apiVersion: string,
  plural: string,
  opts: Partial<Pick<KindInfo, 'namespaced' | 'shortNames' | 'categories' | 'hasStatus'>> = {},
): KindInfo {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  return Object.freeze({
    kind,
    apiVersion,
    group,
    version,
    plural,
    singular: kind.toLowerCase(),
    namespaced: opts.namespaced ?? true,
    shortNames: Object.freeze(opts.shortNames ?? []),
    categories: Object.freeze(opts.categories ?? []),
    hasStatus: opts.hasStatus ?? false,
  });
}

/** Freezes a declaration (its info already is). */
export function defineKind(d: KindDecl): KindDecl {
  return Object.freeze({ ...d, ...(d.columns ? { columns: Object.freeze([...d.columns]) } : {}) });
}
