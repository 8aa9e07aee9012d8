#!/usr/bin/env node
// Entry point. Runs the compiled JavaScript in dist/ (`npm ci` builds it: the `prepare`
// script). In a developer checkout where src/ changed since the last build, it runs the
// TypeScript sources through tsx instead (a devDependency), so edits take effect without a
// build step; with neither a fresh dist/ nor tsx it says how to build, in one line.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Is dist/ a complete build of the current src/? (stamp written by bin/build.mjs) */
function distIsFresh() {
  let builtAt;
  try {
    builtAt = Number(readFileSync(`${root}dist/.built`, 'utf8'));
  } catch {
    return false;
  }
  let entries;
  try {
    entries = readdirSync(`${root}src`, { recursive: true });
  } catch {
    return true; // an installed package ships dist/ only
  }
  for (const e of entries) {
    try {
      if (statSync(`${root}src/${e}`).mtimeMs >= builtAt) return false;
    } catch {
      // removed while we looked: a rebuild would not bring it back either
    }
  }
  return true;
}

async function loadMain() {
  // KUBELOOP_FROM_SOURCE=1 (the test suite's setting: tests run the TypeScript, as tap does)
  if (process.env.KUBELOOP_FROM_SOURCE !== '1' && distIsFresh()) return import('../dist/cli/main.js');
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
