--[[
  restore_event: after Redis lost an event, books again the seats that Postgres holds booked.
  Run by `lml-worker rebuild` once the event was recreated (every seat available). Each booking's
  seats become "B:<booking id>" and one change-log entry (reason "restored", status BOOKED)
  records them, in this one atomic step. Idempotent: a seat already booked by the same booking
  is left alone and logged again by no one.

  Input:
    KEYS[1..12] the event's keys (as in hold.lua)
    ARGV[1] version floor: the highest change-log version Postgres saw; the change log goes on
            from above it, so versions (and audit rows) never repeat
    ARGV[2..] booking id, seat ids as JSON, booking id, seat ids as JSON, ...

  Output:
    {"OK", seats restored, seats already booked by their booking, conflicts as JSON}
    where conflicts is a list of [seat id, current value] for seats that are held or booked by
    another booking (left as they are), or unknown to the event.
    {"EVENT_NOT_FOUND", message}: nothing changed
  Cost: O(rows of the seats restored).
]]
-- @include clock
-- @include event
-- @include changelog
-- @include free_index

local event = read_event()
if not event then return EVENT_NOT_FOUND end
if event.version < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'version', ARGV[1])
end

local now = now_ms()
local restored, already, conflicts = 0, 0, {}
for i = 2, #ARGV, 2 do
  local booking_id = ARGV[i]
  local marker = 'B:' .. booking_id
  local changed = {}
  for _, seat in ipairs(cjson.decode(ARGV[i + 1])) do
    local current = redis.call('HGET', KEYS[2], seat)
    if current == 'A' then
      redis.call('HSET', KEYS[2], seat, marker)
      changed[#changed + 1] = seat
    elseif current == marker then
      already = already + 1
    else
      conflicts[#conflicts + 1] = {seat, current or ''}
    end
  end
  if #changed > 0 then
    restored = restored + #changed
    reindex(changed, false)
    append_change('restored', 'BOOKED', '', '', changed, now, booking_id)
  end
end
local encoded = '[]'
if #conflicts > 0 then encoded = cjson.encode(conflicts) end
return {'OK', restored, already, encoded}
