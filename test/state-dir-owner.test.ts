/**
 * A root daemon refuses a state dir that another user owns (issue 14, review): before, `up`
 * chmod-ed the dir (root may) and used the CA it found there, so the dir's real owner could
 * swap keys and state under it. Run as root with a state dir `chown`-ed to `nobody`: `up`
 * exits with one line naming the path, its owner and the fix, and makes no files.
 */
import { spawn } from 'node:child_process';
import { chownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ROOT } from './helpers/daemon.js';

function nobody(): { uid: number; gid: number } | string {
  if (process.getuid?.() !== 0) return 'not running as root: cannot give the state dir to another user';
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('nobody:'));
  if (!line) return 'no user "nobody" on this machine';
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** Every path under `dir` with its owner, size and mtime: equal before and after means nothing was made or changed. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const visit = (p: string): void => {
    const st = lstatSync(p);
    out.push(`${p.slice(dir.length)} ${st.uid} ${st.mode.toString(8)} ${st.size} ${st.mtimeMs}`);
    if (st.isDirectory()) for (const n of readdirSync(p).sort()) visit(join(p, n));
  };
  visit(dir);
  return out;
}

/** `kubeloop up` on `stateDir`: its exit code and stderr, or 'running' (then it is stopped) within 30 s. */
async function up(t: { teardown(fn: () => unknown): void }, stateDir: string): Promise<{ code: number | null | 'running'; stderr: string }> {
  const proc = spawn(
    process.execPath,
    [join(ROOT, 'bin', 'kubeloop.mjs'), 'up', '--state-dir', stateDir, '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--metrics-addr=', '--pod-cidr', '127.187.0.0/16', '--service-cidr', '127.188.0.0/16'],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } },
  );
  t.teardown(() => void (proc.exitCode === null && proc.signalCode === null && proc.kill('SIGKILL')));
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const deadline = Date.now() + 30_000;
  while (proc.exitCode === null && !out.includes('kubeloop is running') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  if (proc.exitCode === null) {
    proc.kill('SIGINT');
    await exited;
    return { code: 'running', stderr: err };
  }
  return { code: await exited, stderr: err };
}

const who = nobody();

t.test('up refuses a state dir, pki/ or CA owned by another user, or a symlink there, and makes no files', { skip: typeof who === 'string' ? who : false }, async (t) => {
  const { uid, gid } = who as { uid: number; gid: number };
  const parent = mkdtempSync(join(tmpdir(), 'kubeloop-owner-check-'));
  t.teardown(() => rmSync(parent, { recursive: true, force: true }));
  /** a state dir with an "attacker" CA in pki/; `give` lists what is then chown-ed to nobody */
  const make = (name: string, give: string[]): string => {
    const dir = join(parent, name);
    mkdirSync(join(dir, 'pki'), { recursive: true, mode: 0o700 });
    writeFileSync(join(dir, 'pki', 'ca.crt'), 'attacker CA\n', { mode: 0o600 });
    writeFileSync(join(dir, 'pki', 'ca.key'), 'attacker key\n', { mode: 0o600 });
    for (const p of give) chownSync(join(dir, p), uid, gid);
    return dir;
  };
  const cases: Array<[string, string, RegExp]> = [
    ['the whole state dir', make('all', ['.', 'pki', 'pki/ca.crt', 'pki/ca.key']), /all is owned by nobody \(uid \d+\)/],
    ['pki/ only (the reviewer\'s own.mts)', make('pki', ['pki']), /pki\/pki is owned by nobody/],
    ['the CA key only', make('key', ['pki/ca.key']), /key\/pki\/ca\.key is owned by nobody/],
  ];
  const link = make('link', []);
  symlinkSync(join(parent, 'elsewhere'), join(link, 'kubeconfig'));
  for (const [what, dir, re] of cases) {
    const before = tree(dir);
    const r = await up(t, dir);
    t.equal(r.code, 1, `${what}: up exits 1 (${r.code})`);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('kubeloop: '));
    t.equal(lines.length, 1, `${what}: one line: ${lines.join(' | ')}`);
    t.match(lines[0] ?? '', re, `${what}: names the path and its owner`);
    t.match(lines[0] ?? '', /not by this daemon's user root \(uid 0\).*chown -R root .* if it is yours, or pick another --state-dir/, `${what}: names the fix`);
    t.same(tree(dir), before, `${what}: no file made or changed`);
  }
  const before = tree(link);
  const r = await up(t, link);
  t.equal(r.code, 1, 'a symlinked kubeconfig: up exits 1');
  t.match(r.stderr, /kubeloop: .*link\/kubeconfig in the state dir is a symlink.*remove it, or pick another --state-dir/);
  t.same(tree(link), before, 'a symlinked kubeconfig: nothing made');
});
