// npm ci prints no engine warning on the Node running the suite (Node 20, 22, 24: see README
// "Node versions"): dns2 3.1.1 declares node >= 22 but works on 20 (the DNS suites pass there),
// so package-lock.json records its entry without that `engines` field (npm ci checks the lockfile's).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ROOT } from './helpers/daemon.js';

t.test('npm ci --dry-run: no EBADENGINE on this Node', async (t) => {
  // stdin closed (npm waits on an open pipe); through sh, which drops the NODE_OPTIONS tap's
  // spawn instrumentation adds
  const out = await new Promise<string>((resolve, reject) => {
    // --dry-run builds the tree and checks engines, downloads and writes nothing; no prepare build
    const p = spawn('/bin/sh', ['-c', 'unset NODE_OPTIONS; exec npm ci --dry-run --ignore-scripts --no-audit --no-fund'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (text += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (text += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(text);
      else reject(new Error(`npm ci --dry-run exited ${code}: ${text}`));
    });
  });
  t.notMatch(out, /EBADENGINE/, `no engine warning on Node ${process.version}`);
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { engines?: { node?: string } }> };
  t.equal(lock.packages['node_modules/dns2']?.engines, undefined, "the lockfile's dns2 entry carries no engines (npm install would write its >= 22 back: remove it again)");
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };
  t.equal(pkg.engines.node, '^20.11.0 || ^22.0.0 || >=24.0.0', 'the engines the suite is run on');
});
