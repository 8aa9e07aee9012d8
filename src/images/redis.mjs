// @ts-check
/**
 * Built-in image `redis`: a server speaking the Redis protocol (RESP2) on `POD_IP` and every
 * declared TCP containerPort (6379 when none, or `--port N` as redis-server takes it), so
 * `kubectl run redis --image=redis` and `redis-cli -h <clusterIP> -p 6379 ping` work. Requests
 * are parsed with `redis-parser`; commands run on an in-memory `ioredis-mock` (data lives as
 * long as the container). Inline commands (`PING\r\n` typed into nc/telnet) work too.
 */
import net from 'node:net';
import { createRequire } from 'node:module';
import { tcpPorts, flag, listen, exitOnSignal, podLine } from './lib.mjs';

const require = createRequire(import.meta.url);
/** @type {new (o: { returnReply: (r: unknown) => void; returnError: (e: Error) => void; returnFatalError?: (e: Error) => void; returnBuffers?: boolean }) => { execute(b: Buffer): void; reset(): void }} */
const Parser = require('redis-parser');
/** @type {new (o?: object) => Record<string, (...a: unknown[]) => Promise<unknown>> & { disconnect(): void }} */
const RedisMock = require('ioredis-mock');

const IMAGE = 'redis';
const argv = process.argv.slice(2);
/** @type {number[]} */
const ports = [...tcpPorts];
const portFlag = Number(flag(argv, 'port'));
if (Number.isInteger(portFlag) && portFlag > 0 && portFlag < 65536 && !ports.includes(portFlag)) ports.push(portFlag);
if (ports.length === 0) ports.push(6379);

const db = new RedisMock();

/** commands whose string result is a status reply (`+OK`), not a bulk string */
const STATUS = new Set([
  'set', 'mset', 'setex', 'psetex', 'flushdb', 'flushall', 'select', 'rename', 'ltrim', 'lset', 'hmset', 'type',
  'auth', 'quit', 'watch', 'unwatch', 'multi', 'discard', 'restore', 'save', 'bgsave', 'lset', 'pfmerge', 'swapdb',
]);

/** @param {string} s */
const simple = (s) => `+${s.replace(/[\r\n]/g, ' ')}\r\n`;
/** @param {string} s */
const error = (s) => `-${s.replace(/[\r\n]/g, ' ')}\r\n`;

/**
 * @param {unknown} v
 * @returns {string | Buffer[]}
 */
function encode(v) {
  if (v === null || v === undefined) return '$-1\r\n';
  if (typeof v === 'number') return Number.isInteger(v) ? `:${v}\r\n` : bulk(String(v));
  if (typeof v === 'boolean') return `:${v ? 1 : 0}\r\n`;
  if (Buffer.isBuffer(v) || typeof v === 'string') return bulk(v);
  if (Array.isArray(v)) return `*${v.length}\r\n${v.map((x) => flat(encode(x))).join('')}`;
  if (typeof v === 'object') {
    const entries = Object.entries(/** @type {Record<string, unknown>} */ (v)).flat();
    return encode(entries);
  }
  return bulk(String(v));
}

/** @param {string | Buffer} s */
function bulk(s) {
  const b = Buffer.isBuffer(s) ? s : Buffer.from(s);
  return `$${b.length}\r\n${b.toString('binary')}\r\n`;
}

/** @param {string | Buffer[]} x */
const flat = (x) => (typeof x === 'string' ? x : x.map((b) => b.toString('binary')).join(''));

/**
 * Runs one command; resolves to the RESP reply text (binary string).
 * @param {unknown[]} args
 * @returns {Promise<string>}
 */
async function run(args) {
  if (!Array.isArray(args) || args.length === 0) return error('ERR empty command');
  const [name, ...rest] = args.map((a) => (Buffer.isBuffer(a) ? a.toString('binary') : String(a)));
  const cmd = name.toLowerCase();
  switch (cmd) {
    case 'ping':
      return rest.length ? bulk(rest[0]) : simple('PONG');
    case 'echo':
      return bulk(rest[0] ?? '');
    case 'command':
      return '*0\r\n';
    case 'hello':
      return error('NOPROTO this server speaks RESP2 only');
    case 'client':
      return rest[0]?.toLowerCase() === 'getname' ? '$-1\r\n' : simple('OK');
    case 'info':
      return bulk(`# Server\r\nredis_version:7.2.0-kubeloop\r\nredis_mode:standalone\r\n# Kubeloop\r\n${podLine}\r\n`);
    case 'quit':
      return simple('OK');
  }
  const fn = db[cmd];
  if (typeof fn !== 'function' || cmd.startsWith('_') || ['connect', 'disconnect', 'duplicate', 'pipeline', 'multi', 'exec', 'on', 'once', 'emit'].includes(cmd)) {
    const shown = rest.slice(0, 3).map((a) => `'${a}'`).join(' ');
    return error(`ERR unknown command '${name}', with args beginning with: ${shown}`);
  }
  try {
    const result = await fn.apply(db, rest);
    if (typeof result === 'string' && STATUS.has(cmd)) return simple(result);
    return flat(encode(result));
  } catch (e) {
    const msg = /** @type {Error} */ (e).message || String(e);
    return error(/^[A-Z]+ /.test(msg) ? msg : `ERR ${msg}`);
  }
}

/** @param {net.Socket} sock */
function serve(sock) {
  /** @type {Promise<void>} */
  let chain = Promise.resolve();
  let closing = false;
  /** @param {unknown[]} args */
  const enqueue = (args) => {
    chain = chain.then(async () => {
      if (sock.destroyed) return;
      const reply = await run(args);
      sock.write(Buffer.from(reply, 'binary'));
      const first = Array.isArray(args) && args.length ? String(args[0]).toLowerCase() : '';
      if (first === 'quit') {
        closing = true;
        sock.end();
      }
    });
  };
  /**
   * A protocol error's reply goes out after the replies of the commands before it (RESP
   * answers in request order; a pipelining client pairs replies with requests by position).
   * @param {Error} err
   * @param {boolean} fatal the parser cannot go on: no more input is read, the connection ends
   */
  const protocolError = (err, fatal) => {
    if (fatal) closing = true;
    chain = chain.then(() => {
      if (sock.destroyed) return;
      sock.write(error(`ERR Protocol error: ${err.message}`));
      if (fatal) sock.end();
    });
  };
  const parser = new Parser({
    returnBuffers: true,
    returnReply: (reply) => enqueue(/** @type {unknown[]} */ (Array.isArray(reply) ? reply : [reply])),
    returnError: (err) => protocolError(err, false),
    returnFatalError: (err) => protocolError(err, true),
  });
  let inline = '';
  sock.on('data', (chunk) => {
    if (closing) return;
    if (inline !== '' || (chunk.length > 0 && chunk[0] !== 0x2a /* '*' */ && chunk[0] !== 0x24 /* '$' */)) {
      // inline command protocol: whitespace-separated words, one command per line
      inline += chunk.toString('binary');
      let nl;
      while ((nl = inline.indexOf('\n')) >= 0) {
        const line = inline.slice(0, nl).replace(/\r$/, '');
        inline = inline.slice(nl + 1);
        const words = line.trim().split(/\s+/).filter(Boolean);
        if (words.length) enqueue(words);
      }
      return;
    }
    parser.execute(chunk);
  });
  sock.on('error', () => sock.destroy());
}

/** @type {net.Server[]} */
const servers = [];
for (const port of ports) {
  const server = net.createServer(serve);
  servers.push(server);
  await listen(IMAGE, server, port);
}
process.stdout.write(`${IMAGE}: ready (${podLine})\n`);
exitOnSignal(IMAGE, [...servers, { close: () => db.disconnect() }]);
