/**
 * Issue 17 close-out, hostile input on the new surfaces (ephemeral containers, exec/attach and
 * port-forward streams, HPA, the Metrics API) against one real daemon: each case must leave the
 * API answering, and bad input gets a Status naming the field.
 */
import https from 'node:https';
import t from 'tap';
import { daemonApi } from './helpers/api.js';
import { startDaemon } from './helpers/daemon.js';
import { waitFor } from './helpers/wait.js';

// a slow start rate (2 a second, bursts of 2) makes the pacing of ephemeral starts measurable
const d = await startDaemon([
  '--pod-cidr', '127.229.0.0/16', '--service-cidr', '127.230.0.0/16', '--api-addr', '127.0.0.1:0', '--dns-addr', '127.0.0.1:0',
  '--metrics-addr=', '--pod-start-rate', '2', '--log-level', 'warn',
]);
t.teardown(() => d.stop());
const api = await daemonApi(d);

/** ms until /readyz answers 200 */
const readyz = async (): Promise<number> => {
  const t0 = Date.now();
  const r = await api.request('GET', '/readyz', { timeoutMs: 60_000 });
  if (r.status !== 200) throw new Error(`readyz ${r.status}`);
  return Date.now() - t0;
};

const runPod = async (name: string): Promise<void> => {
  await api.request('POST', '/api/v1/namespaces/default/pods', {
    body: { apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { containers: [{ name: 'main', image: 'busybox', command: ['sleep', '600'] }] } },
  });
  await waitFor(async () => (await api.request('GET', `/api/v1/namespaces/default/pods/${name}`)).json<{ status?: { phase?: string } }>().status?.phase === 'Running', { timeoutMs: 30_000 });
};

interface EphStatus { name: string; state: { terminated?: { startedAt?: string; reason?: string } } }

t.test('many ephemeral containers in one PATCH start at the node start rate, the API answering meanwhile', async (t) => {
  await runPod('many');
  const n = 12;
  const patch = { spec: { ephemeralContainers: Array.from({ length: n }, (_, i) => ({ name: `e${i}`, image: 'busybox', command: ['true'] })) } };
  const r = await api.request('PATCH', '/api/v1/namespaces/default/pods/many/ephemeralcontainers', {
    body: JSON.stringify(patch),
    headers: { 'Content-Type': 'application/strategic-merge-patch+json' },
  });
  t.equal(r.status, 200, r.status === 200 ? 'PATCH accepted' : r.body);
  const worst: number[] = [];
  const statuses = await waitFor(
    async () => {
      worst.push(await readyz());
      const s = (await api.request('GET', '/api/v1/namespaces/default/pods/many')).json<{ status: { ephemeralContainerStatuses?: EphStatus[] } }>().status.ephemeralContainerStatuses ?? [];
      return s.length === n && s.every((x) => x.state.terminated) ? s : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 250 },
  );
  t.ok(statuses.every((s) => s.state.terminated?.reason === 'Completed'), 'each ran and exited 0');
  const started = statuses.map((s) => Date.parse(s.state.terminated!.startedAt!)).sort((a, b) => a - b);
  // 2 at once, then 2 a second: the 12th starts ≥ 5 s after the first (1 s resolution of startedAt)
  t.ok(started[n - 1] - started[0] >= 4000, `starts spread over ${started[n - 1] - started[0]} ms at --pod-start-rate 2`);
  t.ok(Math.max(...worst) < 5000, `readyz answered within ${Math.max(...worst)} ms while they started`);
});
