/**
 * The state dir is made owner-only at start (cli/state-dir.ts tightenTree), except what a pod's
 * processes read with the modes a container has: its /etc files (0644) and volume files (their
 * defaultMode). A restart used to make them 0600 and warn "readable by other users" every time.
 */
import t from 'tap';
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tightenTree } from '../../src/cli/state-dir.js';

t.test('owner-only everywhere but inside a pod\'s _etc and _volumes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kubeloop-tighten-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const pod = join(dir, 'pods', 'default_web_uid');
  for (const d of [join(dir, 'pki'), join(pod, '_etc'), join(pod, '_volumes', 'cfg')]) mkdirSync(d, { recursive: true, mode: 0o755 });
  const files: Array<[string, number]> = [
    [join(dir, 'pki', 'ca.key'), 0o644],
    [join(dir, 'pods', 'old.log'), 0o644],
    [join(pod, 'c.log'), 0o644],
    [join(pod, '_etc', 'resolv.conf'), 0o644],
    [join(pod, '_etc', 'hosts'), 0o644],
    [join(pod, '_volumes', 'cfg', 'app.conf'), 0o444],
  ];
  for (const [f, mode] of files) {
    writeFileSync(f, 'x');
    chmodSync(f, mode);
  }
  for (const d of [dir, join(dir, 'pods'), pod, join(dir, 'pki')]) chmodSync(d, 0o755);
  const mode = (p: string): string => (lstatSync(p).mode & 0o777).toString(8);

  const changed = await tightenTree(dir);
  t.equal(mode(join(dir, 'pki', 'ca.key')), '600', 'the CA key is owner-only');
  t.equal(mode(join(dir, 'pods', 'old.log')), '600', 'an old log is owner-only');
  t.equal(mode(join(pod, 'c.log')), '600', "a container's log is owner-only");
  t.equal(mode(pod), '700', "the pod's dir keeps other users out of all below it");
  t.equal(mode(join(pod, '_etc', 'resolv.conf')), '644', "the pod's resolv.conf keeps a container's mode");
  t.equal(mode(join(pod, '_etc', 'hosts')), '644', "and its hosts");
  t.equal(mode(join(pod, '_volumes', 'cfg', 'app.conf')), '444', 'a volume file keeps its defaultMode');
  t.ok(changed > 0, `${changed} paths tightened`);
  t.equal(await tightenTree(dir), 0, 'a second start (a restart) changes nothing, so warns of nothing');
});
