/**
 * `--images FILE`: an image table of one's own over config/images/images.yaml, re-read when it
 * changes; a pod waiting in ErrImageNeverPull starts once its image is added; a broken edit is
 * logged once (file and line) and the previous table stays.
 */
import t from 'tap';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { DEFAULT_IMAGE_TABLE } from '../src/agent/runtime/index.js';
import { ImageCatalog } from '../src/agent/runtime/image-catalog.js';
import { normaliseImage, parseImageTableText } from '../src/agent/runtime/images.js';
import { startDaemon } from './helpers/daemon.js';
import { daemonApi } from './helpers/api.js';
import { waitFor } from './helpers/wait.js';

interface PodStatus {
  phase?: string;
  containerStatuses?: Array<{ state?: { waiting?: { reason?: string; message?: string }; running?: object } }>;
}

const DAEMON_FLAGS = ['--pod-cidr', '127.77.0.0/16', '--service-cidr', '127.78.0.0/16', '--lb-pool', '127.79.0.0/16', '--node-ip', '127.0.77.1', '--nodeport-addresses', '127.0.77.1', '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0', '--metrics-addr='];

t.test('an --images table edited while the daemon runs', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-images-'));
  // registered first: the dir goes even when the daemon does not come up
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const mine = join(dir, 'mine.yaml');
  await writeFile(mine, 'images:\n  other/tool:\n    command: [sleep, "60"]\n');
  const d = await startDaemon([...DAEMON_FLAGS, '--images', mine, '--log-level', 'info']);
  t.teardown(() => d.stop());
  const api = await daemonApi(d);
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'api' },
    spec: { containers: [{ name: 'api', image: 'myorg/api:1.0' }], terminationGracePeriodSeconds: 1 },
  };
  t.equal((await api.request('POST', '/api/v1/namespaces/default/pods', { body: pod })).status, 201, 'pod created');
  const status = async (): Promise<PodStatus> => (await api.request('GET', '/api/v1/namespaces/default/pods/api')).json<{ status: PodStatus }>().status;
  const waiting = await waitFor(async () => {
    const w = (await status()).containerStatuses?.[0]?.state?.waiting;
    return w?.reason === 'ErrImageNeverPull' ? w : undefined;
  }, { what: 'ErrImageNeverPull' });
  t.match(waiting.message, `is not in the image tables ${DEFAULT_IMAGE_TABLE}, ${mine}`, 'the message names both files read');
  t.match(waiting.message, `add "myorg/api" to ${mine}`, 'and the one to edit (the user table)');
  t.match(waiting.message, 're-read when they change', 'and that edits are picked up');

  // a broken edit (written twice, as editors do): logged once with the line, nothing else changes
  const broken = 'images:\n  myorg/api:\n    command: [sleep, "60"\n';
  await writeFile(mine, broken);
  const parseErrors = (): string[] => d.stderr().split('\n').filter((l) => l.includes(`image table ${mine} is not valid YAML`) && l.includes('keeping its previous entries until it is fixed'));
  const logged = await waitFor(() => (parseErrors().length > 0 ? parseErrors() : undefined), { what: 'the parse error logged' });
  t.match(logged[0], `image table ${mine} is not valid YAML at line 4`, 'the error names file and line');
  await writeFile(mine, broken);
  // absence cannot be polled: wait out a few debounce periods (100 ms) for a second, wrong, log line
  await new Promise((r) => setTimeout(r, 400));
  t.equal(parseErrors().length, 1, 'logged once for the same broken text');
  const still = (await status()).containerStatuses?.[0]?.state?.waiting;
  t.equal(still?.reason, 'ErrImageNeverPull', 'still waiting: the previous table stays');
  t.match(still?.message, `image table ${mine} is not valid YAML at line 4`, 'its message names the broken table and line');
  t.match(still?.message, 'its previous entries are used', 'and what is used instead');

  // a valid table, replaced by rename as editors save: the waiting pod starts
  await writeFile(join(dir, '.mine.yaml.tmp'), 'images:\n  myorg/api:\n    command: [sleep, "60"]\n');
  await rename(join(dir, '.mine.yaml.tmp'), mine);
  const running = await waitFor(async () => (await status()).containerStatuses?.[0]?.state?.running, { what: 'the pod running', timeoutMs: 10_000 });
  t.ok(running, 'the pod runs its new image entry');
  t.match(d.stderr(), `image table ${mine} is valid again`, 'the recovery is logged');
  t.equal((await status()).phase, 'Running', 'phase Running');
});

t.test('tables that cannot be used at start: one error naming each (up prints it and exits 1)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-images-start-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const missing = join(dir, 'missing.yaml');
  const bad = join(dir, 'bad.yaml');
  await writeFile(bad, 'images:\n  x: [1\n');
  const err = await ImageCatalog.open({ files: [DEFAULT_IMAGE_TABLE, missing, bad], log: pino({ level: 'silent' }) }).then(
    (c) => (c.close(), 'opened'),
    (e: Error) => e.message,
  );
  t.match(err, `cannot read image table ${missing}: no such file`, 'the missing file');
  t.match(err, `image table ${bad} is not valid YAML at line 3, column 1: Flow sequence`, 'and the broken one, with where the parser stopped');
  t.notMatch(err, DEFAULT_IMAGE_TABLE, 'not the good one');
});

t.test('the catalog in process: a later table wins, schema problems name their line, a deleted table keeps its entries', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'kubeloop-images-unit-'));
  const a = join(dir, 'a.yaml');
  const b = join(dir, 'b.yaml');
  await writeFile(a, 'images:\n  tool:\n    command: [a-tool]\n  only-a:\n    command: [a]\n');
  await writeFile(b, 'images:\n  tool:\n    command: [b-tool]\n');
  const c = await ImageCatalog.open({ files: [a, b], log: pino({ level: 'silent' }), debounceMs: 20 });
  t.teardown(async () => {
    c.close();
    await rm(dir, { recursive: true, force: true });
  });
  t.same(c.entries.get(normaliseImage('tool:1'))?.command, ['b-tool'], 'the later table wins');
  t.ok(c.entries.get('only-a'), 'the earlier one still counts');
  t.equal(c.file, b, 'entries are added to the last table');

  t.throws(() => parseImageTableText('images:\n  ok:\n    command: [x]\n  bad:\n    mode: weird\n', a), /line 4: images\.bad: needs "builtin/, 'a schema problem names the line of its entry');

  let changes = 0;
  const off = c.onChange(() => changes++);
  await rm(b);
  await waitFor(() => c.problems.length === 1, { what: 'the deleted table reported' });
  t.match(c.problems[0], `cannot read image table ${b}: no such file (its previous entries are used)`, 'a deleted table is a problem, not a loss');
  t.same(c.entries.get('tool')?.command, ['b-tool'], 'its entries stay');
  await writeFile(b, 'images:\n  tool:\n    command: [b2]\n');
  await waitFor(() => c.entries.get('tool')?.command[0] === 'b2', { what: 'the new entry' });
  t.equal(c.problems.length, 0, 'no problem once it is back');
  t.ok(changes >= 2, 'listeners heard both changes');
  off();
  const before = changes;
  c.close();
  await writeFile(a, 'images:\n  tool:\n    command: [late]\n');
  await new Promise((r) => setTimeout(r, 100)); // absence: five debounce periods
  t.equal(changes, before, 'nothing after close');
  t.same(c.entries.get('tool')?.command, ['b2'], 'and no re-read');
});
