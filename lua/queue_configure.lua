--[[
  queue_configure: sets or changes an event's waiting room. A first call opens it in state
  "open" with empty counters; later calls change the settings live (a new rate counts from the
  next admission tick) and keep the state and counters.

  Input:
    KEYS[1] queue       settings, state and counters (hash)
    KEYS[2] meta        the event's settings (hash): only read, to check the event exists
    ARGV[1] opens_at in ms since epoch
    ARGV[2] admissions per minute
    ARGV[3] max active admissions
    ARGV[4] admission ttl in ms
    ARGV[5] "1" enabled, "0" off

  Output:
    {"OK"}
    Errors, nothing changed:
    {"EVENT_NOT_FOUND", message}
    {"INVALID_ARGUMENT", message} opens_at moved after the queue opened (its time passed), since
                                  the line's order is settled from then on
  Cost: O(1).
]]
-- @include clock

if redis.call('EXISTS', KEYS[2]) == 0 then return {'EVENT_NOT_FOUND', 'no event for these keys'} end
local now = now_ms()
local old_opens = redis.call('HGET', KEYS[1], 'opens_at_ms')
if old_opens and old_opens ~= ARGV[1] and tonumber(old_opens) <= now then
  return {'INVALID_ARGUMENT', 'opens_at cannot change once the queue has opened'}
end
redis.call('HSET', KEYS[1], 'opens_at_ms', ARGV[1], 'admit_per_minute', ARGV[2],
  'max_active', ARGV[3], 'admission_ttl_ms', ARGV[4], 'enabled', ARGV[5])
if not old_opens then
  redis.call('HSET', KEYS[1], 'state', 'open', 'joined', 0, 'admitted', 0, 'seq', 0,
    'bucket', 0, 'bucket_ms', now)
end
return {'OK'}
