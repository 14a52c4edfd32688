--[[
  availability_whole, the benchmarks' reference: the whole-event read in one script that
  inventory/snapshots.py replaced. A snapshot of every seat's state, consistent with one
  change-log version.
  Holds already past their deadline are ended as expired first (and logged), so the snapshot
  never shows a seat as held by a hold that has run out, and a watcher that follows the change
  log from the returned version misses nothing and sees nothing twice.

  Input:
    KEYS[1..12] the event's keys (as in hold.lua)

  Output:
    {"OK", version, areas, seat id, state, seat id, state, ...}, state "A" | "H:<hold id>" |
    "B:<booking id>" (general-admission places included); areas: JSON list of
    [area id, capacity, category, places available] in the event's order
    {"EVENT_NOT_FOUND", message}
  Cost: O(seats in the event): this is the one whole-event read, for seat maps.
]]
-- @include clock
-- @include event
-- @include free_index
-- @include sweep_due

if not read_event() then return EVENT_NOT_FOUND end

local now = now_ms()
while sweep_due(now, 1000)[3] == 1 do end
local areas = cjson.decode(redis.call('HGET', KEYS[1], 'areas'))
for index, area in ipairs(areas) do
  local prefix = place_member(index, '')
  area[#area + 1] = redis.call('ZLEXCOUNT', KEYS[11], '[' .. prefix, '(' .. prefix .. '\255')
end
local reply = {'OK', redis.call('HGET', KEYS[1], 'version'), cjson.encode(areas)}
local flat = redis.call('HGETALL', KEYS[2])
for i = 1, #flat do reply[#reply + 1] = flat[i] end
return reply
