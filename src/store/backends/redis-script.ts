/**
 * The Redis layout of the storage model and the one Lua script that commits a batch.
 *
 *   <p>rev              string   the global revision (INCR once per successful commit)
 *   <p>r:<key>          hash     { v: value, rv: revision of the commit that last wrote it }
 *   <p>idx:<name>       zset     every key whose first segment is <name> (`Service`, `~ip`), all
 *                                scores 0, so ZRANGEBYLEX lists a prefix in key order
 *   <p>idxs             set      the index names in use (for `list('')`)
 *   <p>changes          stream   one entry per commit, id `<rv>-0`; fields `s<key>` → value
 *                                (write) or `d<key>` → '' (delete); trimmed `MAXLEN ~ N`
 *
 * A commit is one script, so Redis runs it atomically: every condition is checked against the
 * state before the batch, then the revision is bumped, the records, indexes and stream entry
 * written. Nothing is written when a condition fails.
 */
import type { Change, ChangeBatch, StorageOp } from '../storage.js';

/** The first segment of a key: the index it is listed in. */
export const indexName = (key: string): string => {
  const i = key.indexOf('/');
  return i < 0 ? key : key.slice(0, i);
};

/**
 * KEYS: rev, changes, idxs, then per op its record hash and its index zset.
 * ARGV: maxlen, op count, then per op: kind (c/u/d), expected rv ('' = any), value, key, index name.
 * Reply: {1, rv} on success; {0, failing index (0-based), current value|nil, current rv|nil}.
 */
export const COMMIT_LUA = `
local n = tonumber(ARGV[2])
-- a key of another program under our prefix would fail a write half way (Redis does not roll a
-- script back): refuse before writing anything
local function foreign(k, want)
  local t = redis.call('TYPE', k).ok
  if t ~= 'none' and t ~= want then
    return redis.error_reply('WRONGTYPE key ' .. k .. ' holds a ' .. t .. ' where kubeloop keeps a ' .. want ..
      ': another program uses this key prefix; point kubeloop at another database (redis://host:port/N)')
  end
end
local e = foreign(KEYS[1], 'string') or foreign(KEYS[2], 'stream') or foreign(KEYS[3], 'set')
if e then return e end
for i = 1, n do
  e = foreign(KEYS[3 + 2 * i], 'zset')
  if e then return e end
end
for i = 1, n do
  local a = 2 + (i - 1) * 5
  local op, expect = ARGV[a + 1], ARGV[a + 2]
  local cur = redis.call('HMGET', KEYS[2 + 2 * i], 'v', 'rv')
  local ok
  if op == 'c' then
    ok = cur[2] == false
  else
    ok = cur[2] ~= false and (expect == '' or cur[2] == expect)
  end
  if not ok then return {0, i - 1, cur[1], cur[2]} end
end
local rv = string.format('%d', redis.call('INCR', KEYS[1]))
local fields = {}
for i = 1, n do
  local a = 2 + (i - 1) * 5
  local op, value, key, name = ARGV[a + 1], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local rec, idx = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  if op == 'd' then
    redis.call('DEL', rec)
    redis.call('ZREM', idx, key)
    if redis.call('ZCARD', idx) == 0 then redis.call('SREM', KEYS[3], name) end
    fields[#fields + 1] = 'd' .. key
    fields[#fields + 1] = ''
  else
    redis.call('HSET', rec, 'v', value, 'rv', rv)
    redis.call('ZADD', idx, 0, key)
    redis.call('SADD', KEYS[3], name)
    fields[#fields + 1] = 's' .. key
    fields[#fields + 1] = value
  end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], rv .. '-0', unpack(fields))
return {1, rv}
`;

/**
 * Lua's unpack() takes at most ~8,000 values; the stream entry needs two per op. A larger batch
 * is refused before it is sent.
 */
export const MAX_OPS_PER_COMMIT = 3_900;

export interface RedisKeys {
  rev: string;
  changes: string;
  idxs: string;
  record: (key: string) => string;
  index: (name: string) => string;
}

export const redisKeys = (prefix: string): RedisKeys => ({
  rev: `${prefix}rev`,
  changes: `${prefix}changes`,
  idxs: `${prefix}idxs`,
  record: (key) => `${prefix}r:${key}`,
  index: (name) => `${prefix}idx:${name}`,
});

/** numkeys followed by the keys and args of COMMIT_LUA for `ops`. */
export function commitArgs(keys: RedisKeys, ops: readonly StorageOp[], maxLen: number): (string | number)[] {
  const k: string[] = [keys.rev, keys.changes, keys.idxs];
  const a: string[] = [String(maxLen), String(ops.length)];
  for (const op of ops) {
    const name = indexName(op.key);
    k.push(keys.record(op.key), keys.index(name));
    const expect = op.op === 'create' || op.expectRv === undefined ? '' : String(op.expectRv);
    a.push(op.op[0], expect, op.op === 'delete' ? '' : op.value, op.key, name);
  }
  return [k.length, ...k, ...a];
}

/** `42-0` → 42 */
export const idRv = (id: string): number => Number(id.slice(0, id.indexOf('-')));

/** A stream entry as XRANGE/XREAD return it, decoded into a batch. */
export function decodeEntry(id: string, fields: string[]): ChangeBatch {
  const changes: Change[] = [];
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const f = fields[i];
    changes.push(f[0] === 'd' ? { key: f.slice(1) } : { key: f.slice(1), value: fields[i + 1] });
  }
  return { rv: idRv(id), changes };
}
