// DNS cases run once per data path (util/uv.ts): by the suite's own files (auto) and by
// test/dns-net.test.ts (net: dgram's API instead of the UDP socket's libuv handle).
import t from 'tap';
import type { DnsOptions } from '../src/dns/server.js';
import { decode, encodeQuery, endpoints, service, startDns, udpExchange } from './dns-helpers.js';

/** Through the real server over UDP: the first query of a question is answered by the general path, a repeat by the hot path, byte for byte the same. */
export function hotPathThroughServer(o: Partial<DnsOptions>): void {
  t.test(`through the server${o.dataPath ? ` (${o.dataPath} data path)` : ''}: a repeated query (hot path) gets the bytes the first (general path) got`, async (t) => {
    const f = await startDns(t, o);
    await f.store.create(service('default', 'web', { ports: [{ name: 'http', port: 80 }] }));
    await f.store.create(service('default', 'many', { clusterIP: 'None', ports: [{ name: 'http', port: 80 }] }));
    await f.store.create(endpoints('default', 'many', [{ addresses: Array.from({ length: 40 }, (_, i) => ({ ip: `127.244.1.${i + 1}` })), ports: [{ name: 'http', port: 80 }] }]));
    // wait for them with questions not asked below (an answer stays cached until something changes)
    for (const w of [encodeQuery('web.default.svc.cluster.local', 255), encodeQuery('_http._tcp.many.default.svc.cluster.local', 33, { edns: 4096 })]) {
      for (let i = 0; i < 100 && decode((await udpExchange(f.port, w))!).answer.length < (w[w.length - 1] === 0 ? 40 : 1); i++) await new Promise((res) => setTimeout(res, 20));
    }
    const queries: Array<[string, Buffer]> = [
      ['A', encodeQuery('web.default.svc.cluster.local', 1, { id: 1 })],
      ['A, mixed case, EDNS', encodeQuery('WEB.Default.svc.cluster.local', 1, { id: 2, edns: 1232 })],
      ['SRV', encodeQuery('_http._tcp.web.default.svc.cluster.local', 33, { id: 3 })],
      ['NXDOMAIN', encodeQuery('nope.default.svc.cluster.local', 1, { id: 4 })],
      ['AAAA (NODATA)', encodeQuery('web.default.svc.cluster.local', 28, { id: 5 })],
      ['40 A records, truncated without EDNS', encodeQuery('many.default.svc.cluster.local', 1, { id: 6 })],
      ['40 A records with EDNS 4096', encodeQuery('many.default.svc.cluster.local', 1, { id: 7, edns: 4096 })],
    ];
    for (const [what, q] of queries) {
      const first = await udpExchange(f.port, q);
      const second = await udpExchange(f.port, q);
      t.ok(first, `${what}: answered`);
      t.same(second, first, `${what}: same bytes from the cache`);
    }
    const many = decode((await udpExchange(f.port, queries[6][1]))!);
    t.equal(many.answer.length, 40, 'all 40 with EDNS');
    t.equal(decode((await udpExchange(f.port, queries[5][1]))!).tc, true, 'TC without EDNS');
    // a change empties the cache: the next (repeated) query sees it
    const q = encodeQuery('late.default.svc.cluster.local', 1);
    t.equal(decode((await udpExchange(f.port, q))!).rcode, 'NXDOMAIN');
    t.equal(decode((await udpExchange(f.port, q))!).rcode, 'NXDOMAIN', 'cached');
    await f.store.create(service('default', 'late', { ports: [{ name: 'http', port: 80 }] }));
    let r = decode((await udpExchange(f.port, q))!);
    for (let i = 0; i < 50 && r.rcode !== 'NOERROR'; i++) {
      await new Promise((res) => setTimeout(res, 20));
      r = decode((await udpExchange(f.port, q))!);
    }
    t.equal(r.rcode, 'NOERROR', 'the new Service answers');
    t.equal(r.answer.length, 1);
  });
}
