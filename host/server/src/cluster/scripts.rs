//! The Lua scripts the link runs in Redis, each one atomic.

pub(super) const PUBLISH: &str = r"
local n = redis.call('INCR', KEYS[1])
redis.call('LPUSH', KEYS[2], n .. ' ' .. ARGV[1])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
return n";

// The idempotency record's state machine (the engine's `Record`), as
// scripts: `running <until> <fence> <pin|->`, `pinned <pin>`, `done <outcome>`.
// CLAIM: ARGV fence, now ms, until ms, ttl ms.
pub(super) const CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
local function take(pin)
  local px = math.max(tonumber(ARGV[4]), tonumber(ARGV[3]) - tonumber(ARGV[2]), 1)
  redis.call('SET', KEYS[1], 'running ' .. ARGV[3] .. ' ' .. ARGV[1] .. ' ' .. pin, 'PX', string.format('%d', px))
  return 'claimed ' .. pin
end
if not v then return take('-') end
if string.sub(v, 1, 5) == 'done ' then return v end
if string.sub(v, 1, 7) == 'pinned ' then return take(string.sub(v, 8)) end
local held, fence, pin = string.match(v, '^running (%d+) (%S+) (.*)$')
if held and tonumber(held) <= tonumber(ARGV[2]) then return take(pin) end
return 'running'";

// PIN: ARGV fence, pin JSON. Only the fence's holder writes.
pub(super) const PIN: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local held, fence = string.match(v, '^running (%d+) (%S+) ')
if fence ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], 'running ' .. held .. ' ' .. fence .. ' ' .. ARGV[2], 'KEEPTTL')
return 1";

// SETTLE: ARGV fence, mode (`set`, `free`, `release`), value, ttl ms. A
// record held by another fence, or already settled, is left alone;
// `release` gives back a pin the claim took over from a dead run.
pub(super) const SETTLE: &str = r"
local v = redis.call('GET', KEYS[1])
local pin = nil
if v then
  local fence, p = string.match(v, '^running %d+ (%S+) (.*)$')
  if fence ~= ARGV[1] then return 0 end
  pin = p
end
if ARGV[2] == 'set' then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
elseif v then
  if ARGV[2] == 'release' and pin and pin ~= '-' then
    redis.call('SET', KEYS[1], 'pinned ' .. pin, 'PX', ARGV[4])
  else
    redis.call('DEL', KEYS[1])
  end
end
return 1";

// IDENTITY: KEYS identity; ARGV name, fingerprint, replica, at ms,
// overwrite (1/0). Answers [verdict, fingerprint, replica, at] of the
// cluster as it stood: `new`, `same`, `overwrote`, `differs` or `name`.
pub(super) const IDENTITY: &str = r"
local h = redis.call('HMGET', KEYS[1], 'name', 'fingerprint', 'replica', 'at')
local function set()
  redis.call('HSET', KEYS[1], 'name', ARGV[1], 'fingerprint', ARGV[2], 'replica', ARGV[3], 'at', ARGV[4])
end
if not h[1] then set() return {'new', ARGV[2], ARGV[3], ARGV[4]} end
if h[1] ~= ARGV[1] then return {'name', h[1], h[3] or '', h[4] or ''} end
if h[2] == ARGV[2] then return {'same', h[2], h[3] or '', h[4] or ''} end
if ARGV[5] == '1' then set() return {'overwrote', h[2] or '', h[3] or '', h[4] or ''} end
return {'differs', h[2] or '', h[3] or '', h[4] or ''}";

// SEED: KEYS defs, deleted, seq, events; ARGV field, definition JSON, mode
// (`set`: ours wins; `nx`: only if the cluster lacks it), event JSON, log
// size. A write that changes the shared copy publishes its event, so every
// replica takes it in (a join's writes included).
pub(super) const SEED: &str = r"
local changed = 0
if ARGV[3] == 'set' then
  if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
    changed = 1
  end
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  changed = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
end
if changed == 1 then
  local n = redis.call('INCR', KEYS[3])
  redis.call('LPUSH', KEYS[4], n .. ' ' .. ARGV[4])
  redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[5]) - 1)
end
return changed";

// DELIF: delete hash field ARGV[1] only while it still holds ARGV[2] (a
// sweep never removes a newer entry written meanwhile).
pub(super) const DELIF: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0";

pub(super) const LEASE: &str = r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0";

pub(super) const COUNT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n";
