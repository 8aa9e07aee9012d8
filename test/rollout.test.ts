import t from 'tap';
import type { Deployment, Event, Service, Stored } from '../src/api/types.js';
import { waitFor } from './helpers/wait.js';
import { type NodeSpec, rolledOutTo, startWorkloads } from './workloads-helpers.js';
import { type LoadResult, echoAnswers, echoDeployment, echoService, fixedRateLoadInChild } from './workloads-load.js';

const NS = 'default';
const NODE: NodeSpec = { name: 'rollout-node', ip: '127.0.60.1', podCidr: '127.247.0.0/16' };

const deployment = (name: string, version: string): Deployment => echoDeployment(name, NS, version, 5);

/**
 * Steady load through the ClusterIP while the Deployment rolls to a new template (written to the
 * store, as `kubectl set env` would): every request must succeed.
 */
async function rolloutUnderLoad(t: { teardown(fn: () => unknown): void }, keepAlive: boolean): Promise<{ load: LoadResult; rolledAt: number; events: Stored<Event>[] }> {
  const w = await startWorkloads(t, { podCidr: '127.247.0.0/16', serviceCidr: '127.112.0.0/16', nodes: [NODE], proxyNodeAddresses: [NODE.ip] });
  const { store } = w;
  const name = keepAlive ? 'ka' : 'fresh';
  await store.create(deployment(name, 'v1'));
  const svc = await store.create<Service>(echoService(name, NS));
  const ip = svc.spec!.clusterIP!;
  const available = (version: string) => rolledOutTo(store, NS, name, version);
  await waitFor(() => available('v1'), { what: 'v1 available', timeoutMs: 10_000 });
  // the proxy serves the Service before the load starts
  await waitFor(() => echoAnswers(ip), { what: 'service answers', timeoutMs: 5000 });

  const loading = fixedRateLoadInChild({ host: ip, port: 80, rps: 500, count: 3500, keepAlive });
  await loading.started;
  await new Promise((r) => setTimeout(r, 300));
  await store.mutate<Deployment>('Deployment', NS, name, (d) => {
    d.spec!.template.spec!.containers[0].env = [{ name: 'VERSION', value: 'v2' }];
  });
  await waitFor(() => available('v2'), { what: 'v2 rolled out', timeoutMs: 15_000 });
  const rolledAt = Date.now();
  const load = await loading.result;
  const events = (await store.list<Event>('Event', { namespace: NS })).items;
  return { load, rolledAt, events };
}

for (const keepAlive of [false, true]) {
  t.test(`rolling update under steady load drops no request (keep-alive ${keepAlive ? 'on' : 'off'})`, async (t) => {
    const { load, rolledAt, events } = await rolloutUnderLoad(t, keepAlive);
    t.comment(`keep-alive ${keepAlive}: ${load.failed} failed / ${load.total} in ${load.seconds.toFixed(1)} s, ${load.retried} sent again; rollout done at ${((rolledAt - load.startedAt) / 1000).toFixed(1)} s; ${JSON.stringify(load.errors)}`);
    t.equal(load.total, 3500, 'all requests sent');
    t.equal(load.failed, 0, `no request failed (${JSON.stringify(load.errors)})`);
    // a request on a kept-alive connection the pod closed at that very instant is sent again, as
    // RFC 9112 §9.3.1 allows; the drain makes that rare (the echo image closes idle connections
    // one at a time, after clients have moved off them)
    t.ok(load.retried <= load.total / 100, `requests sent again after the HTTP/1.1 close race are rare (${load.retried})`);
    t.ok(rolledAt < load.startedAt + load.seconds * 1000, 'the rollout finished while requests were still flowing');
    t.ok(Object.keys(load.byPod).length >= 4, `old and new pods answered (${Object.keys(load.byPod).length} pods)`);
    t.ok(events.some((e) => e.reason === 'ScalingReplicaSet'), 'ScalingReplicaSet events');
    t.ok(events.some((e) => e.reason === 'Killing' && e.involvedObject.kind === 'Pod'), 'Killing events for the old pods');
  });
}

