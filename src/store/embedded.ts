import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import pino from 'pino';
import RedisMock from 'ioredis-mock';
import { parseCidr } from '../util/cidr.js';
import { parsePortRange } from '../util/allocator.js';
import { ObjectStore } from './object-store.js';
import { type RedisLike, RedisPersistence } from './persistence.js';
import { Strategies } from './strategy.js';
import type { Store } from './types.js';

export interface EmbeddedStoreOptions {
  /** default 127.96.0.0/12 */
  serviceCidr?: string;
  /** default 127.244.0.0/16 (Endpoints may hold these loopback addresses) */
  podCidr?: string;
  /** default 30000-32767 */
  nodePortRange?: string;
  allowLoopbackEndpoints?: boolean;
  /** node addresses, accepted in Endpoints like pod IPs (host-network servers: the API, DNS) */
  hostAddresses?: readonly string[];
  /** state survives restarts in `<stateDir>/store.json`; omit for a throw-away store */
  stateDir?: string;
  /** an ioredis-compatible client to persist to instead of the embedded one */
  redis?: RedisLike;
  historySize?: number;
  log?: Logger;
}

export type ClosableStore = Store & { close(): Promise<void>; flush(): Promise<void> };

export const SYSTEM_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'] as const;

/**
 * The store kubeloop runs on by default: in-process, on `ioredis-mock`, snapshotted to the
 * state dir. The system namespaces exist once it resolves.
 */
export async function createEmbeddedStore(o: EmbeddedStoreOptions = {}): Promise<ClosableStore> {
  const log = o.log ?? pino({ level: 'silent' });
  const strategies = new Strategies({
    serviceCidr: parseCidr(o.serviceCidr ?? '127.96.0.0/12'),
    podCidr: parseCidr(o.podCidr ?? '127.244.0.0/16'),
    nodePortRange: parsePortRange(o.nodePortRange ?? '30000-32767'),
    allowLoopbackEndpoints: o.allowLoopbackEndpoints ?? false,
    hostAddresses: o.hostAddresses,
  });
  // ioredis-mock instances with the same host/port share one keyspace: give each store its own
  const client = o.redis ?? (new RedisMock({ host: `embedded-${randomUUID()}` }) as unknown as RedisLike);
  const persistence = new RedisPersistence({
    client,
    snapshotFile: !o.redis && o.stateDir ? join(o.stateDir, 'store.json') : undefined,
  });
  const store = new ObjectStore({ strategies, persistence, log, historySize: o.historySize });
  await store.load();
  for (const name of SYSTEM_NAMESPACES) {
    if (!(await store.tryGet('Namespace', undefined, name))) {
      await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
    }
  }
  return store;
}
