--[[
  availability_chunk: one bounded chunk of an availability snapshot: some of the event's seats,
  read with HSCAN from a cursor, and the change-log version they are as of. The service reads
  the whole event in such chunks, then brings every seat forward to one version with the change
  log (inventory/snapshots.py), so no single call holds Redis for the whole event.

  Input:
    KEYS[1..12] the event's keys (as in hold.lua); KEYS[1] meta and KEYS[2] seats are read
    ARGV[1] HSCAN cursor, "0" to start
    ARGV[2] HSCAN COUNT: about how many seats to read

  Output:
    {"OK", version, next cursor ("0" when the scan is complete), seat id, state, ...}, state
    "A" | "H:<hold id>" | "B:<booking id>" (general-admission places included). HSCAN returns
    every seat at least once over a whole scan, and may return one twice.
    {"EVENT_NOT_FOUND", message}
  Cost: O(COUNT) (a hash small enough to be stored as a listpack comes whole, at most 128
  entries by Redis's default).
]]

local version = redis.call('HGET', KEYS[1], 'version')
if not version then return {'EVENT_NOT_FOUND', 'no event for these keys'} end
local scanned = redis.call('HSCAN', KEYS[2], ARGV[1], 'COUNT', tonumber(ARGV[2]))
local reply = {'OK', version, scanned[1]}
local flat = scanned[2]
for i = 1, #flat do reply[#reply + 1] = flat[i] end
return reply
