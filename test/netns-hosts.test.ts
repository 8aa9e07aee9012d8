/**
 * The netns host helper: two namespaces on one bridge reach each other on 198.18.0.x, each has
 * its own loopback (a listener on 127.x in host 1 is not reachable from host 2's 127.x), redis in
 * host 1 answers from host 2, and close() leaves no namespace or process behind.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { startNetnsHosts } from './helpers/netns-hosts.js';

const namespaces = (): string[] => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0]).filter(Boolean);

t.test('two hosts on a bridge, redis in host 1', async (t) => {
  const lan = await startNetnsHosts(t, { hosts: 2, redis: true });
  const [h1, h2] = lan.hosts;
  t.equal(h2.ip, '198.18.0.2');
  t.equal(lan.redisUrl, 'redis://198.18.0.1:6379');
  const pong = await h2.run(['redis-cli', '-h', h1.ip, 'ping']);
  t.match(pong.stdout, /PONG/, 'redis in host 1 answers host 2 over the bridge');

  // a listener on host 1's loopback is host 1's alone
  const srv = h1.spawn([process.execPath, '-e', "require('net').createServer((c)=>c.end('h1')).listen(7001,'127.0.0.9')"]);
  const probe = "const c=require('net').connect(7001,'127.0.0.9');c.on('data',(d)=>{process.stdout.write(d)});c.on('error',(e)=>{process.stdout.write(e.code);})";
  let seen = '';
  for (let i = 0; i < 100 && seen !== 'h1'; i++) seen = (await h1.run([process.execPath, '-e', probe])).stdout;
  t.equal(seen, 'h1', 'host 1 reaches its own loopback listener');
  t.equal((await h2.run([process.execPath, '-e', probe])).stdout, 'ECONNREFUSED', "host 2's 127/8 is its own");
  t.equal(srv.exitCode, null);

  const mine = namespaces().filter((n) => n.startsWith(`kl${process.pid}n`));
  t.equal(mine.length, 3, 'two hosts and a bridge namespace');
  await lan.close();
  t.same(namespaces().filter((n) => mine.includes(n)), [], 'close() deletes them');
  t.not(srv.exitCode === null && srv.signalCode === null, true, 'the process inside is gone');
});
