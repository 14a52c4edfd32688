--[[
  queue_admit: one admission tick of an event's waiting room. Admits the next buyers of the line
  at the configured rate, smoothly, and never beyond max_active live admissions.

  The rate is a token bucket on Redis's clock kept in the queue hash: it fills at
  admit_per_minute / 60,000 per ms up to one second's worth, and each admission takes one. The
  bucket counts sixty-thousandths of an admission (field `bucket`), so that it fills by
  admit_per_minute a ms in whole numbers: fractions of an admission in floating point would round,
  and a tick could then admit one too few and the next one too many. Every
  service process may run this tick as often as it likes: the script is atomic and the bucket
  lives in Redis, so the rate holds whatever the number of processes. While the queue is paused,
  closed or not yet open the bucket stays empty (no burst at the opening or on resume).

  Input:
    KEYS[1] queue       settings, state, counters, the bucket (hash)
    KEYS[2] line        ticket id -> place (sorted set)
    KEYS[3] tickets     ticket id -> JSON record (hash)
    KEYS[4] admissions  buyer id -> admission expiry in ms (sorted set)
    ARGV[1] most admissions in this call (bounds the script's time)

  Output:
    {"OK", admitted by this call, admitted in all, live admissions, buyers waiting,
     then for each buyer admitted here the ms they waited in line (from joining, or from the
     opening for the pre-queue)}
    {"OK", 0, 0, 0, 0} when the event has no waiting room on
  Writes only the queue's own keys. Cost: O((admitted here + lapsed admissions) x log n).
]]
-- @include clock

local cfg = redis.call('HMGET', KEYS[1], 'enabled', 'state', 'opens_at_ms', 'admit_per_minute',
  'max_active', 'admission_ttl_ms', 'admitted', 'bucket', 'bucket_ms')
if cfg[1] ~= '1' then return {'OK', 0, 0, 0, 0} end
local now = now_ms()
local admitted = tonumber(cfg[7])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local active = redis.call('ZCARD', KEYS[4])
local waiting = redis.call('ZCARD', KEYS[2]) - admitted
if cfg[2] ~= 'open' or now < tonumber(cfg[3]) then
  redis.call('HSET', KEYS[1], 'bucket', 0, 'bucket_ms', now)
  return {'OK', 0, admitted, active, waiting}
end

local per_minute = tonumber(cfg[4])
local ONE = 60000  -- one admission, in the bucket's units
local capacity = math.max(ONE, per_minute * 1000)
local units = tonumber(cfg[8]) + math.max(0, now - tonumber(cfg[9])) * per_minute
units = math.min(capacity, units)
local n = math.min(math.floor(units / ONE), tonumber(cfg[5]) - active, waiting, tonumber(ARGV[1]))
local waits = {}
if n > 0 then
  local expires = now + tonumber(cfg[6])
  local opens = tonumber(cfg[3])
  local picked = redis.call('ZRANGE', KEYS[2], admitted, admitted + n - 1)
  local records = redis.call('HMGET', KEYS[3], unpack(picked))
  for i, ticket in ipairs(picked) do
    local record = cjson.decode(records[i])
    record.admitted_at_ms = now
    redis.call('HSET', KEYS[3], ticket, cjson.encode(record))
    redis.call('ZADD', KEYS[4], expires, record.buyer)
    waits[i] = now - math.max(record.joined_at_ms, opens)
  end
  admitted = admitted + n
  units = units - n * ONE
else
  n = 0
end
redis.call('HSET', KEYS[1], 'admitted', admitted, 'bucket', units, 'bucket_ms', now)
local reply = {'OK', n, admitted, active + n, waiting - n}
for _, wait in ipairs(waits) do reply[#reply + 1] = wait end
return reply
