--[[
  queue_join: gives a buyer a place in an event's waiting room, or the place they have.
  Before opens_at (Redis's clock) the place is a random rank made by the service, so the
  pre-queue is a uniform shuffle at the opening with no work done then; from opens_at on, places
  follow arrival order (a sequence counted after every rank). Nothing is ever inserted before a
  place once the queue has opened, so the line's head is admitted by index.

  Input:
    KEYS[1] queue       settings, state, counters (hash)
    KEYS[2] line        ticket id -> place (sorted set): rank in [0, 2^40), or 2^40 + arrival
    KEYS[3] buyers      buyer id -> ticket id (hash): the buyer's latest ticket
    KEYS[4] tickets     ticket id -> JSON {buyer, joined_at_ms, admitted_at_ms} (hash)
    KEYS[5] admissions  buyer id -> admission expiry in ms (sorted set)
    ARGV[1] buyer id
    ARGV[2] ticket id for a new place (128 random bits made by the service)
    ARGV[3] random rank for a place before the opening (integer below 2^40, from the service)

  Output:
    {"OK", ticket id, index in the line (0-based), admitted so far, opens_at ms,
     live admission expiry ms or 0, admit per minute, now ms}
    The ticket is admitted when its index is below "admitted so far".
    Errors, nothing changed:
    {"QUEUE_NOT_FOUND", message} no waiting room on for the event
    {"QUEUE_CLOSED", message} a new place asked for after CloseQueue: a new buyer, or one whose
                              admission lapsed (a buyer waiting or admitted still gets their ticket)
  Idempotent per buyer while their ticket is waiting or its admission is live: joining again
  returns the same ticket. Once the admission has lapsed (its expiry passed, whether or not an
  admission tick has pruned it yet), joining again gives a new ticket at the back of the line, in
  arrival order, admitted again in its turn. The lapsed ticket stays in the line, among the
  admitted places it was counted in, so every index and the "admitted" counter keep their
  meaning: "joined" counts places given (a rejoin is one more), "admitted" counts admissions
  given, and joined - admitted is still the number waiting. Cost: O(log n).
]]
-- @include clock

local buyer = ARGV[1]
local cfg = redis.call('HMGET', KEYS[1], 'enabled', 'state', 'opens_at_ms', 'admitted',
  'admit_per_minute')
if cfg[1] ~= '1' then return {'QUEUE_NOT_FOUND', 'the event has no waiting room on'} end
local now = now_ms()
local ticket = redis.call('HGET', KEYS[3], buyer)
local expiry = tonumber(redis.call('ZSCORE', KEYS[5], buyer) or 0)
if expiry <= now then expiry = 0 end
local index = ticket and redis.call('ZRANK', KEYS[2], ticket)
if not ticket or (index < tonumber(cfg[4]) and expiry == 0) then
  if cfg[2] == 'closed' then return {'QUEUE_CLOSED', 'the waiting room is closed'} end
  ticket = ARGV[2]
  local place
  if now < tonumber(cfg[3]) then
    place = tonumber(ARGV[3])
  else
    place = 1099511627776 + redis.call('HINCRBY', KEYS[1], 'seq', 1)
  end
  redis.call('ZADD', KEYS[2], place, ticket)
  redis.call('HSET', KEYS[3], buyer, ticket)
  redis.call('HSET', KEYS[4], ticket, cjson.encode({buyer = buyer, joined_at_ms = now}))
  redis.call('HINCRBY', KEYS[1], 'joined', 1)
  index = redis.call('ZRANK', KEYS[2], ticket)
end
return {'OK', ticket, index, tonumber(cfg[4]), tonumber(cfg[3]), expiry, tonumber(cfg[5]), now}
