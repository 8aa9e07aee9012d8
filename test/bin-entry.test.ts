/**
 * bin/kubeloop.mjs chooses what to run: dist/ when bin/build.mjs stamped it after the newest
 * file of src/ changed, else the sources through tsx when tsx is installed, else one line
 * naming the fix. Checked on a copy of bin/ beside a stub dist/ and src/ (no node_modules, so
 * no tsx), so the choice is observable without a build.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './helpers/daemon.js';

function run(bin: string, args = ['version']): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    // as a user runs it (KUBELOOP_FROM_SOURCE unset)
    execFile(process.execPath, [bin, ...args], { env: { ...process.env, NODE_OPTIONS: '', KUBELOOP_FROM_SOURCE: '' } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );
}

t.test('dist/ when current, else a one-line fix without tsx', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-bin-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'bin'));
  mkdirSync(join(dir, 'src', 'cli'), { recursive: true });
  mkdirSync(join(dir, 'dist', 'cli'), { recursive: true });
  const bin = join(dir, 'bin', 'kubeloop.mjs');
  for (const f of ['kubeloop.mjs', 'dist-fresh.mjs', 'build.mjs']) copyFileSync(join(ROOT, 'bin', f), join(dir, 'bin', f));
  writeFileSync(join(dir, 'dist', 'cli', 'main.js'), 'export async function main(argv) { console.log("compiled " + argv.join(" ")); return 0; }\n');
  const src = join(dir, 'src', 'cli', 'main.ts');
  writeFileSync(src, '');
  const old = new Date(Date.now() - 60_000);
  for (const p of [src, join(dir, 'src', 'cli'), join(dir, 'src')]) utimesSync(p, old, old);

  let r = await run(bin);
  t.equal(r.code, 1, 'no stamp: not taken for a build');
  t.equal(r.stderr, 'kubeloop: dist/ is missing or older than src/: run npm run build (or npm ci) in the kubeloop checkout\n', 'one line with the fix');

  writeFileSync(join(dir, 'dist', '.built'), `${Date.now()}\n`);
  r = await run(bin);
  t.equal(r.code, 0, 'stamped after src/ changed: dist/ runs');
  t.equal(r.stdout, 'compiled version\n', 'the compiled main got the arguments');

  const now = new Date(Date.now() + 1000);
  utimesSync(src, now, now);
  r = await run(bin);
  t.equal(r.code, 1, 'a source edited after the build: dist/ is stale');
  t.match(r.stderr, /dist\/ is missing or older than src\/: run npm run build/, 'and says so');

  // `npx kubeloop` runs `prepare` (bin/build.mjs) on its first use: a current dist/ is kept,
  // not compiled again (here there is no typescript to compile with: a rebuild would fail)
  utimesSync(src, old, old);
  writeFileSync(join(dir, 'dist', '.built'), `${Date.now()}\n`);
  r = await run(join(dir, 'bin', 'build.mjs'), []);
  t.equal(r.code, 0, 'build with a current dist/: nothing to do');
  t.match(r.stdout, /dist\/ is current/, 'and says so');
  r = await run(join(dir, 'bin', 'build.mjs'), ['--force']);
  t.not(r.code, 0, '--force compiles anyway (and fails here, without typescript)');
});
