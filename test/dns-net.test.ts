// The DNS server on the node:net data path (--data-path net): UDP through dgram's API rather than
// the socket's libuv handle. The cases whose code differs between the paths: the hot path,
// a throw in it, and plain queries over UDP and TCP with dig.
import pino from 'pino';
import t from 'tap';
import { Dns2Binding } from '../src/dns/server.js';
import { errorReply } from '../src/dns/wire.js';
import { decode, dig, encodeQuery, service, startDns, udpExchange, waitFor } from './dns-helpers.js';
import { hotPathThroughServer } from './dns-cases.js';

hotPathThroughServer({ dataPath: 'net' });

t.test('net path: a throw in the UDP cache path is not fatal, the general path answers', async (t) => {
  const b = new Dns2Binding({
    log: pino({ level: 'silent' }),
    address: '127.0.0.1',
    port: 0,
    answer: (q) => errorReply(q, 0),
    cached: () => {
      throw new Error('a bug in the cache path');
    },
    dataPath: 'net',
  });
  t.teardown(() => b.close());
  await b.listen();
  const r = await udpExchange(b.port, encodeQuery('a.example', 1, { id: 77 }));
  t.ok(r, 'answered');
  t.equal(decode(r!).id, 77);
  t.equal(decode(r!).rcode, 'NOERROR');
});

t.test('net path: dig over UDP and TCP', async (t) => {
  const f = await startDns(t, { dataPath: 'net' });
  await f.store.create(service('default', 'web', { ports: [{ name: 'http', port: 80 }] }));
  const name = 'web.default.svc.cluster.local';
  await waitFor(async () => decode((await udpExchange(f.port, encodeQuery(name, 1)))!).rcode === 'NOERROR', 3000, 'the Service to answer');
  const ip = decode((await udpExchange(f.port, encodeQuery(name, 1)))!).answer[0]!.split(' ').pop()!;
  t.match(ip, /^127\./);
  t.equal((await dig(f.port, [name, 'A', '+short'])).trim(), ip, 'UDP, twice (general path, then hot path)');
  t.equal((await dig(f.port, [name, 'A', '+short'])).trim(), ip);
  t.equal((await dig(f.port, [name, 'A', '+tcp', '+short'])).trim(), ip, 'TCP');
});
