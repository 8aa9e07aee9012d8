/**
 * The dependency direction of DESIGN.md, enforced: each layer imports only the layers below it,
 * and the components (controllers, agent/runtime, agent/proxy, dns, server) never import each
 * other — they meet in the store.
 */
import t from 'tap';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const SRC = resolve(import.meta.dirname, '..', '..', 'src');

const LAYERS: Record<string, readonly string[]> = {
  api: [],
  util: [],
  store: ['api', 'util'],
  controllers: ['store', 'api', 'util'],
  'agent/runtime': ['store', 'api', 'util'],
  'agent/proxy': ['store', 'api', 'util'],
  // the kubelet's endpoint serves the runtime's pods (exec needs their processes, logs their files)
  'agent/endpoint': ['store', 'api', 'util', 'agent/runtime'],
  // several machines: this node's pods served to other nodes, theirs answered here
  'agent/tunnel': ['store', 'api', 'util'],
  dns: ['store', 'api', 'util'],
  server: ['store', 'api', 'util'],
  images: [],
  cli: ['api', 'util', 'store', 'controllers', 'agent/runtime', 'agent/proxy', 'agent/endpoint', 'agent/tunnel', 'dns', 'server'],
};

const layerOf = (file: string): string => {
  const rel = relative(SRC, file);
  const parts = rel.split('/');
  return parts[0] === 'agent' ? `agent/${parts[1]}` : parts[0];
};

function* files(dir: string): Generator<string> {
  for (const f of readdirSync(dir)) {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) yield* files(p);
    else if (/\.(ts|mjs)$/.test(f)) yield p;
  }
}

t.test('every import of ours follows the layer table', async (t) => {
  const bad: string[] = [];
  let checked = 0;
  for (const file of files(SRC)) {
    const from = layerOf(file);
    const allowed = LAYERS[from];
    t.ok(allowed, `${relative(SRC, file)} is in a known layer`);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:import|export)[^'"]*?from\s+['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g)) {
      const spec = m[1] ?? m[2];
      const target = resolve(dirname(file), spec);
      if (!target.startsWith(SRC)) continue;
      checked++;
      const to = layerOf(target);
      if (to !== from && !allowed?.includes(to)) bad.push(`${relative(SRC, file)} → ${relative(SRC, target)} (${from} may not import ${to})`);
    }
  }
  t.ok(checked > 100, `scanned ${checked} imports`);
  t.same(bad, [], 'no import crosses the architecture');
});
