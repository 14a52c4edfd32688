--[[
  release: ends a live hold; its seats become available. Idempotent: releasing a released hold
  again returns the same seats and changes nothing.

  Input:
    KEYS[1..12] the event's keys (as in hold.lua)
    ARGV[1] hold id
    ARGV[2] holder id

  Output:
    {"OK", seat ids released (an array)}
    Errors, nothing changed:
    {"EVENT_NOT_FOUND", message}
    {"HOLD_NOT_FOUND", message} unknown or purged hold
    {"NOT_HOLDER", message}
    {"HOLD_EXPIRED", message} (a live hold found past its deadline is ended as expired first)
    {"HOLD_CONFIRMED", message}
  Cost: O(seats of the hold x log n + the rows' lengths in C string scans): the best-available
  index is updated at once.
]]
-- @include clock
-- @include event
-- @include end_hold
-- @include find_hold

local hold_id, holder_id = ARGV[1], ARGV[2]
if not read_event() then return EVENT_NOT_FOUND end

local now = now_ms()
local rec, err = find_hold(hold_id, holder_id, now)
if not rec then return err end
if rec.state == 'held' then
  end_hold(hold_id, rec, 'released', now)
elseif rec.state ~= 'released' then
  return ended_error(hold_id, rec)
end
return {'OK', rec.seat_ids}
