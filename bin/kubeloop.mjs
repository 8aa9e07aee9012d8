#!/usr/bin/env node
// Entry point. Runs the compiled JavaScript in dist/ (`npm ci` builds it: the `prepare`
// script). In a developer checkout where src/ changed since the last build, it runs the
// TypeScript sources through tsx instead (a devDependency), so edits take effect without a
// build step; with neither a fresh dist/ nor tsx it says how to build, in one line.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { distIsFresh } from './dist-fresh.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

async function loadMain() {
  // KUBELOOP_FROM_SOURCE=1 runs the TypeScript through tsx even when dist/ is current (test/strict-node does)
  if (process.env.KUBELOOP_FROM_SOURCE !== '1' && distIsFresh(root)) return import(existsSync(`${root}dist/bundle/main.js`) ? '../dist/bundle/main.js' : '../dist/cli/main.js');
  let register;
  try {
    ({ register } = await import('tsx/esm/api'));
  } catch {
    console.error('kubeloop: dist/ is missing or older than src/: run npm run build (or npm ci) in the kubeloop checkout');
    process.exit(1);
  }
  if (process.stderr.isTTY && process.env.KUBELOOP_FROM_SOURCE !== '1') {
    console.error('kubeloop: src/ is newer than dist/: running the sources through tsx (slower start; npm run build makes dist/ current)');
  }
  register();
  return import('../src/cli/main.ts');
}

const { main } = await loadMain();
process.exitCode = await main(process.argv.slice(2));
