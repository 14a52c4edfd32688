-- Ends a live hold as 'expired' or 'released': frees the seats it still holds, keeps its record
-- as a tombstone (so late calls get HOLD_EXPIRED rather than HOLD_NOT_FOUND) until the sweeper
-- purges it, drops it from its holder's list and logs the change.
-- Needs KEYS[2] seats, KEYS[3] holds, KEYS[4] deadlines, KEYS[5] holders.
-- @include changelog
-- @include free_index

local TOMBSTONE_MS = 3600000        -- ended holds answer HOLD_EXPIRED / released for an hour

local function drop_from_holder(holder_id, hold_id)
  local list = redis.call('HGET', KEYS[5], holder_id)
  if not list then return end
  local kept = {}
  for id in string.gmatch(list, '%S+') do
    if id ~= hold_id then kept[#kept + 1] = id end
  end
  if #kept == 0 then
    redis.call('HDEL', KEYS[5], holder_id)
  else
    redis.call('HSET', KEYS[5], holder_id, table.concat(kept, ' '))
  end
end

-- The seats of `seats` that hold_id still holds.
local function held_seats(hold_id, seats)
  local current = redis.call('HMGET', KEYS[2], unpack(seats))
  local marker = 'H:' .. hold_id
  local held = {}
  for i, seat in ipairs(seats) do
    if current[i] == marker then held[#held + 1] = seat end
  end
  return held
end

local function set_seats(seats, value)
  if #seats == 0 then return end
  local args = {}
  for _, seat in ipairs(seats) do
    args[#args + 1] = seat
    args[#args + 1] = value
  end
  redis.call('HSET', KEYS[2], unpack(args))
end

local function end_hold(hold_id, rec, state, now)
  local freed = held_seats(hold_id, rec.seat_ids)
  local version = append_change(state, 'AVAILABLE', hold_id, rec.holder_id, freed, now)
  set_seats(freed, 'A')
  reindex(freed, true)
  rec.state = state
  rec.ended_at = now
  redis.call('HSET', KEYS[3], hold_id, cjson.encode(rec))
  redis.call('ZADD', KEYS[4], now + TOMBSTONE_MS, hold_id)
  drop_from_holder(rec.holder_id, hold_id)
  return version
end
