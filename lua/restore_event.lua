--[[
  restore_event: after Redis lost an event, books again the seats that Postgres holds booked,
  except those of bookings cancelled in Redis: a cancellation reaches Postgres through the
  outbox, after it happened, so Postgres may still hold a cancelled booking active.
  Run by `lml-worker rebuild` once the event was recreated (every seat available). Each booking's
  seats become "B:<booking id>" and one change-log entry (reason "restored", status BOOKED)
  records them, in this one atomic step. Idempotent: a seat already booked by the same booking
  is left alone and logged again by no one.

  Input:
    KEYS[1..12] the event's keys (as in hold.lua)
    KEYS[13] cancelled  booking id -> its cancellation (hash, see cancel_booking.lua)
    ARGV[1] version floor: the highest change-log version Postgres saw
    ARGV[2..] booking id, seat ids as JSON, booking id, seat ids as JSON, ...

  Versions are never reused. When the event's version is below the floor or still 0 (the event
  was just recreated: Redis lost it), the change log goes on from the floor, or the stream's
  last id when that is higher, plus VERSION_MARGIN: watchers may have seen versions that
  Postgres had not yet recorded, and they must meet a gap (and snapshot again), never an old
  version number with new content.

  Output:
    {"OK", seats restored, seats already booked by their booking, conflicts as JSON,
     seats left available because their booking was cancelled}
    where conflicts is a list of [seat id, current value] for seats that are held or booked by
    another booking (left as they are), or unknown to the event.
    {"EVENT_NOT_FOUND", message}: nothing changed
  Cost: O(seats restored x log n).
]]
-- @include clock
-- @include event
-- @include changelog
-- @include free_index

-- More changes than an event makes between the booking worker's last sync and a loss.
local VERSION_MARGIN = 1000000000

local event = read_event()
if not event then return EVENT_NOT_FOUND end
local floor = tonumber(ARGV[1])
if event.version < floor or event.version == 0 then
  local base = math.max(floor, last_logged_version(), event.version)
  redis.call('HSET', KEYS[1], 'version', base + VERSION_MARGIN)
end

local now = now_ms()
local restored, already, cancelled, conflicts = 0, 0, 0, {}
for i = 2, #ARGV, 2 do
  local booking_id = ARGV[i]
  local marker = 'B:' .. booking_id
  local changed, args = {}, {}
  local seats = cjson.decode(ARGV[i + 1])
  if redis.call('HEXISTS', KEYS[13], booking_id) == 1 then
    cancelled = cancelled + #seats
    seats = {}
  end
  for _, seat in ipairs(seats) do
    local current = redis.call('HGET', KEYS[2], seat)
    if current == 'A' then
      changed[#changed + 1] = seat
      args[#args + 1] = seat
      args[#args + 1] = marker
    elseif current == marker then
      already = already + 1
    else
      conflicts[#conflicts + 1] = {seat, current or ''}
    end
  end
  if #changed > 0 then
    append_change('restored', 'BOOKED', '', '', changed, now, booking_id)
    redis.call('HSET', KEYS[2], unpack(args))
    restored = restored + #changed
    reindex(changed, false)
  end
end
local encoded = '[]'
if #conflicts > 0 then encoded = cjson.encode(conflicts) end
return {'OK', restored, already, encoded, cancelled}
