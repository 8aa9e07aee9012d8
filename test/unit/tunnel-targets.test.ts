/**
 * What a host answers for on behalf of pods on other machines (agent/tunnel/targets.ts): only a
 * serving pod's declared ports, at an IP inside its own Node's pod CIDR slice. A pod status that
 * names an address outside the slice (127.0.0.1, or another node's pods) makes no host listen.
 */
import t from 'tap';
import { pino } from 'pino';
import type { Node, Pod } from '../../src/api/types.js';
import { Targets } from '../../src/agent/tunnel/targets.js';
import { createEmbeddedStore } from '../../src/store/embedded.js';
import { InformerFactory } from '../../src/store/informer.js';
import { parseCidr } from '../../src/util/cidr.js';
import { waitFor } from '../helpers/wait.js';

t.test('remote ports: inside the owning Node slice only', async (t) => {
  const store = await createEmbeddedStore({ log: pino({ level: 'silent' }) });
  const informers = new InformerFactory(store);
  t.teardown(async () => {
    informers.stop();
    await store.close();
  });
  const node = (name: string, ip: string, podCIDR: string): Node => ({
    apiVersion: 'v1', kind: 'Node', metadata: { name }, spec: { podCIDR, podCIDRs: [podCIDR] },
    status: { addresses: [{ type: 'InternalIP', address: ip }] },
  });
  for (const n of [node('here', '198.18.0.1', '127.96.1.0/24'), node('there', '198.18.0.2', '127.96.2.0/24')]) {
    await store.create(n);
    await store.mutate<Node>('Node', undefined, n.metadata!.name!, (x) => {
      (x as { status?: Node['status'] }).status = n.status;
    }, { subresource: 'status' });
  }
  const pod = async (name: string, nodeName: string, podIP: string): Promise<void> => {
    await store.create<Pod>({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default' }, spec: { nodeName, containers: [{ name: 'c', image: 'echo', ports: [{ containerPort: 8080 }] }] } });
    await store.mutate<Pod>('Pod', 'default', name, (p) => {
      (p as { status?: Pod['status'] }).status = { phase: 'Running', podIP, podIPs: [{ ip: podIP }] };
    }, { subresource: 'status' });
  };
  const targets = new Targets({
    pods: informers.for<Pod>('Pod'),
    nodes: informers.for<Node>('Node'),
    localNodes: ['here'],
    localPodCidrs: [parseCidr('127.96.1.0/24')],
    isLocalAddress: (ip) => ip === '198.18.0.1',
  });
  await informers.start();
  await pod('good', 'there', '127.96.2.5');
  await pod('claims-localhost', 'there', '127.0.0.1');
  await pod('claims-our-slice', 'there', '127.96.1.9');
  await pod('outside-its-slice', 'there', '127.96.3.4');
  await pod('ours', 'here', '127.96.1.7');
  const keys = await waitFor(() => {
    const k = targets.remote().map((r) => r.key).sort();
    const seen = informers.for<Pod>('Pod').list().filter((p) => p.status?.podIP);
    return seen.length === 5 ? k : undefined;
  }, { what: 'five pods with their IPs seen' });
  t.same(keys, ['TCP 127.96.2.5:8080'], 'only the pod inside its own node\'s slice is answered for here');
  t.ok(targets.local('127.96.1.7', 8080, 'TCP'), 'our own pod may be dialed through our tunnel');
  t.notOk(targets.local('127.96.2.5', 8080, 'TCP'), 'another node\'s pod is not ours to dial');
});
