--[[
  cancel_booking: an admin cancels a booking. Its seats become available again and, in the same
  step, the change log records them (reason "cancelled") and the outbox gets a record for the
  booking worker, which marks the booking cancelled in Postgres. Idempotent: cancelling again
  returns the first cancellation and changes nothing.

  Input:
    KEYS[1..12] the event's keys (as in hold.lua)
    KEYS[13] cancelled  booking id -> its cancellation record (hash, lua/RECORDS.md)
    ARGV[1] booking id
    ARGV[2] reason (free text for the audit trail)
    ARGV[3] event id, written into the outbox record
    ARGV[4..] the seats the service found booked by this booking (a seat that is not
              "B:<booking id>" when the script runs is left alone)

  Output:
    {"OK", seat ids freed (an array), cancelled at (ms since epoch), 1} cancelled now
    {"OK", seat ids (an array), cancelled at, 0} cancelled before
    Errors, nothing changed:
    {"EVENT_NOT_FOUND", message}
    {"BOOKING_NOT_FOUND", message} no seat of the event is booked by this booking

  Outbox entry fields: kind=cancelled, booking_id, event_id, seat_ids (JSON), reason,
  cancelled_at (ms), version (of the change log).
  Cost: O(seats given x log n + the rows' lengths in C string scans): the best-available index
  is updated at once.
]]
-- @include clock
-- @include event
-- @include changelog
-- @include free_index

local booking_id, reason, event_id = ARGV[1], ARGV[2], ARGV[3]
if not read_event() then return EVENT_NOT_FOUND end

local prior = redis.call('HGET', KEYS[13], booking_id)
if prior then
  local rec = cjson.decode(prior)
  return {'OK', rec.seat_ids, rec.cancelled_at, 0}
end

local marker = 'B:' .. booking_id
local freed, args = {}, {}
for i = 4, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == marker then
    freed[#freed + 1] = ARGV[i]
    args[#args + 1] = ARGV[i]
    args[#args + 1] = 'A'
  end
end
if #freed == 0 then
  return {'BOOKING_NOT_FOUND', 'no seat of this event is booked by booking ' .. booking_id}
end

local now = now_ms()
-- The change log first (the one write that can fail), then the outbox and the seats.
local version = append_change('cancelled', 'AVAILABLE', '', '', freed, now, booking_id)
redis.call('XADD', KEYS[7], '*', 'kind', 'cancelled', 'booking_id', booking_id,
  'event_id', event_id, 'seat_ids', cjson.encode(freed), 'reason', reason,
  'cancelled_at', now, 'version', version)
redis.call('HSET', KEYS[2], unpack(args))
reindex(freed, true)
redis.call('HSET', KEYS[13], booking_id, cjson.encode({seat_ids = freed, cancelled_at = now,
  reason = reason}))
return {'OK', freed, now, 1}
