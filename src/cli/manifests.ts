import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, relative } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { type KObject, KINDS, kindInfo } from '../api/types.js';
import { ApiError, isApiError } from '../api/errors.js';
import { formatFieldError } from '../api/field.js';
import type { Store } from '../store/types.js';

/** One YAML/JSON document of a manifest file, parsed or with what is wrong with it. */
export interface ManifestDoc {
  file: string;
  /** 1-based position of the document in its file */
  index: number;
  obj?: KObject;
  problems: string[];
}

export type ApplyAction = 'created' | 'configured' | 'unchanged';

export interface ApplyResult {
  applied: Array<{ ref: string; action: ApplyAction }>;
  /** one line per problem: `file [doc N] Kind/name: field: message` */
  problems: string[];
}

const MANIFEST_EXT = new Set(['.yaml', '.yml', '.json']);

/** Files named directly, and the manifest files directly inside named directories (sorted). */
export function expandPaths(paths: readonly string[]): { files: string[]; problems: string[] } {
  const files: string[] = [];
  const problems: string[] = [];
  for (const p of paths) {
    let st;
    try {
      st = statSync(p);
    } catch {
      problems.push(`${p}: no such file or directory`);
      continue;
    }
    if (st.isDirectory()) {
      for (const f of readdirSync(p).sort()) {
        if (MANIFEST_EXT.has(extname(f)) && statSync(join(p, f)).isFile()) files.push(join(p, f));
      }
    } else {
      files.push(p);
    }
  }
  return { files, problems };
}

/** Parses every document of every file; `kind: List` documents are expanded. */
export function readManifests(files: readonly string[], cwd = process.cwd()): ManifestDoc[] {
  const out: ManifestDoc[] = [];
  for (const abs of files) {
    const file = relative(cwd, abs) || abs;
    let text: string;
    try {
      text = readFileSync(abs, 'utf8');
    } catch (e) {
      out.push({ file, index: 0, problems: [`cannot read: ${(e as Error).message}`] });
      continue;
    }
    const docs = parseAllDocuments(text);
    const list = Array.isArray(docs) ? docs : [docs];
    list.forEach((doc, i) => {
      const index = i + 1;
      if (doc.errors.length) {
        out.push({ file, index, problems: doc.errors.map((e) => `invalid YAML: ${e.message.split('\n')[0]}`) });
        return;
      }
      const value: unknown = doc.toJS();
      if (value === null || value === undefined) return; // an empty document (e.g. a trailing ---)
      for (const obj of expandList(value)) out.push(checkShape(file, index, obj));
    });
  }
  return out;
}

function expandList(v: unknown): unknown[] {
  if (v && typeof v === 'object' && (v as KObject).kind === 'List' && Array.isArray((v as { items?: unknown }).items)) {
    return (v as { items: unknown[] }).items;
  }
  return [v];
}

function checkShape(file: string, index: number, v: unknown): ManifestDoc {
  if (!v || typeof v !== 'object' || Array.isArray(v)) {
    return { file, index, problems: ['expected a Kubernetes object (a mapping with apiVersion, kind and metadata)'] };
  }
  const obj = v as KObject;
  const problems: string[] = [];
  if (!obj.apiVersion) problems.push('apiVersion: Required value');
  if (!obj.kind) problems.push('kind: Required value');
  const info = obj.kind ? kindInfo(obj.kind) : undefined;
  if (obj.kind && !info) {
    problems.push(`kind: Unsupported value: "${obj.kind}": kubeloop serves ${KINDS.map((k) => k.kind).join(', ')}`);
  } else if (info && obj.apiVersion && obj.apiVersion !== info.apiVersion) {
    problems.push(`apiVersion: Unsupported value: "${obj.apiVersion}": ${info.kind} is served as "${info.apiVersion}"`);
  }
  if (obj.metadata !== undefined && (typeof obj.metadata !== 'object' || obj.metadata === null)) {
    problems.push('metadata: Invalid value: expected a mapping');
  }
  return problems.length ? { file, index, problems } : { file, index, obj, problems };
}

/** Namespaces first, then what pods consume, then Services (so pods get their env), then the rest. */
const ORDER = ['Namespace', 'ConfigMap', 'Secret', 'PersistentVolumeClaim', 'Service', 'Endpoints', 'EndpointSlice'];
const rank = (o: KObject): number => {
  const i = ORDER.indexOf(o.kind ?? '');
  return i < 0 ? ORDER.length : i;
};

const refOf = (o: KObject): string => {
  const info = kindInfo(o.kind ?? '');
  const ns = info?.namespaced ? `${o.metadata?.namespace ?? 'default'}/` : '';
  return `${(o.kind ?? '').toLowerCase()}/${ns}${o.metadata?.name ?? o.metadata?.generateName ?? ''}`;
};

function describe(e: unknown): string[] {
  if (isApiError(e) && e.details.causes?.length) return e.details.causes.map(formatFieldError);
  if (e instanceof ApiError) return [e.message];
  return [`internal error: ${(e as Error).message ?? String(e)}`];
}

/**
 * Applies documents in dependency order: create, or replace the spec of what exists
 * (allocated addresses are kept). A bad document is reported and skipped; others go on.
 */
export async function applyManifests(store: Store, docs: readonly ManifestDoc[]): Promise<ApplyResult> {
  const res: ApplyResult = { applied: [], problems: [] };
  for (const d of docs) {
    for (const p of d.problems) res.problems.push(`${d.file} [doc ${d.index}]: ${p}`);
  }
  const good = docs.filter((d) => d.obj).sort((a, b) => rank(a.obj!) - rank(b.obj!));
  for (const d of good) {
    const obj = d.obj!;
    const where = `${d.file} [doc ${d.index}] ${obj.kind}/${obj.metadata?.name ?? ''}`;
    try {
      res.applied.push({ ref: refOf(obj), action: await applyOne(store, obj) });
    } catch (e) {
      for (const line of describe(e)) res.problems.push(`${where}: ${line}`);
    }
  }
  return res;
}

/** what `kubectl apply` records, so a later `kubectl apply` of the same files merges cleanly */
const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

/**
 * The manifest with the last-applied annotation `kubectl apply` would give it — byte for byte
 * (keys sorted as Go's encoder writes them, `annotations: {}` when there are no others, the
 * namespace filled in, a trailing newline), so that `kubectl apply -f` of the same files after
 * `kubeloop up -f` finds nothing to change.
 */
function withLastApplied(obj: KObject, ns: string | undefined): KObject {
  const { [LAST_APPLIED]: _old, ...annotations } = obj.metadata?.annotations ?? {};
  const meta = { ...obj.metadata, annotations, ...(ns === undefined ? {} : { namespace: ns }) };
  const applied = `${sortedJson({ ...obj, metadata: meta })}\n`;
  return { ...obj, metadata: { ...meta, annotations: { ...annotations, [LAST_APPLIED]: applied } } };
}

/** JSON as Go's encoder writes a map: keys in byte order, `<`, `>`, `&`, U+2028/9 escaped. */
function sortedJson(v: unknown): string {
  return encode(v).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function encode(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : encode(x))).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${encode(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

async function applyOne(store: Store, manifest: KObject): Promise<ApplyAction> {
  const info = kindInfo(manifest.kind!)!;
  const ns = info.namespaced ? (manifest.metadata?.namespace ?? 'default') : undefined;
  const obj = withLastApplied(manifest, ns);
  const name = obj.metadata?.name;
  const existing = name ? await store.tryGet(obj.kind!, ns, name) : undefined;
  if (!existing) {
    await store.create(obj);
    return 'created';
  }
  const { resourceVersion: _rv, uid: _uid, ...meta } = obj.metadata ?? {};
  const next = await store.update({ ...obj, metadata: { ...meta, namespace: ns } });
  return next.metadata.resourceVersion === existing.metadata.resourceVersion ? 'unchanged' : 'configured';
}
