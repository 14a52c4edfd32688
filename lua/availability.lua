--[[
  availability: a snapshot of every seat's state, consistent with one change-log version.
  Holds already past their deadline are ended as expired first (and logged), so the snapshot
  never shows a seat as held by a hold that has run out, and a watcher that follows the change
  log from the returned version misses nothing and sees nothing twice.

  Input:
    KEYS[1..7] meta, seats, holds, deadlines, holders, changes, outbox (as in hold.lua)

  Output:
    {"OK", version, seat id, state, seat id, state, ...}, state "A" | "H:<hold id>" | "B:<booking id>"
    {"EVENT_NOT_FOUND", message}
  Cost: O(seats in the event): this is the one whole-event read, for seat maps.
]]
-- @include clock
-- @include changelog
-- @include end_hold
-- @include sweep_due

local meta = redis.call('HMGET', KEYS[1], 'changelog_max')
if not meta[1] then return {'EVENT_NOT_FOUND', 'no event for these keys'} end
changelog_max = meta[1]

local now = now_ms()
while sweep_due(now, 1000)[3] == 1 do end
local reply = {'OK', redis.call('HGET', KEYS[1], 'version')}
local flat = redis.call('HGETALL', KEYS[2])
for i = 1, #flat do reply[#reply + 1] = flat[i] end
return reply
