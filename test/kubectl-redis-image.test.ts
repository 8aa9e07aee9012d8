/**
 * The built-in `redis` image that `kubectl run redis --image=redis` gets: RESP on the pod's IP
 * and declared port, parsed by redis-parser, executed by ioredis-mock. Driven by a real client
 * (ioredis), by raw inline commands, and by redis-cli when the machine has it.
 */
import { execFile, spawn } from 'node:child_process';
import net from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import t from 'tap';
import { waitFor } from './helpers/wait.js';

const IP = '127.0.77.9';
const PORT = 16379;

t.test('redis image', async (t) => {
  const child = spawn(process.execPath, [join(import.meta.dirname, '..', 'src', 'images', 'redis.mjs')], {
    env: { ...process.env, POD_IP: IP, POD_NAME: 'redis', POD_NAMESPACE: 'default', KUBELOOP_CONTAINER_PORTS: String(PORT) },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  t.teardown(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  });
  await waitFor(() => out.includes('ready'), { what: `the image to listen (${out})` });
  t.match(out, `redis: listening on ${IP}:${PORT}`);

  const client = new Redis({ host: IP, port: PORT, lazyConnect: true, maxRetriesPerRequest: 0 });
  t.teardown(() => client.disconnect());
  await client.connect();
  t.equal(await client.ping(), 'PONG');
  t.equal(await client.set('greeting', 'hello'), 'OK');
  t.equal(await client.get('greeting'), 'hello');
  t.equal(await client.incr('n'), 1);
  t.equal(await client.incr('n'), 2);
  t.equal(await client.rpush('l', 'a', 'b'), 2);
  t.same(await client.lrange('l', 0, -1), ['a', 'b']);
  await client.hset('h', 'f', 'v');
  t.same(await client.hgetall('h'), { f: 'v' });
  t.equal(await client.get('missing'), null);
  await t.rejects(client.call('frobnicate', 'x'), /ERR unknown command 'frobnicate'/);

  const inline = await new Promise<string>((resolve, reject) => {
    const s = net.connect({ host: IP, port: PORT }, () => s.write('PING\r\nGET greeting\r\n'));
    let buf = '';
    s.on('data', (c) => {
      buf += c.toString();
      if (buf.includes('hello')) {
        s.end();
        resolve(buf);
      }
    });
    s.on('error', reject);
  });
  t.equal(inline, '+PONG\r\n$5\r\nhello\r\n', 'inline commands (nc / telnet)');

  const cli = await new Promise<{ code: number; out: string } | undefined>((resolve) =>
    execFile('redis-cli', ['-h', IP, '-p', String(PORT), 'ping'], (err, stdout) =>
      resolve((err as NodeJS.ErrnoException | null)?.code === 'ENOENT' ? undefined : { code: err ? 1 : 0, out: stdout }),
    ),
  );
  if (cli) t.equal(cli.out.trim(), 'PONG', 'redis-cli ping');
  else t.comment('redis-cli is not installed here; ioredis covered the protocol');

  process.kill(-child.pid!, 'SIGTERM');
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  t.equal(code, 0, 'exits 0 on SIGTERM');
});
