// @ts-check
/**
 * Built-in image `redis`: an in-memory server speaking RESP2 on every declared TCP containerPort
 * (6379 when none, or `--port N`). Strings, lists, hashes and sets with expiry; enough for the
 * tutorials (guestbook, `kubectl expose pod redis`) and for clients (redis-cli, ioredis,
 * node-redis). Data lives as long as the process. Not a real Redis: no persistence, no pub/sub,
 * no transactions, no scripting.
 */
import net from 'node:net';
import { tcpPorts, flag, listen, exitOnSignal } from './lib.mjs';

const IMAGE = 'redis';
const argv = process.argv.slice(2);
/** @type {number[]} */
const ports = [...tcpPorts];
const portFlag = Number(flag(argv, 'port'));
if (Number.isInteger(portFlag) && portFlag > 0 && !ports.includes(portFlag)) ports.push(portFlag);
if (!ports.length) ports.push(6379);

/** @typedef {{ type: 'string', value: string } | { type: 'list', value: string[] } | { type: 'hash', value: Map<string, string> } | { type: 'set', value: Set<string> }} Value */
/** @type {Map<string, Value>} */
const db = new Map();
/** @type {Map<string, number>} key → expiry (ms since epoch) */
const expires = new Map();

/** @param {string} key */
function lookup(key) {
  const at = expires.get(key);
  if (at !== undefined && at <= Date.now()) {
    db.delete(key);
    expires.delete(key);
  }
  return db.get(key);
}

/** @param {string} key */
function remove(key) {
  expires.delete(key);
  return db.delete(key);
}

class Reply {
  /** @param {string} s */
  constructor(s) {
    this.s = s;
  }
}
/** @param {string} s */
const simple = (s) => new Reply(`+${s}\r\n`);
/** @param {string} s */
const error = (s) => new Reply(`-${s}\r\n`);
const OK = simple('OK');
const WRONGTYPE = error('WRONGTYPE Operation against a key holding the wrong kind of value');
const NOTINT = error('ERR value is not an integer or out of range');
const SYNTAX = error('ERR syntax error');

/**
 * RESP encoding of a JS value: Reply as is, number → integer, string → bulk, null → nil, array → array.
 * @param {unknown} v
 * @returns {string}
 */
function encode(v) {
  if (v instanceof Reply) return v.s;
  if (typeof v === 'number') return `:${v}\r\n`;
  if (typeof v === 'string') return `$${Buffer.byteLength(v)}\r\n${v}\r\n`;
  if (v === null || v === undefined) return '$-1\r\n';
  if (Array.isArray(v)) return `*${v.length}\r\n${v.map(encode).join('')}`;
  return error('ERR internal').s;
}

/** @param {string} s */
const toInt = (s) => (/^-?\d+$/.test(s) ? Number(s) : NaN);

/**
 * @template {Value['type']} T
 * @param {string} key
 * @param {T} type
 * @param {boolean} create
 * @returns {Extract<Value, { type: T }> | Reply | undefined}
 */
function typed(key, type, create) {
  const v = lookup(key);
  if (v && v.type !== type) return WRONGTYPE;
  if (v) return /** @type {Extract<Value, { type: T }>} */ (v);
  if (!create) return undefined;
  /** @type {Value} */
  const fresh =
    type === 'list' ? { type: 'list', value: [] } : type === 'hash' ? { type: 'hash', value: new Map() } : type === 'set' ? { type: 'set', value: new Set() } : { type: 'string', value: '' };
  db.set(key, fresh);
  return /** @type {Extract<Value, { type: T }>} */ (fresh);
}

/** @param {string} pattern */
function globToRegExp(pattern) {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        re += `[${pattern.slice(i + 1, end).replace(/^\^/, '^').replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else if (c === '\\' && i + 1 < pattern.length) re += `\\${pattern[++i]}`;
    else re += c.replace(/[.+^${}()|\\/]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 's');
}

/**
 * @param {string} key
 * @param {number} by
 */
function incr(key, by) {
  const v = typed(key, 'string', false);
  if (v instanceof Reply) return v;
  const n = v ? toInt(v.value) : 0;
  if (Number.isNaN(n) || Number.isNaN(by)) return NOTINT;
  const next = n + by;
  if (v) v.value = String(next);
  else db.set(key, { type: 'string', value: String(next) });
  return next;
}

/**
 * @param {string[]} a the command and its arguments
 * @returns {unknown}
 */
function execute(a) {
  const cmd = a[0].toUpperCase();
  const n = a.length - 1;
  /** @param {number} min @param {number} [max] */
  const arity = (min, max = min) => n < min || n > max;
  const wrongArgs = error(`ERR wrong number of arguments for '${a[0].toLowerCase()}' command`);
  switch (cmd) {
    case 'PING':
      return n ? a[1] : simple('PONG');
    case 'ECHO':
      return arity(1) ? wrongArgs : a[1];
    case 'SELECT':
      return arity(1) ? wrongArgs : OK;
    case 'QUIT':
      return OK;
    case 'COMMAND':
      return [];
    case 'CLIENT':
    case 'READONLY':
      return OK;
    case 'CONFIG':
      return [];
    case 'INFO':
      return `# Server\r\nredis_version:7.2.0\r\nredis_mode:standalone\r\nkubeloop_builtin:1\r\n# Replication\r\nrole:master\r\nconnected_slaves:0\r\n# Persistence\r\nloading:0\r\n# Keyspace\r\ndb0:keys=${db.size},expires=${expires.size}\r\n`;
    case 'DBSIZE':
      for (const k of [...db.keys()]) lookup(k);
      return db.size;
    case 'FLUSHALL':
    case 'FLUSHDB':
      db.clear();
      expires.clear();
      return OK;
    case 'GET': {
      if (arity(1)) return wrongArgs;
      const v = typed(a[1], 'string', false);
      return v instanceof Reply ? v : v ? v.value : null;
    }
    case 'SET': {
      if (n < 2) return wrongArgs;
      let ttl;
      let nx = false;
      let xx = false;
      for (let i = 3; i < a.length; i++) {
        const o = a[i].toUpperCase();
        if (o === 'NX') nx = true;
        else if (o === 'XX') xx = true;
        else if ((o === 'EX' || o === 'PX') && i + 1 < a.length) {
          const t = toInt(a[++i]);
          if (!(t > 0)) return error('ERR invalid expire time in set');
          ttl = o === 'EX' ? t * 1000 : t;
        } else return SYNTAX;
      }
      const exists = lookup(a[1]) !== undefined;
      if ((nx && exists) || (xx && !exists)) return null;
      db.set(a[1], { type: 'string', value: a[2] });
      if (ttl) expires.set(a[1], Date.now() + ttl);
      else expires.delete(a[1]);
      return OK;
    }
    case 'SETNX':
      if (arity(2)) return wrongArgs;
      if (lookup(a[1])) return 0;
      db.set(a[1], { type: 'string', value: a[2] });
      return 1;
    case 'SETEX': {
      if (arity(3)) return wrongArgs;
      const t = toInt(a[2]);
      if (!(t > 0)) return error('ERR invalid expire time in setex');
      db.set(a[1], { type: 'string', value: a[3] });
      expires.set(a[1], Date.now() + t * 1000);
      return OK;
    }
    case 'GETSET': {
      if (arity(2)) return wrongArgs;
      const v = typed(a[1], 'string', false);
      if (v instanceof Reply) return v;
      db.set(a[1], { type: 'string', value: a[2] });
      expires.delete(a[1]);
      return v ? v.value : null;
    }
    case 'MGET':
      if (n < 1) return wrongArgs;
      return a.slice(1).map((k) => {
        const v = lookup(k);
        return v && v.type === 'string' ? v.value : null;
      });
    case 'MSET':
      if (n < 2 || n % 2) return wrongArgs;
      for (let i = 1; i < a.length; i += 2) {
        db.set(a[i], { type: 'string', value: a[i + 1] });
        expires.delete(a[i]);
      }
      return OK;
    case 'APPEND': {
      if (arity(2)) return wrongArgs;
      const v = typed(a[1], 'string', true);
      if (v instanceof Reply || !v) return v;
      v.value += a[2];
      return Buffer.byteLength(v.value);
    }
    case 'STRLEN': {
      if (arity(1)) return wrongArgs;
      const v = typed(a[1], 'string', false);
      return v instanceof Reply ? v : v ? Buffer.byteLength(v.value) : 0;
    }
    case 'INCR':
      return arity(1) ? wrongArgs : incr(a[1], 1);
    case 'DECR':
      return arity(1) ? wrongArgs : incr(a[1], -1);
    case 'INCRBY':
      return arity(2) ? wrongArgs : incr(a[1], toInt(a[2]));
    case 'DECRBY':
      return arity(2) ? wrongArgs : incr(a[1], -toInt(a[2]));
    case 'DEL':
    case 'UNLINK':
      if (n < 1) return wrongArgs;
      return a.slice(1).filter((k) => lookup(k) !== undefined && remove(k)).length;
    case 'EXISTS':
      if (n < 1) return wrongArgs;
      return a.slice(1).filter((k) => lookup(k) !== undefined).length;
    case 'TYPE': {
      if (arity(1)) return wrongArgs;
      const v = lookup(a[1]);
      return simple(v ? v.type : 'none');
    }
    case 'KEYS': {
      if (arity(1)) return wrongArgs;
      const re = globToRegExp(a[1]);
      return [...db.keys()].filter((k) => lookup(k) !== undefined && re.test(k));
    }
    case 'EXPIRE':
    case 'PEXPIRE': {
      if (arity(2)) return wrongArgs;
      const t = toInt(a[2]);
      if (Number.isNaN(t)) return NOTINT;
      if (!lookup(a[1])) return 0;
      if (t <= 0) remove(a[1]);
      else expires.set(a[1], Date.now() + (cmd === 'EXPIRE' ? t * 1000 : t));
      return 1;
    }
    case 'PERSIST':
      if (arity(1)) return wrongArgs;
      return lookup(a[1]) && expires.delete(a[1]) ? 1 : 0;
    case 'TTL':
    case 'PTTL': {
      if (arity(1)) return wrongArgs;
      if (!lookup(a[1])) return -2;
      const at = expires.get(a[1]);
      if (at === undefined) return -1;
      const ms = at - Date.now();
      return cmd === 'TTL' ? Math.ceil(ms / 1000) : ms;
    }
    case 'LPUSH':
    case 'RPUSH': {
      if (n < 2) return wrongArgs;
      const v = typed(a[1], 'list', true);
      if (v instanceof Reply || !v) return v;
      for (const x of a.slice(2)) cmd === 'LPUSH' ? v.value.unshift(x) : v.value.push(x);
      return v.value.length;
    }
    case 'LPOP':
    case 'RPOP': {
      if (arity(1)) return wrongArgs;
      const v = typed(a[1], 'list', false);
      if (v instanceof Reply || !v) return v ?? null;
      const x = cmd === 'LPOP' ? v.value.shift() : v.value.pop();
      if (!v.value.length) remove(a[1]);
      return x ?? null;
    }
    case 'LLEN': {
      if (arity(1)) return wrongArgs;
      const v = typed(a[1], 'list', false);
      return v instanceof Reply ? v : v ? v.value.length : 0;
    }
    case 'LRANGE': {
      if (arity(3)) return wrongArgs;
      const v = typed(a[1], 'list', false);
      if (v instanceof Reply) return v;
      const len = v ? v.value.length : 0;
      let start = toInt(a[2]);
      let stop = toInt(a[3]);
      if (Number.isNaN(start) || Number.isNaN(stop)) return NOTINT;
      if (start < 0) start = Math.max(0, len + start);
      if (stop < 0) stop = len + stop;
      return v ? v.value.slice(start, stop + 1) : [];
    }
    case 'HSET':
    case 'HMSET': {
      if (n < 3 || n % 2 === 0) return wrongArgs;
      const v = typed(a[1], 'hash', true);
      if (v instanceof Reply || !v) return v;
      let added = 0;
      for (let i = 2; i < a.length; i += 2) {
        if (!v.value.has(a[i])) added++;
        v.value.set(a[i], a[i + 1]);
      }
      return cmd === 'HMSET' ? OK : added;
    }
    case 'HGET': {
      if (arity(2)) return wrongArgs;
      const v = typed(a[1], 'hash', false);
      return v instanceof Reply ? v : (v?.value.get(a[2]) ?? null);
    }
    case 'HGETALL':
    case 'HKEYS':
    case 'HVALS':
    case 'HLEN': {
      if (arity(1)) return wrongArgs;
      const v = typed(a[1], 'hash', false);
      if (v instanceof Reply) return v;
      const entries = v ? [...v.value] : [];
      if (cmd === 'HLEN') return entries.length;
      if (cmd === 'HKEYS') return entries.map((e) => e[0]);
      if (cmd === 'HVALS') return entries.map((e) => e[1]);
      return entries.flat();
    }
    case 'HDEL':
    case 'HEXISTS': {
      if (n < 2) return wrongArgs;
      const v = typed(a[1], 'hash', false);
      if (v instanceof Reply) return v;
      if (cmd === 'HEXISTS') return v?.value.has(a[2]) ? 1 : 0;
      const removed = a.slice(2).filter((f) => v?.value.delete(f)).length;
      if (v && !v.value.size) remove(a[1]);
      return removed;
    }
    case 'SADD':
    case 'SREM': {
      if (n < 2) return wrongArgs;
      const v = typed(a[1], 'set', cmd === 'SADD');
      if (v instanceof Reply) return v;
      if (!v) return 0;
      let changed = 0;
      for (const m of a.slice(2)) {
        if (cmd === 'SADD' ? !v.value.has(m) && v.value.add(m) : v.value.delete(m)) changed++;
      }
      if (!v.value.size) remove(a[1]);
      return changed;
    }
    case 'SMEMBERS':
    case 'SCARD': {
      if (arity(1)) return wrongArgs;
      const v = typed(a[1], 'set', false);
      if (v instanceof Reply) return v;
      return cmd === 'SCARD' ? (v?.value.size ?? 0) : [...(v?.value ?? [])];
    }
    case 'SISMEMBER': {
      if (arity(2)) return wrongArgs;
      const v = typed(a[1], 'set', false);
      return v instanceof Reply ? v : v?.value.has(a[2]) ? 1 : 0;
    }
    default:
      return error(`ERR unknown command '${a[0]}', with args beginning with: ${a.slice(1, 3).map((x) => `'${x}'`).join(' ')}`);
  }
}

/**
 * Parses as many complete commands as `buf` holds (RESP arrays or inline lines).
 * @param {Buffer} buf
 * @returns {{ commands: string[][], rest: Buffer, bad?: string }}
 */
function parse(buf) {
  /** @type {string[][]} */
  const commands = [];
  let pos = 0;
  for (;;) {
    if (pos >= buf.length) break;
    const eol = buf.indexOf('\r\n', pos);
    if (eol < 0) break;
    if (buf[pos] !== 0x2a /* '*' */) {
      const line = buf.subarray(pos, eol).toString('utf8').trim();
      pos = eol + 2;
      if (line) commands.push(line.split(/\s+/));
      continue;
    }
    const count = Number(buf.subarray(pos + 1, eol).toString());
    if (!Number.isInteger(count)) return { commands, rest: Buffer.alloc(0), bad: 'Protocol error: invalid multibulk length' };
    let p = eol + 2;
    /** @type {string[]} */
    const args = [];
    let complete = true;
    for (let i = 0; i < count; i++) {
      const e = buf.indexOf('\r\n', p);
      if (e < 0) {
        complete = false;
        break;
      }
      if (buf[p] !== 0x24 /* '$' */) return { commands, rest: Buffer.alloc(0), bad: "Protocol error: expected '$'" };
      const len = Number(buf.subarray(p + 1, e).toString());
      if (e + 2 + len + 2 > buf.length) {
        complete = false;
        break;
      }
      args.push(buf.subarray(e + 2, e + 2 + len).toString('utf8'));
      p = e + 2 + len + 2;
    }
    if (!complete) break;
    pos = p;
    if (args.length) commands.push(args);
  }
  return { commands, rest: buf.subarray(pos) };
}

/** @type {Set<net.Socket>} */
const sockets = new Set();
/** @type {import('./lib.mjs').Closable[]} */
const closables = [{ close: () => sockets.forEach((s) => s.destroy()) }];
exitOnSignal(IMAGE, closables);

for (const port of ports) {
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    /** @type {Buffer} */
    let pending = Buffer.alloc(0);
    sock.on('data', (/** @type {Buffer} */ chunk) => {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      const { commands, rest, bad } = parse(pending);
      pending = rest;
      let out = '';
      for (const c of commands) {
        out += encode(execute(c));
        if (c[0].toUpperCase() === 'QUIT') {
          sock.end(out);
          return;
        }
      }
      if (bad) {
        sock.end(out + error(`ERR ${bad}`).s);
        return;
      }
      if (out) sock.write(out);
    });
  });
  closables.unshift(server);
  await listen(IMAGE, server, port);
}
process.stdout.write(`${IMAGE}: Ready to accept connections tcp\n`);
