/**
 * `--images FILE`: an image table of one's own over config/images/images.yaml, re-read when it
 * changes; a pod waiting in ErrImageNeverPull starts once its image is added; a broken edit is
 * logged once (file and line) and the previous table stays.
 */
import t from 'tap';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_IMAGE_TABLE } from '../src/agent/runtime/index.js';
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
  const mine = join(dir, 'mine.yaml');
  await writeFile(mine, 'images:\n  other/tool:\n    command: [sleep, "60"]\n');
  const d = await startDaemon([...DAEMON_FLAGS, '--images', mine, '--log-level', 'info']);
  t.teardown(async () => {
    await d.stop();
    await rm(dir, { recursive: true, force: true });
  });
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
  const parseErrors = (): string[] => d.stderr().split('\n').filter((l) => l.includes(`image table ${mine}:`) && l.includes('keeping its previous entries until it is fixed'));
  const logged = await waitFor(() => (parseErrors().length > 0 ? parseErrors() : undefined), { what: 'the parse error logged' });
  t.match(logged[0], `${mine}:4:`, 'the error names file and line');
  await writeFile(mine, broken);
  // absence cannot be polled: wait out a few debounce periods (100 ms) for a second, wrong, log line
  await new Promise((r) => setTimeout(r, 400));
  t.equal(parseErrors().length, 1, 'logged once for the same broken text');
  const still = (await status()).containerStatuses?.[0]?.state?.waiting;
  t.equal(still?.reason, 'ErrImageNeverPull', 'still waiting: the previous table stays');
  t.match(still?.message, `image table ${mine}:4:`, 'its message names the broken table and line');
  t.match(still?.message, 'its previous entries are used', 'and what is used instead');

  // a valid table, replaced by rename as editors save: the waiting pod starts
  await writeFile(join(dir, '.mine.yaml.tmp'), 'images:\n  myorg/api:\n    command: [sleep, "60"]\n');
  await rename(join(dir, '.mine.yaml.tmp'), mine);
  const running = await waitFor(async () => (await status()).containerStatuses?.[0]?.state?.running, { what: 'the pod running', timeoutMs: 10_000 });
  t.ok(running, 'the pod runs its new image entry');
  t.match(d.stderr(), `image table ${mine} is valid again`, 'the recovery is logged');
  t.equal((await status()).phase, 'Running', 'phase Running');
});

t.test('an --images file that cannot be read stops up with one line naming it', async (t) => {
  const missing = join(tmpdir(), 'kubeloop-no-such-images.yaml');
  const err = await startDaemon([...DAEMON_FLAGS, '--images', missing, '--log-level', 'warn']).then(
    async (d) => (await d.stop(), 'started'),
    (e: Error) => e.message,
  );
  t.match(err, `kubeloop: cannot read image table ${missing}: no such file`, 'the file and the cause');
});
