#!/usr/bin/env node
// `npm run build` (and `prepare`, so `npm ci` builds): compiles src/ to dist/ with tsc.
// dist/.built records when the build started; bin/kubeloop.mjs runs dist/ only when no file
// of src/ is newer than that. The stamp goes first and comes back last, so a half-written
// dist/ (or one compiled from a file edited while tsc ran) is never taken for a fresh one.
// A dist/ that is already current is kept (`--force` rebuilds): `npx kubeloop` runs `prepare`
// on its first use in a checkout, which would otherwise cost a full tsc run (~10 s, a minute
// on a busy machine) before the command even starts.
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { distIsFresh } from './dist-fresh.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const stamp = `${root}dist/.built`;
if (!process.argv.includes('--force') && distIsFresh(root)) {
  if (!['prepare', 'pretest'].includes(process.env.npm_lifecycle_event ?? '')) console.log('kubeloop build: dist/ is current (npm run build -- --force rebuilds it)');
  process.exit(0);
}
const startedAt = Date.now();
rmSync(stamp, { force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const r = spawnSync(process.execPath, [tsc, '-p', `${root}tsconfig.build.json`], { stdio: 'inherit' });
if (r.status !== 0) {
  console.error('kubeloop build: tsc failed (dist/ is left unstamped, so bin/kubeloop.mjs will not run it)');
  process.exit(r.status ?? 1);
}
mkdirSync(`${root}dist`, { recursive: true });
try {
  const { bundle } = await import('./bundle.mjs');
  if (!(await bundle(root))) console.error('kubeloop build: esbuild is not installed: no start-up bundle (dist/cli/main.js runs, slower to start)');
} catch (err) {
  console.error(`kubeloop build: the start-up bundle failed (${err.message}): dist/cli/main.js runs instead`);
}
writeFileSync(stamp, `${startedAt}\n`);
