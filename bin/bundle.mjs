// The CLI's start-up bundle: dist/bundle/main.js and its chunks, made by bin/build.mjs from the
// tsc output in dist/. Node's ESM loader costs about 1 ms of CPU per module of ours (resolve,
// read, compile, link: ~200 modules at `up`); one bundle, split only at dynamic imports (they
// stay lazy), loads in half the time. Packages stay external (loaded from node_modules as before).
//
// Every file of dist/ stays where tsc put it: the proxy's worker processes, the built-in images
// and the test suite use them. Inside the bundle each module's `import.meta.url` is rewritten to
// the URL of its own file in dist/ (computed from the chunk's URL at run time), so paths it
// resolves relative to itself (the worker entry, the images, config/, package.json) are the same.
//
// esbuild comes with tsx (a devDependency, installed wherever `npm ci` builds); without it the
// bundle is not made and bin/kubeloop.mjs runs dist/cli/main.js.
import { readFile, rm } from 'node:fs/promises';
import { relative } from 'node:path';

export async function bundle(root) {
  const dist = `${root}dist`;
  const out = `${dist}/bundle`;
  // never a bundle of an earlier build next to this one's files
  await rm(out, { recursive: true, force: true });
  let esbuild;
  try {
    esbuild = await import('esbuild');
  } catch {
    return false;
  }
  const ownUrl = {
    name: 'own-import-meta-url',
    setup(b) {
      b.onLoad({ filter: /[\\/]dist[\\/].*\.js$/ }, async (args) => {
        const text = await readFile(args.path, 'utf8');
        if (!text.includes('import.meta.url')) return { contents: text, loader: 'js' };
        // from dist/bundle/<chunk>.js, '../<path in dist>' is the module's own file
        const rel = `../${relative(dist, args.path).split('\\').join('/')}`;
        return { contents: text.replaceAll('import.meta.url', `new URL(${JSON.stringify(rel)}, import.meta.url).href`), loader: 'js' };
      });
    },
  };
  try {
    await esbuild.build({
      entryPoints: { main: `${dist}/cli/main.js` },
      outdir: out,
      bundle: true,
      splitting: true,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      packages: 'external',
      keepNames: true,
      sourcemap: true,
      logLevel: 'warning',
      plugins: [ownUrl],
    });
  } catch (err) {
    await rm(out, { recursive: true, force: true });
    throw err;
  }
  return true;
}
