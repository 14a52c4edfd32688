--[[
  sweep: ends holds past their deadline as expired (recorded in the change log, so watchers
  hear of it even when nobody touches those seats) and purges tombstones past their retention,
  oldest first, in a bounded batch, and refreshes rows of the best-available index. The service
  calls it periodically for every event.

  Input:
    KEYS[1..12] the event's keys (as in hold.lua)
    ARGV[1] batch size: most holds handled in one call
    ARGV[2] most rows of the best-available index refreshed in one call (free_index.lua)

  Output:
    {expired, purged, more_due, dirty}: more_due is 1 when the batch was full and more holds may
    be due; dirty is 1 when rows of the index are still to be refreshed. The service calls again
    for more_due, and for dirty a bounded number of times per round: under steady writes rows
    keep turning dirty, and the next round (or a best-available request) refreshes them.
    {"EVENT_NOT_FOUND", message}
  Cost: O(batch size x seats per hold + rows refreshed x row length).
]]
-- @include clock
-- @include event
-- @include free_index
-- @include sweep_due

if not read_event() then return EVENT_NOT_FOUND end
local result = sweep_due(now_ms(), tonumber(ARGV[1]))
result[4] = refresh_rows(tonumber(ARGV[2])) and 1 or 0
return result
