--[[
  restore_event: after Redis lost an event, books again the seats that Postgres holds booked,
  except those of bookings cancelled in Redis: a cancellation reaches Postgres through the
  outbox, after it happened, so Postgres may still hold a cancelled booking active.
  Run by `lml-worker rebuild` in chunks of whole bookings: into the event while it is rebuilt
  (KEYS[1] its building hash, includes/building.lua: no one sees it before the build commits),
  or into the event itself when it was still in Redis. Each booking's seats become
  "B:<booking id>" and one change-log entry (reason "restored", status BOOKED) records them, in
  one atomic step. Idempotent: a seat already booked by the same booking is left alone and
  logged again by no one.

  Input:
    KEYS[1] the event's settings: its meta, or its building hash while it is built
    KEYS[2..12] the event's other keys (as in hold.lua)
    KEYS[13] cancelled  booking id -> its cancellation (hash, see cancel_booking.lua)
    ARGV[1] fingerprint of the event's create request ("": any)
    ARGV[2] staging TTL (ms) of a build, "0" for an event already visible
    ARGV[3] version floor: the highest change-log version Postgres saw
    ARGV[4..] booking id, seat ids as JSON, booking id, seat ids as JSON, ...

  Versions are never reused. When the event's version is below the floor or still 0 (the event
  was just recreated: Redis lost it), the change log goes on from the floor, or the stream's
  last id when that is higher, plus VERSION_MARGIN: watchers may have seen versions that
  Postgres had not yet recorded, and they must meet a gap (and snapshot again), never an old
  version number with new content. Only the first chunk raises it: the others find it above.

  Output:
    {"OK", seats restored, seats already booked by their booking, conflicts as JSON,
     seats left available because their booking was cancelled}
    where conflicts is a list of [seat id, current value] for seats that are held or booked by
    another booking (left as they are), or unknown to the event.
    {"EVENT_NOT_FOUND", message}: no such event (or build: it expired, or an identical create
      finished it); nothing changed
    {"EVENT_EXISTS", message}: the event (or build) has other input; nothing changed
  Cost: O(seats of the chunk's bookings x log n).
]]
-- @include clock
-- @include event
-- @include changelog
-- @include free_index
-- @include building

-- More changes than an event makes between the booking worker's last sync and a loss.
local VERSION_MARGIN = 1000000000

local event = read_event()
if not event then return EVENT_NOT_FOUND end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'fingerprint') ~= ARGV[1] then
  return {'EVENT_EXISTS', 'the event exists with other seats or limits'}
end
local floor = tonumber(ARGV[3])
if event.version < floor or event.version == 0 then
  local base = math.max(floor, last_logged_version(), event.version)
  raise_version(base + VERSION_MARGIN)
end

local now = now_ms()
local restored, already, cancelled, conflicts = 0, 0, 0, {}
for i = 4, #ARGV, 2 do
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
-- A build's keys this chunk created (the index's) expire with the rest of it.
if tonumber(ARGV[2]) > 0 then keep_staged(ARGV[2]) end
local encoded = '[]'
if #conflicts > 0 then encoded = cjson.encode(conflicts) end
return {'OK', restored, already, encoded, cancelled}
