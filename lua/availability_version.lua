--[[
  availability_version: ends holds already past their deadline as expired (logged in the change
  log), a bounded batch per call, and returns the event's version and areas. A snapshot (fresh
  or cached) is brought forward to the version of the call that found nothing more due, so it
  never shows a seat as held by a hold that had run out by then.

  Input:
    KEYS[1..12] the event's keys (as in hold.lua)
    ARGV[1] most holds ended in this call

  Output:
    {"OK", version, more_due (1 when the batch was full and more holds may be due, else 0),
    areas (JSON list of [area id, capacity, category] in the event's order), created at (ms)}
    {"EVENT_NOT_FOUND", message}
  Cost: O(batch x seats per hold).
]]
-- @include clock
-- @include event
-- @include sweep_due

if not read_event() then return EVENT_NOT_FOUND end

local more_due = sweep_due(now_ms(), tonumber(ARGV[1]))[3]
local meta = redis.call('HMGET', KEYS[1], 'version', 'areas', 'created_at_ms')
return {'OK', meta[1], more_due, meta[2], meta[3]}
