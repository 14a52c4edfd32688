--[[
  confirm: books a live hold's seats and, in the same step, appends the booking to the outbox
  that the booking worker syncs to Postgres: a booked seat never exists without its record.
  Idempotent: confirming a confirmed hold again returns the first booking and changes nothing,
  unless that booking was cancelled since.

  Input:
    KEYS[1..12] the event's keys (as in hold.lua)
    KEYS[13] cancelled  booking id -> its cancellation (hash, see cancel_booking.lua)
    ARGV[1] hold id
    ARGV[2] holder id
    ARGV[3] booking id for a new booking (made by the service)
    ARGV[4] payment reference
    ARGV[5] request id, or ""
    ARGV[6] event id, written into the outbox record

  Output:
    {"OK", booking id, confirmed at (ms since epoch), seat ids (an array), payment reference}
    Errors, nothing changed:
    {"EVENT_NOT_FOUND", message}
    {"HOLD_NOT_FOUND", message} unknown, purged or released hold
    {"NOT_HOLDER", message}
    {"HOLD_EXPIRED", message} (a live hold found past its deadline is ended as expired first)
    {"BOOKING_CANCELLED", message} the hold was confirmed, and its booking cancelled since

  Outbox entry fields: kind=confirmed, booking_id, event_id, hold_id, holder_id,
  seat_ids (JSON), payment_ref, request_id, confirmed_at (ms), version (of the change log).
  Cost: O(seats of the hold).
]]
-- @include clock
-- @include event
-- @include changelog
-- @include end_hold
-- @include find_hold

local CONFIRMED_RETENTION_MS = 86400000  -- a confirm retry returns the same booking for a day

local hold_id, holder_id, booking_id = ARGV[1], ARGV[2], ARGV[3]
local payment_ref, request_id, event_id = ARGV[4], ARGV[5], ARGV[6]
if not read_event() then return EVENT_NOT_FOUND end

local now = now_ms()
local rec, err = find_hold(hold_id, holder_id, now)
if not rec then return err end
if rec.state == 'confirmed' then
  if redis.call('HEXISTS', KEYS[13], rec.booking_id) == 1 then
    return {'BOOKING_CANCELLED',
      'booking ' .. rec.booking_id .. ' of hold ' .. hold_id .. ' was cancelled'}
  end
  return {'OK', rec.booking_id, rec.confirmed_at, rec.seat_ids, rec.payment_ref}
end
if rec.state ~= 'held' then return ended_error(hold_id, rec) end

local booked = held_seats(hold_id, rec.seat_ids)
-- The change log first (the one write that can fail), then the outbox and the booking.
local version = append_change('confirmed', 'BOOKED', hold_id, holder_id, booked, now, booking_id)
redis.call('XADD', KEYS[7], '*', 'kind', 'confirmed', 'booking_id', booking_id,
  'event_id', event_id, 'hold_id', hold_id, 'holder_id', holder_id,
  'seat_ids', cjson.encode(booked), 'payment_ref', payment_ref, 'request_id', request_id,
  'confirmed_at', now, 'version', version)
set_seats(booked, 'B:' .. booking_id)
rec.state, rec.booking_id, rec.confirmed_at = 'confirmed', booking_id, now
rec.payment_ref = payment_ref
redis.call('HSET', KEYS[3], hold_id, cjson.encode(rec))
redis.call('ZADD', KEYS[4], now + CONFIRMED_RETENTION_MS, hold_id)
drop_from_holder(holder_id, hold_id)
return {'OK', booking_id, now, rec.seat_ids, payment_ref}
