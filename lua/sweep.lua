--[[
  sweep: ends holds past their deadline as expired (recorded in the change log, so watchers
  hear of it even when nobody touches those seats) and purges tombstones past their retention,
  oldest first, in a bounded batch. The service calls it periodically for every event, again
  while more are due. (The best-available index needs no upkeep: every change keeps it exact.)

  Input:
    KEYS[1..12] the event's keys (as in hold.lua)
    ARGV[1] batch size: most holds handled in one call
    ARGV[2] most seats the holds expired in one call free, about (the call stops at the first
            hold that reaches it): bounds the call's work whatever the holds' sizes

  Output:
    {expired, purged, more_due}: more_due is 1 when the call stopped at a bound and more holds
    may be due; the service calls again.
    {"EVENT_NOT_FOUND", message}
  Cost: O(batch size + seats freed, about ARGV[2] + the seats of one hold).
]]
-- @include clock
-- @include event
-- @include sweep_due

if not read_event() then return EVENT_NOT_FOUND end
return sweep_due(now_ms(), tonumber(ARGV[1]), tonumber(ARGV[2]))
