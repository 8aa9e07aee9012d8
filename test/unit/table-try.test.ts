/** The TRY column of `up`'s table: a command that works against the Service's first TCP address. */
import t from 'tap';
import type { Service, Stored } from '../../src/api/types.js';
import { serviceRows } from '../../src/cli/table.js';

const svc = (name: string, clusterIP: string, ports: NonNullable<Service['spec']>['ports']): Stored<Service> =>
  ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default', resourceVersion: '1', uid: name }, spec: { clusterIP, clusterIPs: [clusterIP], ports } }) as Stored<Service>;
const tryOf = (s: Stored<Service>): string | undefined => serviceRows([s], () => undefined, [], (x) => `${x.metadata.name}.default.svc.cluster.local`)[0]?.curl;

t.equal(tryOf(svc('web', '127.96.0.10', [{ port: 80 }])), 'curl http://127.96.0.10:80/', 'HTTP: curl');
t.equal(tryOf(svc('redis', '127.96.0.11', [{ port: 6379 }])), 'redis-cli -h 127.96.0.11 -p 6379 ping', 'port 6379: redis-cli, not curl');
t.equal(tryOf(svc('cache', '127.96.0.12', [{ port: 7000, name: 'redis' }])), 'redis-cli -h 127.96.0.12 -p 7000 ping', 'a port named redis');
t.equal(tryOf(svc('cache2', '127.96.0.13', [{ port: 7001, appProtocol: 'redis' }])), 'redis-cli -h 127.96.0.13 -p 7001 ping', 'appProtocol redis');
t.equal(tryOf(svc('v6', '::1', [{ port: 6379 }])), 'redis-cli -h ::1 -p 6379 ping', 'IPv6: the address without brackets');
t.equal(tryOf(svc('dns', '127.96.0.14', [{ port: 53, protocol: 'UDP' }])), '', 'UDP only: no line');
t.equal(tryOf(svc('mixed', '127.96.0.15', [{ port: 53, protocol: 'UDP' }, { port: 6379 }])), 'redis-cli -h 127.96.0.15 -p 6379 ping', 'the first TCP port decides');
