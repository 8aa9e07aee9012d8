/**
 * `application/vnd.kubernetes.protobuf` request bodies → the JSON form of the object.
 *
 * Wire format: the magic `k8s\0`, then a runtime.Unknown whose typeMeta names the object and
 * whose `raw` is the object's message. Decoding uses protobufjs against schema.ts.
 */
import { createRequire } from 'node:module';
import type protobuf from 'protobufjs';
import { ApiError } from '../../api/errors.js';
import { afterStartup } from '../../util/after-startup.js';
import { K8S_PROTO, POINTER_FIELDS, PROTO_KINDS } from './schema.js';

const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

// protobufjs is not needed to start (kubectl sends JSON): it loads in the background once
// start-up is over, or at once (synchronously, once) if a protobuf body comes before that
let pb: typeof protobuf | undefined;
afterStartup(() => {
  import('protobufjs').then((m) => (pb ??= m.default), () => undefined);
});
let root: protobuf.Root | undefined;
function types(): protobuf.Root {
  pb ??= createRequire(import.meta.url)('protobufjs') as typeof protobuf;
  root ??= pb.parse(K8S_PROTO, { keepCase: true }).root;
  return root;
}

type Rec = Record<string, unknown>;
const isObj = (v: unknown): v is Rec => v !== null && typeof v === 'object' && !Array.isArray(v);

export const PROTOBUF = 'application/vnd.kubernetes.protobuf';

const unsupported = (message: string): ApiError => new ApiError('UnsupportedMediaType', message);

/** Decodes a protobuf body to a JSON object (apiVersion and kind included). */
export function decodeProtobuf(body: Buffer): Rec {
  if (body.length < 4 || !body.subarray(0, 4).equals(MAGIC)) {
    throw new ApiError('BadRequest', 'the body of the request is not a Kubernetes protobuf object: it does not start with the "k8s\\x00" prefix');
  }
  const root = types();
  let unknown: Rec;
  try {
    unknown = root.lookupType('k8s.Unknown').toObject(root.lookupType('k8s.Unknown').decode(body.subarray(4)), { longs: Number, bytes: Buffer }) as Rec;
  } catch (e) {
    throw new ApiError('BadRequest', `cannot decode the protobuf body: ${(e as Error).message}`);
  }
  const tm = (unknown.typeMeta ?? {}) as { apiVersion?: string; kind?: string };
  const gvk = `${tm.apiVersion ?? ''}/${tm.kind ?? ''}`;
  const name = PROTO_KINDS[gvk];
  if (!name) {
    throw unsupported(
      `kubeloop cannot decode protobuf bodies of ${tm.kind ?? 'this kind'} (${tm.apiVersion ?? '?'}): send it as JSON or YAML instead (kubectl apply -f / create -f do)`,
    );
  }
  const type = root.lookupType(`k8s.${name}`);
  let msg: Rec;
  try {
    msg = type.toObject(type.decode((unknown.raw as Buffer | undefined) ?? Buffer.alloc(0)), {
      longs: Number,
      bytes: String,
      defaults: false,
      arrays: false,
      objects: false,
    }) as Rec;
  } catch (e) {
    throw new ApiError('BadRequest', `cannot decode the protobuf ${tm.kind}: ${(e as Error).message}`);
  }
  const out = toJson(msg, type) as Rec;
  return { apiVersion: tm.apiVersion, kind: tm.kind, ...out };
}

/** protobufjs object → the JSON the Go types would marshal (omitempty, inlined structs, special types). */
function toJson(v: unknown, type: protobuf.Type | undefined): unknown {
  if (!isObj(v) || !type) return v;
  switch (type.name) {
    case 'Time': {
      const s = Number(v.seconds ?? 0);
      if (!s) return undefined;
      return new Date(s * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
    }
    case 'IntOrString':
      return Number(v.type ?? 0) === 1 ? String(v.strVal ?? '') : Number(v.intVal ?? 0);
    case 'Quantity':
      return v.string === undefined || v.string === '' ? undefined : v.string;
  }
  const out: Rec = {};
  for (const [k, raw] of Object.entries(v)) {
    const field = type.fields[k];
    const sub = field?.resolve().resolvedType instanceof pb!.Type ? (field.resolvedType as protobuf.Type) : undefined;
    let val: unknown;
    if (field?.map) {
      const entries = Object.entries(raw as Rec).map(([mk, mv]) => [mk, sub ? toJson(mv, sub) : mv] as const);
      val = entries.length ? Object.fromEntries(entries) : undefined;
    } else if (Array.isArray(raw)) {
      const items = raw.map((x) => (sub ? toJson(x, sub) : x)).filter((x) => x !== undefined);
      val = items.length ? items : undefined;
    } else {
      val = sub ? toJson(raw, sub) : raw;
    }
    if (k.startsWith('_inline_')) {
      if (isObj(val)) Object.assign(out, val);
      continue;
    }
    if (val === undefined) continue;
    if (!POINTER_FIELDS.has(k) && (val === '' || val === false || val === 0)) continue;
    if (isObj(val) && Object.keys(val).length === 0 && !keepsEmpty(k)) {
      out[k] = {};
      continue;
    }
    out[k] = val;
  }
  return out;
}

/** `resources: {}` and friends round-trip as empty objects; keeping them is harmless. */
const keepsEmpty = (_k: string): boolean => true;
