// The data path is chosen without a warning or an error, and the node:net path serves where
// Node's internals are off limits (issue 18): each case is a node process of its own with the
// flags under test, running test/fixtures/data-path-child.ts.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { ROOT } from './helpers/daemon.js';

const CHILD = join(ROOT, 'test', 'fixtures', 'data-path-child.ts');
const TSX = import.meta.resolve('tsx');
/** Node 20 spells the permission model --experimental-permission; 22.13+ --permission */
const PERMISSION = process.allowedNodeEnvironmentFlags.has('--permission') ? '--permission' : '--experimental-permission';
/**
 * what the TypeScript loader needs under the permission model: it reads sources, writes its
 * cache, runs its hooks in a worker, and starts esbuild's service for a file not yet in its
 * cache (in a fresh clone the cache can be cold here: it failed CI with ERR_ACCESS_DENIED).
 * None of these re-allows process.binding, which is what the case is about.
 */
const PERMITS = [PERMISSION, '--allow-fs-read=*', '--allow-fs-write=*', '--allow-worker', '--allow-child-process'];

interface Run {
  code: number | null;
  out: Record<string, unknown>;
  stderr: string;
}

function run(nodeArgs: string[], args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    // through sh, which drops the NODE_OPTIONS tap's spawn instrumentation adds (its
    // process-on-spawn calls process.binding too, and would be the one to warn)
    const p = spawn('/bin/sh', ['-c', 'unset NODE_OPTIONS; exec "$@"', 'sh', process.execPath, ...nodeArgs, '--import', TSX, CHILD, ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      const line = stdout.trim().split('\n').pop() ?? '';
      let out: Record<string, unknown> = {};
      try {
        out = JSON.parse(line) as Record<string, unknown>;
      } catch {
        out = { unparsed: stdout };
      }
      resolve({ code, out, stderr });
    });
  });
}

/** DeprecationWarning lines (the permission model's own ExperimentalWarning/SecurityWarning are expected) */
const deprecations = (stderr: string): string[] => stderr.split('\n').filter((l) => /Deprecation|DEP0111/.test(l));

t.test('auto picks uv where process.binding loads cleanly, net where it would warn or is denied', async (t) => {
  const cases: Array<[string, string[], string]> = [
    ['plain node', [], 'uv'],
    ['--pending-deprecation --throw-deprecation', ['--pending-deprecation', '--throw-deprecation'], 'net'],
    ['--pending-deprecation', ['--pending-deprecation'], 'net'],
    [`${PERMISSION}`, PERMITS, 'net'],
  ];
  const runs = await Promise.all(cases.map(([, flags]) => run(flags, ['choose', 'auto'])));
  for (const [i, [what, , path]] of cases.entries()) {
    const r = runs[i]!;
    t.equal(r.code, 0, `${what}: the process lives`, { stderr: r.stderr.slice(0, 2000) });
    t.equal(r.out.path, path, `${what}: ${path} (${String(r.out.reason)})`);
    t.same(deprecations(r.stderr), [], `${what}: no deprecation warning printed`);
  }
  t.match(String(runs[1]!.out.reason), /DEP0111/, 'the reason names the deprecation');
  t.match(String(runs[3]!.out.reason), /permission model/, 'the reason names the permission model');
});

t.test('--data-path uv where it is not available is a one-line error naming the fix', async (t) => {
  const uv = await run(PERMITS, ['choose', 'uv']);
  t.match(String(uv.out.error), /^--data-path uv: .*permission model.*; use --data-path auto \(or net\)$/);
});

t.test('with --pending-deprecation, Services and DNS are served on the net path and kubeloop prints no DEP0111', async (t) => {
  // readline-sync (ioredis-mock → fengari, the embedded store) calls process.binding itself when
  // imported, so a warning is printed; with --trace-deprecation its stack shows whose it is
  const r = await run(['--pending-deprecation', '--trace-deprecation'], ['serve']);
  t.equal(r.code, 0, 'exits cleanly');
  t.same(r.out, { path: 'net', tcp: 'hello from the backend\n', dns: r.out.dns, listenerErrors: [] }, 'the ClusterIP answers, no listener failed');
  t.match(String(r.out.dns), /^127\.96\.12\.\d+$/, "DNS answers the Service's ClusterIP");
  const ours = r.stderr.split('\n').filter((l) => /^\s+at /.test(l) && l.includes(`${join(ROOT, 'src')}/`));
  t.ok(/DEP0111/.test(r.stderr), 'the warning that is printed is there to be traced (the check below can fail)');
  t.same(ours, [], 'no deprecation warning comes from kubeloop\'s code');
});

t.test('--data-path and KUBELOOP_DATA_PATH reach the options; a bad value names the flag and the choices', async (t) => {
  const { OptionsError, resolveOptions } = await import('../src/cli/options.js');
  t.equal(resolveOptions([], ROOT, {}).dataPath, 'auto', 'auto by default');
  t.equal(resolveOptions([], ROOT, { KUBELOOP_DATA_PATH: 'net' }).dataPath, 'net', 'from the environment');
  t.equal(resolveOptions(['--data-path', 'auto'], ROOT, { KUBELOOP_DATA_PATH: 'net' }).dataPath, 'auto', 'the flag wins');
  t.throws(() => resolveOptions(['--data-path', 'fast'], ROOT, {}), OptionsError);
  try {
    resolveOptions([], ROOT, { KUBELOOP_DATA_PATH: 'fast' });
    t.fail('accepted');
  } catch (e) {
    t.match((e as Error).message, /--data-path fast: give auto, uv or net \(or set KUBELOOP_DATA_PATH to one of them\)/);
  }
});
