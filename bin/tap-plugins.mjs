#!/usr/bin/env node
// `npm test`'s pretest (after bin/build.mjs): builds tap for the plugin set package.json asks
// for ("!@tapjs/typescript": tests load TypeScript through tsx, test/setup/tsx.mjs) when the
// installed tap was built for another set. tap rebuilds itself on a run that finds a mismatch,
// but that run's test processes still get the loaders of the set it started with: after every
// `npm ci` (a fresh clone in CI, always) the first `npm test` ran each of its 132 test processes
// with @tapjs/typescript's ts-node loader too, 2–5× slower per file. Nothing to do (a few ms)
// when the build matches; outside a checkout with its devDependencies, nothing either.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

let config;
let signature;
try {
  const { TapConfig } = await import('@tapjs/config');
  ({ signature } = await import('@tapjs/test'));
  config = await TapConfig.load();
} catch {
  process.exit(0); // tap is not installed here: nothing to build
}
if (config.pluginSignature === signature) process.exit(0);
console.log('kubeloop: building tap for the plugins package.json names (once after an install)');
const tap = fileURLToPath(new URL('../node_modules/.bin/tap', import.meta.url));
const r = spawnSync(tap, ['build'], { stdio: 'inherit' });
process.exit(r.status ?? 1);
