--[[
  hold: holds every requested seat for one holder, or none of them.

  Input:
    KEYS[1] meta       event settings and the change-log version (hash)
    KEYS[2] seats      seat id -> "A" | "H:<hold id>" | "B:<booking id>" (hash)
    KEYS[3] holds      hold id -> JSON record, live or tombstone (hash)
    KEYS[4] deadlines  hold id by expiry / tombstone purge time (sorted set)
    KEYS[5] holders    holder id -> space-separated live hold ids (hash)
    KEYS[6] changes    change log (stream, ids "0-<version>")
    KEYS[7] outbox     unused here; declared so every mutating script takes the same keys
    KEYS[8] request    retry record for (holder, request id) (string, 24 h TTL); any key of
                       the event when there is no request id (then unused)

    ARGV[1] hold id: 128 random bits made by the service
    ARGV[2] holder id
    ARGV[3] ttl in ms; 0 takes the event's default
    ARGV[4] request id, or "" for none
    ARGV[5..] seat ids

  Output:
    {"OK", hold id, expires at (ms since epoch)}; a retry with a known request id returns
    {"OK", first hold id, its expiry as first granted, seat ids as JSON}.
    Errors, nothing changed by the request:
    {"EVENT_NOT_FOUND", message}
    {"INVALID_ARGUMENT", message} duplicate seat ids, TTL out of range
    {"INVALID_ARGUMENT", message, seat ids...} unknown seats
    {"LIMIT_EXCEEDED", message, "max_seats_per_hold" | "max_seats_per_holder"}
    {"SEATS_UNAVAILABLE", message, seat ids...} the seats held or booked by others

  Holds found past their deadline along the way (this holder's, or on the requested seats) are
  ended as expired first, whatever the outcome: that is the lazy half of expiry.
  Cost: O(requested seats + this holder's live holds + seats of holds that expire here).
]]
-- @include clock
-- @include changelog
-- @include end_hold
-- @include ttl

local hold_id, holder_id, request_id = ARGV[1], ARGV[2], ARGV[4]
local seats = {}
for i = 5, #ARGV do seats[#seats + 1] = ARGV[i] end

local meta = redis.call('HMGET', KEYS[1], 'max_seats_per_hold', 'max_seats_per_holder',
  'default_ttl_ms', 'max_ttl_ms', 'changelog_max')
if not meta[1] then return {'EVENT_NOT_FOUND', 'no event for these keys'} end
changelog_max = meta[5]

if request_id ~= '' then
  local earlier = redis.call('GET', KEYS[8])
  if earlier then
    local r = cjson.decode(earlier)
    return {'OK', r[1], r[2], cjson.encode(r[3])}
  end
end

local max_per_hold = tonumber(meta[1])
if #seats > max_per_hold then
  return {'LIMIT_EXCEEDED', 'at most ' .. max_per_hold .. ' seats per hold', 'max_seats_per_hold'}
end
local seen = {}
for _, seat in ipairs(seats) do
  if seen[seat] then return {'INVALID_ARGUMENT', 'seat ' .. seat .. ' is listed twice'} end
  seen[seat] = true
end
local ttl, ttl_err = resolve_ttl(ARGV[3], tonumber(meta[3]), tonumber(meta[4]))
if not ttl then return ttl_err end

local now = now_ms()

-- This holder's live seats, for the per-holder limit.
local live_ids, held = {}, 0
local list = redis.call('HGET', KEYS[5], holder_id)
if list then
  for id in string.gmatch(list, '%S+') do
    local raw = redis.call('HGET', KEYS[3], id)
    local rec = raw and cjson.decode(raw)
    if rec and rec.st == 'held' then
      if rec.e <= now then
        end_hold(id, rec, 'expired', now)
      else
        live_ids[#live_ids + 1] = id
        held = held + #rec.s
      end
    end
  end
end
local max_per_holder = tonumber(meta[2])
if held + #seats > max_per_holder then
  return {'LIMIT_EXCEEDED', 'at most ' .. max_per_holder .. ' seats held at once per holder',
    'max_seats_per_holder'}
end

local states = redis.call('HMGET', KEYS[2], unpack(seats))
local unknown, taken, ended = {}, {}, {}
for i, state in ipairs(states) do
  if not state then
    unknown[#unknown + 1] = seats[i]
  elseif state ~= 'A' then
    local other = string.sub(state, 3)
    local free = ended[other]
    if free == nil and string.sub(state, 1, 1) == 'H' then
      -- A seat whose hold record is gone or ended (which the scripts never leave behind) counts
      -- as free rather than failing every hold on it.
      local raw = redis.call('HGET', KEYS[3], other)
      local rec = raw and cjson.decode(raw)
      free = not rec or rec.st ~= 'held' or rec.e <= now
      if rec and rec.st == 'held' and rec.e <= now then end_hold(other, rec, 'expired', now) end
      ended[other] = free
    end
    if not free then taken[#taken + 1] = seats[i] end
  end
end
if #unknown > 0 then
  local err = {'INVALID_ARGUMENT', 'unknown seats'}
  for _, seat in ipairs(unknown) do err[#err + 1] = seat end
  return err
end
if #taken > 0 then
  local err = {'SEATS_UNAVAILABLE', #taken .. ' of the seats are held or booked'}
  for _, seat in ipairs(taken) do err[#err + 1] = seat end
  return err
end

local expires_at = now + ttl
local marker = 'H:' .. hold_id
local args = {}
for _, seat in ipairs(seats) do
  args[#args + 1] = seat
  args[#args + 1] = marker
end
redis.call('HSET', KEYS[2], unpack(args))
redis.call('HSET', KEYS[3], hold_id,
  cjson.encode({h = holder_id, s = seats, e = expires_at, c = now, st = 'held'}))
redis.call('ZADD', KEYS[4], expires_at, hold_id)
live_ids[#live_ids + 1] = hold_id
redis.call('HSET', KEYS[5], holder_id, table.concat(live_ids, ' '))
append_change('held', 'HELD', hold_id, holder_id, seats, now)
if request_id ~= '' then
  redis.call('SET', KEYS[8], cjson.encode({hold_id, expires_at, seats}), 'EX', 86400)
end
return {'OK', hold_id, expires_at}
