import os from 'node:os';
import { readFileSync } from 'node:fs';
import type { Node, NodeStatus } from 'kubernetes-types/core/v1.js';
import type { Store } from '../../store/types.js';
import { timestamp } from './status.js';

export interface NodeInfoOptions {
  nodeName: string;
  nodeIP: string;
  podCidr: string;
  /** pods this node accepts (capacity.pods) */
  maxPods?: number;
  /** the node agent endpoint's port (status.daemonEndpoints.kubeletEndpoint.Port); 0: none */
  endpointPort?: number;
  /** more InternalIPs after nodeIP (a node other machines reach lists its loopback address too) */
  extraAddresses?: readonly string[];
  /** annotations of the daemon that runs this node (which state dir, on which host) */
  annotations?: Readonly<Record<string, string>>;
}

const KUBELET_VERSION = 'v1.30.0-kubeloop';

const arch = (): string => ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386' })[process.arch as string] ?? process.arch;

const readId = (file: string): string => {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
};
// read once, when the module loads at start-up (both are fixed until reboot): no sync read later
const MACHINE_ID = readId('/etc/machine-id');
const BOOT_ID = readId('/proc/sys/kernel/random/boot_id');

function nodeStatus(o: NodeInfoOptions, ready: boolean): NodeStatus {
  const now = timestamp();
  const resources = {
    cpu: String(os.cpus().length),
    memory: `${Math.floor(os.totalmem() / 1024)}Ki`,
    pods: String(o.maxPods ?? 110),
    'ephemeral-storage': '0',
  };
  const cond = (type: string, status: boolean, reason: string, message: string) => ({
    type,
    status: status ? 'True' : 'False',
    reason,
    message,
    lastHeartbeatTime: now,
    lastTransitionTime: now,
  });
  return {
    addresses: [
      { type: 'InternalIP', address: o.nodeIP },
      ...(o.extraAddresses ?? []).filter((a) => a !== o.nodeIP).map((address) => ({ type: 'InternalIP', address })),
      { type: 'Hostname', address: o.nodeName },
    ],
    capacity: resources,
    allocatable: resources,
    conditions: [
      cond('MemoryPressure', false, 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available'),
      cond('DiskPressure', false, 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'),
      cond('PIDPressure', false, 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'),
      ready
        ? cond('Ready', true, 'KubeletReady', 'kubelet is posting ready status')
        : cond('Ready', false, 'KubeletNotReady', 'the kubeloop node agent is stopped'),
    ],
    daemonEndpoints: { kubeletEndpoint: { Port: o.endpointPort ?? 0 } },
    nodeInfo: {
      machineID: MACHINE_ID,
      systemUUID: '',
      bootID: BOOT_ID,
      kernelVersion: os.release(),
      osImage: `${os.type()} ${os.release()} (kubeloop: pods are processes)`,
      containerRuntimeVersion: 'kubeloop://0.1.0',
      kubeletVersion: KUBELET_VERSION,
      kubeProxyVersion: KUBELET_VERSION,
      operatingSystem: process.platform === 'win32' ? 'windows' : process.platform,
      architecture: arch(),
    },
  };
}

/** Creates or refreshes this node's `Node` object: spec (podCIDR, labels), then status (Ready). */
export async function registerNode(store: Store, o: NodeInfoOptions): Promise<void> {
  const labels = {
    'kubernetes.io/hostname': o.nodeName,
    'kubernetes.io/os': process.platform === 'win32' ? 'windows' : process.platform,
    'kubernetes.io/arch': arch(),
    'beta.kubernetes.io/os': process.platform,
    'beta.kubernetes.io/arch': arch(),
  };
  const existing = await store.tryGet<Node>('Node', undefined, o.nodeName);
  if (!existing) {
    await store.create<Node>({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: o.nodeName, labels, ...(o.annotations ? { annotations: { ...o.annotations } } : {}) },
      spec: { podCIDR: o.podCidr, podCIDRs: [o.podCidr] },
    });
  } else {
    await store.mutate<Node>('Node', undefined, o.nodeName, (n) => {
      n.metadata = { ...n.metadata, labels: { ...n.metadata?.labels, ...labels }, ...(o.annotations ? { annotations: { ...n.metadata?.annotations, ...o.annotations } } : {}) };
      n.spec = { ...n.spec, podCIDR: o.podCidr, podCIDRs: [o.podCidr] };
    });
  }
  await setNodeStatus(store, o, true);
}

export async function setNodeStatus(store: Store, o: NodeInfoOptions, ready: boolean): Promise<void> {
  await store.mutate<Node>(
    'Node',
    undefined,
    o.nodeName,
    (n) => {
      (n as { status?: NodeStatus }).status = nodeStatus(o, ready);
    },
    { subresource: 'status' },
  );
}

/**
 * On a shared store: the Node exists before the pod runtime starts, with a pod CIDR slice the
 * store hands out (taken atomically with the Node, store/node-cidr-allocation.ts). Returns the
 * slice; a Node that exists already keeps its own.
 */
export async function claimNode(store: Store, o: Pick<NodeInfoOptions, 'nodeName' | 'annotations'>): Promise<string> {
  let node = await store.tryGet<Node>('Node', undefined, o.nodeName);
  if (!node) {
    try {
      node = await store.create<Node>({
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name: o.nodeName, labels: { 'kubernetes.io/hostname': o.nodeName }, ...(o.annotations ? { annotations: { ...o.annotations } } : {}) },
        spec: {},
      });
    } catch (e) {
      if ((e as { reason?: string }).reason !== 'AlreadyExists') throw e;
      node = await store.get<Node>('Node', undefined, o.nodeName);
    }
  }
  let cidr = node.spec?.podCIDR;
  if (!cidr) {
    // a Node from before slices (or made by hand): an update without the field gets one
    const updated = await store.mutate<Node>('Node', undefined, o.nodeName, (n) => {
      n.metadata = { ...n.metadata, annotations: { ...n.metadata?.annotations, ...o.annotations } };
    });
    cidr = updated?.spec?.podCIDR;
  }
  if (!cidr) throw new Error(`Node ${o.nodeName} got no pod CIDR slice`);
  return cidr;
}
