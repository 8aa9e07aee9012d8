/**
 * The upstream field descriptions for OpenAPI (`kubectl explain`), taken from a kept package:
 * `kubernetes-types` (a runtime dependency) is generated from the Kubernetes OpenAPI spec and
 * carries each definition's and each property's `description` as the TSDoc comment above it.
 * They are read once, asynchronously, in the background just after the API starts (~0.8 MB of
 * declaration files, parsed line by line: 0.2–0.4 s on a quiet machine), not on the start-up path.
 */
import { readFile, readdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export interface TypeDescription {
  description?: string;
  fields: Map<string, string>;
  /** the properties the type requires (declared without `?`) */
  required: string[];
}

/** `apps/v1.DeploymentSpec` (package path as in kubernetes-types, then the type) → descriptions */
export type Descriptions = ReadonlyMap<string, TypeDescription>;

/** The comment text of a TSDoc block's lines: `*` margins and the delimiters dropped, lines joined with newlines. */
function commentText(lines: string[]): string {
  return lines
    .map((l) => l.replace(/^\s*\/\*\*\s?/, '').replace(/\s*\*\/\s*$/, '').replace(/^\s*\*\s?/, ''))
    .join('\n')
    .trim();
}

/** The descriptions of one declaration file (`export interface X {` and its `field?: T;` lines). */
export function parseDeclarations(text: string, pkg: string, into: Map<string, TypeDescription>): void {
  let comment: string | undefined;
  let block: string[] | undefined;
  let current: TypeDescription | undefined;
  for (const line of text.split('\n')) {
    if (block) {
      block.push(line);
      if (line.includes('*/')) {
        comment = commentText(block);
        block = undefined;
      }
      continue;
    }
    const t = line.trim();
    if (t.startsWith('/**')) {
      if (t.endsWith('*/')) comment = commentText([t]);
      else block = [t];
      continue;
    }
    const iface = /^export interface (\w+)/.exec(t);
    if (iface) {
      current = { ...(comment ? { description: comment } : {}), fields: new Map(), required: [] };
      into.set(`${pkg}.${iface[1]}`, current);
    } else if (t === '}') {
      current = undefined;
    } else if (current) {
      const field = /^(?:readonly\s+)?["']?([\w$-]+)["']?(\??):/.exec(t);
      if (field && comment) current.fields.set(field[1], comment);
      if (field && !field[2]) current.required.push(field[1]);
    }
    comment = undefined;
  }
}

let loading: Promise<Descriptions> | undefined;

/** Every description of kubernetes-types, once (later calls share the first read); empty if the package cannot be read. */
export function loadDescriptions(): Promise<Descriptions> {
  loading ??= (async () => {
    const out = new Map<string, TypeDescription>();
    try {
      const root = dirname(createRequire(import.meta.url).resolve('kubernetes-types/package.json'));
      for (const group of await readdir(root, { withFileTypes: true })) {
        if (!group.isDirectory()) continue;
        for (const f of await readdir(join(root, group.name))) {
          const m = /^(v\d+(?:(?:alpha|beta)\d+)?)\.d\.ts$/.exec(f);
          if (m) parseDeclarations(await readFile(join(root, group.name, f), 'utf8'), `${group.name}/${m[1]}`, out);
        }
      }
    } catch {
      // no descriptions: kubectl explain prints the fields without them
    }
    return out;
  })();
  return loading;
}

/**
 * The descriptions of an OpenAPI definition name: `io.k8s.api.apps.v1.DeploymentSpec` →
 * `apps/v1.DeploymentSpec`, `io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta` →
 * `meta/v1.ObjectMeta`; a type named in another package than the one the definition was filed
 * under is found by its name in `core/v1`, then `meta/v1`.
 */
export function describe(d: Descriptions, definition: string): TypeDescription | undefined {
  const m = /^io\.k8s\.(?:api|apimachinery\.pkg\.apis)\.(\w+)\.(v\w+)\.(\w+)$/.exec(definition);
  if (!m) return undefined;
  return d.get(`${m[1]}/${m[2]}.${m[3]}`) ?? d.get(`core/v1.${m[3]}`) ?? d.get(`meta/v1.${m[3]}`);
}
