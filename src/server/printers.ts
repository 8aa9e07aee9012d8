/**
 * Server-side printing: the columns and cells kubectl shows for each kind (`as=Table`), after
 * upstream's pkg/printers/internalversion. Columns with priority 1 show only with `-o wide`.
 */
import type {
  ConfigMap,
  CronJob,
  DaemonSet,
  Deployment,
  EndpointSlice,
  Endpoints,
  Event,
  Job,
  KObject,
  Namespace,
  Node,
  PersistentVolumeClaim,
  Pod,
  ReplicaSet,
  ReplicationController,
  Secret,
  Service,
  StatefulSet,
} from '../api/types.js';
import type { DeclaredColumn } from '../api/kind.js';
import { KIND_DECLS } from '../api/kinds/index.js';
import { format as formatSelector, fromLabelSelector } from '../api/labels.js';

export interface Column {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

type Cell = string | number | boolean;

export interface Printer {
  columns: Column[];
  cells(obj: KObject, now: number): Cell[];
}

const col = (name: string, priority = 0, type = 'string', format = ''): Column => ({
  name,
  type,
  format: name === 'Name' ? 'name' : format,
  description: describeColumn(name),
  priority,
});

function describeColumn(name: string): string {
  if (name === 'Name') return 'Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names';
  if (name === 'Age') return 'CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata';
  return name;
}

/** kubectl's `HumanDuration`: 45s, 5m10s, 3h, 2d4h, 3y. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 60 * 2) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) {
    const s = seconds % 60;
    return s === 0 ? `${minutes}m` : `${minutes}m${s}s`;
  }
  if (minutes < 60 * 3) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) {
    const m = minutes % 60;
    return m === 0 ? `${hours}h` : `${hours}h${m}m`;
  }
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) {
    const h = hours % 24;
    return h === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${h}h`;
  }
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  if (hours < 24 * 365 * 8) {
    const dy = Math.floor(hours / 24) % 365;
    return dy === 0 ? `${Math.floor(hours / 24 / 365)}y` : `${Math.floor(hours / 24 / 365)}y${dy}d`;
  }
  return `${Math.floor(hours / 24 / 365)}y`;
}

const age = (o: KObject, now: number): string => {
  const ts = o.metadata?.creationTimestamp;
  return ts ? humanDuration(now - Date.parse(String(ts))) : '<unknown>';
};

const since = (ts: string | undefined, now: number): string => (ts ? humanDuration(now - Date.parse(ts)) : '<unknown>');

const orNone = (s: string | undefined): string => (s ? s : '<none>');

function containersAndImages(spec: { containers?: { name: string; image?: string }[] } | undefined): [string, string] {
  const cs = spec?.containers ?? [];
  return [cs.map((c) => c.name).join(','), cs.map((c) => c.image ?? '').join(',')];
}

function selectorString(sel: Parameters<typeof fromLabelSelector>[0]): string {
  const s = formatSelector(fromLabelSelector(sel));
  return s || '<none>';
}

function mapSelector(sel: Record<string, string> | undefined): string {
  if (!sel || !Object.keys(sel).length) return '<none>';
  return Object.keys(sel)
    .sort()
    .map((k) => `${k}=${sel[k]}`)
    .join(',');
}

// ---- Pod

function podStatus(pod: Pod): { reason: string; ready: number; total: number; restarts: number; lastRestart?: string } {
  const st = pod.status ?? {};
  let reason: string = st.reason || st.phase || 'Unknown';
  const total = pod.spec?.containers?.length ?? 0;
  let ready = 0;
  let restarts = 0;
  let lastRestart: string | undefined;
  let initializing = false;
  const inits = st.initContainerStatuses ?? [];
  inits.forEach((c, i) => {
    restarts += c.restartCount ?? 0;
    if (c.state?.terminated && c.state.terminated.exitCode === 0) return;
    if (c.state?.terminated) {
      reason = c.state.terminated.reason ? `Init:${c.state.terminated.reason}` : c.state.terminated.signal ? `Init:Signal:${c.state.terminated.signal}` : `Init:ExitCode:${c.state.terminated.exitCode}`;
      initializing = true;
    } else if (c.state?.waiting?.reason && c.state.waiting.reason !== 'PodInitializing') {
      reason = `Init:${c.state.waiting.reason}`;
      initializing = true;
    } else if (!c.ready) {
      reason = `Init:${i}/${pod.spec?.initContainers?.length ?? inits.length}`;
      initializing = true;
    }
  });
  if (!initializing) {
    let hasRunning = false;
    const cs = [...(st.containerStatuses ?? [])].reverse();
    for (const c of cs) {
      restarts += c.restartCount ?? 0;
      const term = c.lastState?.terminated;
      if (term?.finishedAt && (!lastRestart || term.finishedAt > lastRestart)) lastRestart = term.finishedAt;
      if (c.state?.waiting?.reason) reason = c.state.waiting.reason;
      else if (c.state?.terminated?.reason) reason = c.state.terminated.reason;
      else if (c.state?.terminated) reason = c.state.terminated.signal ? `Signal:${c.state.terminated.signal}` : `ExitCode:${c.state.terminated.exitCode}`;
      else if (c.ready && c.state?.running) {
        hasRunning = true;
        ready++;
      }
    }
    if (reason === 'Completed' && hasRunning) {
      const isReady = st.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
      reason = isReady ? 'Running' : 'NotReady';
    }
  }
  if (pod.metadata?.deletionTimestamp) reason = st.reason === 'NodeLost' ? 'Unknown' : 'Terminating';
  return { reason, ready, total, restarts, lastRestart };
}

const podPrinter: Printer = {
  columns: [col('Name'), col('Ready'), col('Status'), col('Restarts', 0, 'string'), col('Age'), col('IP', 1), col('Node', 1), col('Nominated Node', 1), col('Readiness Gates', 1)],
  cells(o, now) {
    const pod = o as Pod;
    const s = podStatus(pod);
    const restarts = s.lastRestart ? `${s.restarts} (${since(s.lastRestart, now)} ago)` : String(s.restarts);
    const gates = pod.spec?.readinessGates ?? [];
    const gateCell = gates.length
      ? `${gates.filter((g) => pod.status?.conditions?.some((c) => c.type === g.conditionType && c.status === 'True')).length}/${gates.length}`
      : '<none>';
    return [
      pod.metadata?.name ?? '',
      `${s.ready}/${s.total}`,
      s.reason,
      restarts,
      age(o, now),
      orNone(pod.status?.podIP),
      orNone(pod.spec?.nodeName),
      orNone(pod.status?.nominatedNodeName),
      gateCell,
    ];
  },
};

// ---- Service

function servicePorts(svc: Service): string {
  const ports = svc.spec?.ports ?? [];
  if (!ports.length) return '<none>';
  return ports.map((p) => (p.nodePort ? `${p.port}:${p.nodePort}/${p.protocol ?? 'TCP'}` : `${p.port}/${p.protocol ?? 'TCP'}`)).join(',');
}

function externalIPs(svc: Service): string {
  const spec = svc.spec ?? {};
  const ext = spec.externalIPs ?? [];
  switch (spec.type) {
    case 'ClusterIP':
    case 'NodePort':
      return ext.length ? ext.join(',') : '<none>';
    case 'LoadBalancer': {
      const ing = (svc.status?.loadBalancer?.ingress ?? []).map((i) => i.ip || i.hostname || '').filter(Boolean);
      const all = [...ing, ...ext];
      return all.length ? all.join(',') : '<pending>';
    }
    case 'ExternalName':
      return spec.externalName ?? '';
    default:
      return '<unknown>';
  }
}

const servicePrinter: Printer = {
  columns: [col('Name'), col('Type'), col('Cluster-IP'), col('External-IP'), col('Port(s)'), col('Age'), col('Selector', 1)],
  cells(o, now) {
    const svc = o as Service;
    const ip = svc.spec?.type === 'ExternalName' ? '<none>' : svc.spec?.clusterIP || '<none>';
    return [svc.metadata?.name ?? '', svc.spec?.type ?? '', ip, externalIPs(svc), servicePorts(svc), age(o, now), mapSelector(svc.spec?.selector)];
  },
};

// ---- Endpoints / EndpointSlice

function formatEndpoints(ep: Endpoints): string {
  const parts: string[] = [];
  let count = 0;
  const max = 3;
  for (const ss of ep.subsets ?? []) {
    const ports = ss.ports?.length ? ss.ports : [{ port: 0 }];
    for (const p of ports) {
      for (const a of ss.addresses ?? []) {
        count++;
        if (parts.length < max) parts.push(p.port ? `${a.ip}:${p.port}` : a.ip);
      }
    }
  }
  if (!count) return '<none>';
  return count > max ? `${parts.join(',')} + ${count - max} more...` : parts.join(',');
}

const endpointsPrinter: Printer = {
  columns: [col('Name'), col('Endpoints'), col('Age')],
  cells: (o, now) => [o.metadata?.name ?? '', formatEndpoints(o as Endpoints), age(o, now)],
};

const sliceprinter: Printer = {
  columns: [col('Name'), col('AddressType'), col('Ports'), col('Endpoints'), col('Age')],
  cells(o, now) {
    const s = o as EndpointSlice;
    const ports = (s.ports ?? []).map((p) => String(p.port ?? '')).filter(Boolean);
    const addrs = (s.endpoints ?? []).flatMap((e) => e.addresses);
    const shown = addrs.slice(0, 3).join(',');
    return [
      s.metadata?.name ?? '',
      s.addressType ?? '',
      ports.length ? ports.join(',') : '<unset>',
      addrs.length ? (addrs.length > 3 ? `${shown} + ${addrs.length - 3} more...` : shown) : '<unset>',
      age(o, now),
    ];
  },
};

// ---- workloads

const deploymentPrinter: Printer = {
  columns: [col('Name'), col('Ready'), col('Up-to-date', 0, 'integer'), col('Available', 0, 'integer'), col('Age'), col('Containers', 1), col('Images', 1), col('Selector', 1)],
  cells(o, now) {
    const d = o as Deployment;
    const [c, i] = containersAndImages(d.spec?.template?.spec);
    return [
      d.metadata?.name ?? '',
      `${d.status?.readyReplicas ?? 0}/${d.spec?.replicas ?? 1}`,
      d.status?.updatedReplicas ?? 0,
      d.status?.availableReplicas ?? 0,
      age(o, now),
      c,
      i,
      selectorString(d.spec?.selector),
    ];
  },
};

const replicaSetLike = (getSel: (o: KObject) => string): Printer => ({
  columns: [col('Name'), col('Desired', 0, 'integer'), col('Current', 0, 'integer'), col('Ready', 0, 'integer'), col('Age'), col('Containers', 1), col('Images', 1), col('Selector', 1)],
  cells(o, now) {
    const r = o as ReplicaSet;
    const [c, i] = containersAndImages(r.spec?.template?.spec);
    return [r.metadata?.name ?? '', r.spec?.replicas ?? 1, r.status?.replicas ?? 0, r.status?.readyReplicas ?? 0, age(o, now), c, i, getSel(o)];
  },
});

const statefulSetPrinter: Printer = {
  columns: [col('Name'), col('Ready'), col('Age'), col('Containers', 1), col('Images', 1)],
  cells(o, now) {
    const s = o as StatefulSet;
    const [c, i] = containersAndImages(s.spec?.template?.spec);
    return [s.metadata?.name ?? '', `${s.status?.readyReplicas ?? 0}/${s.spec?.replicas ?? 1}`, age(o, now), c, i];
  },
};

const daemonSetPrinter: Printer = {
  columns: [
    col('Name'),
    col('Desired', 0, 'integer'),
    col('Current', 0, 'integer'),
    col('Ready', 0, 'integer'),
    col('Up-to-date', 0, 'integer'),
    col('Available', 0, 'integer'),
    col('Node Selector'),
    col('Age'),
    col('Containers', 1),
    col('Images', 1),
    col('Selector', 1),
  ],
  cells(o, now) {
    const d = o as DaemonSet;
    const st = d.status;
    const [c, i] = containersAndImages(d.spec?.template?.spec);
    return [
      d.metadata?.name ?? '',
      st?.desiredNumberScheduled ?? 0,
      st?.currentNumberScheduled ?? 0,
      st?.numberReady ?? 0,
      st?.updatedNumberScheduled ?? 0,
      st?.numberAvailable ?? 0,
      mapSelector(d.spec?.template?.spec?.nodeSelector),
      age(o, now),
      c,
      i,
      selectorString(d.spec?.selector),
    ];
  },
};

function jobStatus(j: Job): string {
  const has = (t: string) => j.status?.conditions?.some((c) => c.type === t && c.status === 'True');
  if (has('Complete')) return 'Complete';
  if (has('Failed')) return 'Failed';
  if (j.metadata?.deletionTimestamp) return 'Terminating';
  if (has('FailureTarget')) return 'FailureTarget';
  if (has('Suspended')) return 'Suspended';
  if (has('SuccessCriteriaMet')) return 'SuccessCriteriaMet';
  return 'Running';
}

const jobPrinter: Printer = {
  columns: [col('Name'), col('Status'), col('Completions'), col('Duration'), col('Age'), col('Containers', 1), col('Images', 1), col('Selector', 1)],
  cells(o, now) {
    const j = o as Job;
    const completions = j.spec?.completions !== undefined ? `${j.status?.succeeded ?? 0}/${j.spec.completions}` : `${j.status?.succeeded ?? 0}/1 of ${j.spec?.parallelism ?? 1}`;
    const start = j.status?.startTime ? Date.parse(j.status.startTime) : undefined;
    const end = j.status?.completionTime ? Date.parse(j.status.completionTime) : now;
    const [c, i] = containersAndImages(j.spec?.template?.spec);
    return [j.metadata?.name ?? '', jobStatus(j), completions, start ? humanDuration(end - start) : '', age(o, now), c, i, selectorString(j.spec?.selector)];
  },
};

const cronJobPrinter: Printer = {
  columns: [col('Name'), col('Schedule'), col('Timezone'), col('Suspend', 0, 'boolean'), col('Active', 0, 'integer'), col('Last Schedule'), col('Age'), col('Containers', 1), col('Images', 1), col('Selector', 1)],
  cells(o, now) {
    const cj = o as CronJob;
    const [c, i] = containersAndImages(cj.spec?.jobTemplate?.spec?.template?.spec);
    return [
      cj.metadata?.name ?? '',
      cj.spec?.schedule ?? '',
      cj.spec?.timeZone ?? '<none>',
      cj.spec?.suspend ?? false,
      cj.status?.active?.length ?? 0,
      cj.status?.lastScheduleTime ? since(cj.status.lastScheduleTime, now) : '<none>',
      age(o, now),
      c,
      i,
      selectorString(cj.spec?.jobTemplate?.spec?.selector),
    ];
  },
};

// ---- the rest

const namespacePrinter: Printer = {
  columns: [col('Name'), col('Status'), col('Age')],
  cells: (o, now) => [o.metadata?.name ?? '', (o as Namespace).status?.phase ?? '', age(o, now)],
};

const nodePrinter: Printer = {
  columns: [col('Name'), col('Status'), col('Roles'), col('Age'), col('Version'), col('Internal-IP', 1), col('External-IP', 1), col('OS-Image', 1), col('Kernel-Version', 1), col('Container-Runtime', 1)],
  cells(o, now) {
    const n = o as Node;
    const ready = n.status?.conditions?.find((c) => c.type === 'Ready');
    let status = ready ? (ready.status === 'True' ? 'Ready' : 'NotReady') : 'Unknown';
    if (n.spec?.unschedulable) status += ',SchedulingDisabled';
    const roles = Object.keys(n.metadata?.labels ?? {})
      .filter((k) => k.startsWith('node-role.kubernetes.io/'))
      .map((k) => k.slice('node-role.kubernetes.io/'.length))
      .filter(Boolean);
    const addr = (t: string) => n.status?.addresses?.find((a) => a.type === t)?.address ?? '<none>';
    const info = n.status?.nodeInfo;
    return [
      n.metadata?.name ?? '',
      status,
      roles.length ? roles.join(',') : '<none>',
      age(o, now),
      info?.kubeletVersion ?? '',
      addr('InternalIP'),
      addr('ExternalIP'),
      info?.osImage ?? '<unknown>',
      info?.kernelVersion ?? '<unknown>',
      info?.containerRuntimeVersion ?? '<unknown>',
    ];
  },
};

const eventPrinter: Printer = {
  columns: [col('Last Seen'), col('Type'), col('Reason'), col('Object'), col('Subobject', 1), col('Source', 1), col('Message'), col('First Seen', 1), col('Count', 1, 'integer'), col('Name', 1)],
  cells(o, now) {
    const e = o as Event;
    const last = e.series?.lastObservedTime ?? e.lastTimestamp ?? e.eventTime ?? e.metadata?.creationTimestamp;
    const first = e.firstTimestamp ?? e.eventTime ?? e.metadata?.creationTimestamp;
    const io = e.involvedObject;
    const src = e.source?.component ? `${e.source.component}${e.source.host ? `, ${e.source.host}` : ''}` : e.reportingComponent ?? '';
    return [
      since(last ? String(last) : undefined, now),
      e.type ?? '',
      e.reason ?? '',
      `${(io?.kind ?? '').toLowerCase()}/${io?.name ?? ''}`,
      io?.fieldPath ?? '',
      src,
      (e.message ?? '').trim(),
      since(first ? String(first) : undefined, now),
      e.series?.count ?? e.count ?? 1,
      e.metadata?.name ?? '',
    ];
  },
};

const configMapPrinter: Printer = {
  columns: [col('Name'), col('Data', 0, 'integer'), col('Age')],
  cells(o, now) {
    const c = o as ConfigMap;
    return [c.metadata?.name ?? '', Object.keys(c.data ?? {}).length + Object.keys(c.binaryData ?? {}).length, age(o, now)];
  },
};

const secretPrinter: Printer = {
  columns: [col('Name'), col('Type'), col('Data', 0, 'integer'), col('Age')],
  cells(o, now) {
    const s = o as Secret;
    return [s.metadata?.name ?? '', s.type ?? 'Opaque', Object.keys(s.data ?? {}).length, age(o, now)];
  },
};

const pvcPrinter: Printer = {
  columns: [col('Name'), col('Status'), col('Volume'), col('Capacity'), col('Access Modes'), col('StorageClass'), col('VolumeAttributesClass'), col('Age'), col('VolumeMode', 1)],
  cells(o, now) {
    const p = o as PersistentVolumeClaim;
    const modes = (p.status?.accessModes ?? []).map((m) => ({ ReadWriteOnce: 'RWO', ReadOnlyMany: 'ROX', ReadWriteMany: 'RWX', ReadWriteOncePod: 'RWOP' })[m] ?? m);
    return [
      p.metadata?.name ?? '',
      p.metadata?.deletionTimestamp ? 'Terminating' : p.status?.phase ?? '',
      p.spec?.volumeName ?? '',
      p.status?.capacity?.storage ?? '',
      modes.join(','),
      p.spec?.storageClassName ?? '',
      p.spec?.volumeAttributesClassName ?? '<unset>',
      age(o, now),
      p.spec?.volumeMode ?? '<unset>',
    ];
  },
};

const defaultPrinter: Printer = {
  columns: [col('Name'), col('Age')],
  cells: (o, now) => [o.metadata?.name ?? '', age(o, now)],
};

const PRINTERS: Record<string, Printer> = {
  Pod: podPrinter,
  Service: servicePrinter,
  Endpoints: endpointsPrinter,
  EndpointSlice: sliceprinter,
  Deployment: deploymentPrinter,
  ReplicaSet: replicaSetLike((o) => selectorString((o as ReplicaSet).spec?.selector)),
  ReplicationController: replicaSetLike((o) => mapSelector((o as ReplicationController).spec?.selector)),
  StatefulSet: statefulSetPrinter,
  DaemonSet: daemonSetPrinter,
  Job: jobPrinter,
  CronJob: cronJobPrinter,
  Namespace: namespacePrinter,
  Node: nodePrinter,
  Event: eventPrinter,
  ConfigMap: configMapPrinter,
  Secret: secretPrinter,
  PersistentVolumeClaim: pvcPrinter,
};

/** Name, the kind's declared columns (api/kinds/), Age: as kubectl prints a CRD's additionalPrinterColumns. */
function declaredPrinter(columns: readonly DeclaredColumn[]): Printer {
  return {
    columns: [col('Name'), ...columns.map((c) => ({ ...col(c.name, c.priority ?? 0, c.type ?? 'string'), ...(c.description ? { description: c.description } : {}) })), col('Age')],
    cells: (o, now) => [o.metadata?.name ?? '', ...columns.map((c) => c.value(o as Record<string, unknown>)), age(o, now)],
  };
}

const DECLARED: ReadonlyMap<string, Printer> = new Map(KIND_DECLS.filter((d) => d.columns).map((d) => [d.info.kind, declaredPrinter(d.columns!)]));

/** The hand-written printer of the kind (upstream's pkg/printers), else its declared columns, else Name and Age. */
export function printerFor(kind: string): Printer {
  return PRINTERS[kind] ?? DECLARED.get(kind) ?? defaultPrinter;
}
