import { isDeepStrictEqual } from 'node:util';
import type { ContainerStatus, Pod, PodStatus } from '../../api/types.js';
import type { PodCondition } from 'kubernetes-types/core/v1.js';

/** RFC 3339 with seconds, as the API prints times. */
export const timestamp = (ms = Date.now()): string => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

export interface PodView {
  pod: Pod;
  podIP?: string;
  hostIP: string;
  startTime?: string;
  /** a pod-level problem (no IP left, ...) */
  message?: string;
  reason?: string;
  initContainers: readonly ContainerStatus[];
  containers: readonly ContainerStatus[];
  /** ephemeral containers (kubectl debug): reported, never part of the phase or readiness */
  ephemeralContainers?: readonly ContainerStatus[];
  /** all init containers completed (true when there are none) */
  initialized: boolean;
  /** the pod is being deleted: not Ready, whatever its containers say */
  terminating: boolean;
  /** node-agent conditions of kubeloop's own (e.g. VolumeMountsAtPaths) */
  extra?: readonly { type: string; ok: boolean; reason?: string; message?: string }[];
}

/**
 * The pod phase from its container statuses, as the kubelet's getPhase: waiting containers that
 * never ran keep it Pending; stopped containers make it Succeeded/Failed only when they will not
 * be restarted.
 */
export function podPhase(v: PodView): NonNullable<PodStatus['phase']> {
  const policy = v.pod.spec?.restartPolicy ?? 'Always';
  if (!v.initialized) {
    const failed = v.initContainers.some((c) => (c.state?.terminated?.exitCode ?? 0) !== 0);
    return policy === 'Never' && failed ? 'Failed' : 'Pending';
  }
  let running = 0;
  let waiting = 0;
  let stopped = 0;
  let succeeded = 0;
  for (const c of v.containers) {
    if (c.state?.running) running++;
    else if (c.state?.terminated) {
      stopped++;
      if (c.state.terminated.exitCode === 0) succeeded++;
    } else if (c.lastState?.terminated) stopped++;
    else waiting++;
  }
  if (waiting > 0) return 'Pending';
  if (running > 0) return 'Running';
  if (stopped > 0) {
    if (policy === 'Always') return 'Running';
    if (stopped === succeeded) return 'Succeeded';
    if (policy === 'Never') return 'Failed';
    return 'Running';
  }
  return 'Pending';
}

function condition(type: string, ok: boolean, reason?: string, message?: string): PodCondition {
  return {
    type,
    status: ok ? 'True' : 'False',
    lastTransitionTime: '',
    ...(reason ? { reason } : {}),
    ...(message ? { message } : {}),
  };
}

/**
 * The pod's status as the node agent reports it. `prev` supplies what others own (qosClass,
 * nominatedNodeName, ...) and keeps `lastTransitionTime` of conditions that did not change.
 */
export function buildPodStatus(v: PodView, prev: PodStatus | undefined, now = timestamp()): PodStatus {
  const phase = podPhase(v);
  const done = phase === 'Succeeded' || phase === 'Failed';
  const unready = v.containers.filter((c) => !c.ready).map((c) => c.name);
  const uninit = v.initContainers.filter((c) => !(c.state?.terminated?.exitCode === 0 || c.ready)).map((c) => c.name);
  const containersReady = unready.length === 0 && v.initialized;
  const notReadyReason = done ? 'PodCompleted' : 'ContainersNotReady';
  const notReadyMessage = done || !unready.length ? undefined : `containers with unready status: [${unready.join(' ')}]`;
  const conds: PodCondition[] = [
    condition('PodReadyToStartContainers', !!v.podIP && !done),
    condition(
      'Initialized',
      v.initialized,
      v.initialized ? undefined : 'ContainersNotInitialized',
      v.initialized ? undefined : `containers with incomplete status: [${uninit.join(' ')}]`,
    ),
    v.terminating
      ? condition('Ready', false, 'PodTerminating', 'the pod is being deleted')
      : condition('Ready', containersReady, containersReady ? undefined : notReadyReason, containersReady ? undefined : notReadyMessage),
    condition('ContainersReady', containersReady, containersReady ? undefined : notReadyReason, containersReady ? undefined : notReadyMessage),
    condition('PodScheduled', true),
    ...(v.extra ?? []).map((c) => condition(c.type, c.ok, c.reason, c.message)),
  ];
  for (const c of conds) {
    const old = prev?.conditions?.find((o) => o.type === c.type);
    c.lastTransitionTime = old && old.status === c.status && old.lastTransitionTime ? old.lastTransitionTime : now;
  }
  // conditions set by others (readiness gates, DisruptionTarget, ...) are kept
  const others = (prev?.conditions ?? []).filter((o) => !conds.some((c) => c.type === o.type));
  const status: PodStatus = {
    ...prev,
    phase,
    conditions: [...conds, ...others],
    hostIP: v.hostIP,
    hostIPs: [{ ip: v.hostIP }],
    ...(v.podIP ? { podIP: v.podIP, podIPs: [{ ip: v.podIP }] } : {}),
    ...(v.startTime ? { startTime: v.startTime } : {}),
    containerStatuses: v.containers.map((c) => ({ ...c })),
  };
  if (v.initContainers.length) status.initContainerStatuses = v.initContainers.map((c) => ({ ...c }));
  else delete status.initContainerStatuses;
  if (v.ephemeralContainers?.length) status.ephemeralContainerStatuses = v.ephemeralContainers.map((c) => ({ ...c }));
  else delete status.ephemeralContainerStatuses;
  if (v.message) {
    status.message = v.message;
    status.reason = v.reason;
  } else {
    delete status.message;
    delete status.reason;
  }
  return status;
}

/** true when writing `next` over `prev` would change nothing */
export function sameStatus(prev: PodStatus | undefined, next: PodStatus): boolean {
  return isDeepStrictEqual(prev, next);
}
