/**
 * Issue 18 part 5: the README stays true. The ```sh blocks marked `<!-- readme-test -->` run in
 * order, in one bash (as a user pastes them into one terminal), against a daemon started as
 * `npm start` does (`up -f config/`) on non-default ports; the README's default addresses are
 * rewritten to this daemon's (state dir, API URL, DNS port, NodePort address) and nothing else.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, startDaemon } from './helpers/daemon.js';

const NODE = '127.0.88.1';

/** the marked sh blocks of a markdown text, in order */
export function markedBlocks(md: string): string[] {
  const lines = md.split('\n');
  const blocks: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].startsWith('<!-- readme-test') || lines[i + 1]?.trim() !== '```sh') continue;
    const end = lines.indexOf('```', i + 2);
    blocks.push(lines.slice(i + 2, end).join('\n'));
    i = end;
  }
  return blocks;
}

t.test("the README's marked shell blocks run against a real daemon", async (t) => {
  const blocks = markedBlocks(readFileSync(process.env.KUBELOOP_README ?? join(ROOT, 'README.md'), 'utf8'));
  t.ok(blocks.length >= 3, `found ${blocks.length} marked blocks (kubectl walkthrough, curl with the client cert, dig)`);

  const d = await startDaemon([
    '-f', 'config/',
    '--pod-cidr', '127.85.0.0/16', '--service-cidr', '127.86.0.0/16', '--lb-pool', '127.87.0.0/16',
    '--nodeport-addresses', NODE, '--node-ip', NODE,
    '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0',
    '--log-level', process.env.KUBELOOP_TEST_LOG ?? 'warn',
    // as `npm start` runs for a user (KUBELOOP_FROM_SOURCE unset): the compiled
    // bundle when dist/ is current, as after `npm ci`
  ], { env: { KUBELOOP_FROM_SOURCE: '' } });
  const cache = await mkdtemp(join(tmpdir(), 'kubeloop-readme-kubectl-'));
  t.teardown(async () => {
    await d.stop();
    await rm(cache, { recursive: true, force: true });
  });
  const api = /^API:\s+(\S+)/m.exec(d.stdout())?.[1];
  const dnsPort = /^DNS:\s+dig @127\.0\.0\.1 -p (\d+)/m.exec(d.stdout())?.[1];
  t.ok(api && dnsPort, 'up printed the API URL and the DNS port');

  const script = [
    'set -euo pipefail',
    `trap 'echo "README command failed: $BASH_COMMAND" >&2' ERR`,
    ...blocks,
  ].join('\n')
    .replaceAll('.kubeloop/', `${d.stateDir}/`)
    .replaceAll('https://127.0.0.1:6443', api!)
    .replaceAll('127.0.0.1 -p 1053', `127.0.0.1 -p ${dnsPort}`)
    .replaceAll('127.0.0.1:30008', `${NODE}:30008`);

  const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile('bash', ['-c', script], { cwd: ROOT, timeout: 90_000, maxBuffer: 16 << 20, env: { ...process.env, NODE_OPTIONS: '', KUBECACHEDIR: cache, KUBELOOP_FROM_SOURCE: '' } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
  if (!t.equal(r.code, 0, 'every command of the marked blocks succeeds')) t.comment(`${r.stderr}\n${r.stdout.slice(-4000)}`);
  t.match(r.stdout, /Welcome to nginx!/, 'curl reaches custom-nginx through its ClusterIP');
  t.equal(r.stdout.match(/^PONG$/gm)?.length, 2, 'redis-cli gets PONG through redis-service and through redis');
  t.match(r.stdout, /"kind":\s*"PodList"/, 'curl with the admin client certificate lists pods');
  t.equal(r.stdout.match(/status: NOERROR/g)?.length, 4, 'every dig answers NOERROR (A, SRV, PTR, A over TCP)');
  t.notMatch(r.stdout, /NXDOMAIN/, 'no name is missing');
  t.match(r.stdout, /pod=myapp-/, 'curl --resolve by the Service name reaches a myapp pod');
  if (!t.passing()) t.comment(`stderr:\n${r.stderr.slice(-3000)}\nstdout:\n${r.stdout.slice(-3000)}`);
});
