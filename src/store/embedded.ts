import type { Logger } from 'pino';
import pino from 'pino';
import { parseCidr } from '../util/cidr.js';
import { parsePortRange } from '../util/allocator.js';
import { EmbeddedStorage } from './backends/embedded.js';
import { ObjectStore } from './object-store.js';
import type { Storage } from './storage.js';
import { Strategies } from './strategy.js';
import type { Store } from './types.js';

export interface StoreOptions {
  /** default 127.96.0.0/12 */
  serviceCidr?: string;
  /** default 127.244.0.0/16 (Endpoints may hold these loopback addresses) */
  podCidr?: string;
  /** default 30000-32767 */
  nodePortRange?: string;
  allowLoopbackEndpoints?: boolean;
  /** node addresses, accepted in Endpoints like pod IPs (host-network servers: the API, DNS) */
  hostAddresses?: readonly string[];
  /** Nodes written without `spec.podCIDR` get a free slice of --pod-cidr of this prefix length (several daemons on one storage) */
  nodeCidrMaskSize?: number;
  historySize?: number;
  log?: Logger;
}

export interface EmbeddedStoreOptions extends StoreOptions {
  /** state survives restarts in `<stateDir>` (journal + snapshots); omit for a throw-away store */
  stateDir?: string;
  /** fsync each commit batch (default true; off only for throw-away stores in tests and benches) */
  fsync?: boolean;
}

export type ClosableStore = Store & { close(): Promise<void>; flush(): Promise<void>; readonly backend: string };

export const SYSTEM_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'] as const;

/**
 * The registry over a given storage backend. The system namespaces exist once it resolves.
 * Several registries may share one storage (several daemons on one Redis).
 */
export async function createStore(storage: Storage, o: StoreOptions = {}): Promise<ClosableStore> {
  const log = o.log ?? pino({ level: 'silent' });
  const strategies = new Strategies({
    serviceCidr: parseCidr(o.serviceCidr ?? '127.96.0.0/12'),
    podCidr: parseCidr(o.podCidr ?? '127.244.0.0/16'),
    nodePortRange: parsePortRange(o.nodePortRange ?? '30000-32767'),
    allowLoopbackEndpoints: o.allowLoopbackEndpoints ?? false,
    hostAddresses: o.hostAddresses,
    nodeCidrMaskSize: o.nodeCidrMaskSize,
  });
  const store = new ObjectStore({ strategies, storage, log, historySize: o.historySize });
  try {
    await store.load();
    for (const name of SYSTEM_NAMESPACES) {
      if (await store.tryGet('Namespace', undefined, name)) continue;
      await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } }).catch((e: unknown) => {
        // another daemon on the same storage made it first
        if ((e as { reason?: string }).reason !== 'AlreadyExists') throw e;
      });
    }
  } catch (e) {
    await store.close().catch(() => undefined);
    throw e;
  }
  return store;
}

/** The store kubeloop runs on by default: in process, journaled to the state dir. */
export async function createEmbeddedStore(o: EmbeddedStoreOptions = {}): Promise<ClosableStore> {
  const storage = await EmbeddedStorage.open({ dir: o.stateDir, historySize: o.historySize, ...(o.fsync === false ? { fsync: false } : {}), ...(o.log ? { log: o.log } : {}) } as Parameters<typeof EmbeddedStorage.open>[0]);
  return createStore(storage, o);
}
