--[[
  sweep: ends holds past their deadline as expired (recorded in the change log, so watchers
  hear of it even when nobody touches those seats) and purges tombstones past their retention,
  oldest first, in a bounded batch. The service calls it periodically for every event.

  Input:
    KEYS[1..11] the event's keys (as in hold.lua)
    ARGV[1] batch size: most holds handled in one call

  Output:
    {expired, purged, more_due}: more_due is 1 when the batch was full and more may be due.
    {"EVENT_NOT_FOUND", message}
  Cost: O(batch size x seats per hold).
]]
-- @include clock
-- @include changelog
-- @include free_index
-- @include end_hold
-- @include sweep_due

local meta = redis.call('HMGET', KEYS[1], 'changelog_max')
if not meta[1] then return {'EVENT_NOT_FOUND', 'no event for these keys'} end
changelog_max = meta[1]
return sweep_due(now_ms(), tonumber(ARGV[1]))
