--[[
  build_seats: writes one chunk of a building event's seats and general-admission places, every
  one available, with their descriptions; free places enter the best-available index at once.
  Chunks go in request order; a chunk written again (a retry) writes the same values.

  Input:
    KEYS[1..13] as in create_event.lua (KEYS[1] building, KEYS[13] meta)
    ARGV[1] fingerprint of the create request
    ARGV[2] staging TTL (ms)
    ARGV[3] the number of the chunk's first entry (seats and places count from 1)
    ARGV[4 ..] per entry: seat id, its description (lua/RECORDS.md), its area's number (0 for
               a seat)

  Output:
    {"OK", seats and places written so far}
    {"EVENT_NOT_FOUND", message} no build of this event under way (expired, or finished by an
      identical create): create again
    {"EVENT_EXISTS", message} another create, with other input, took the build over
    {"INVALID_ARGUMENT", message} the chunk does not follow the ones written
  Cost: O(entries in the chunk).
]]
-- @include building
-- @include free_index

local refused = check_build(ARGV[1])
if refused then return refused end
local first = tonumber(ARGV[3])
local count = (#ARGV - 3) / 3
local built = tonumber(redis.call('HGET', KEYS[1], 'built_entries'))
if first > built + 1 then
  return {'INVALID_ARGUMENT', 'entries ' .. built + 1 .. ' to ' .. first - 1 .. ' not written yet'}
end

local states, infos, places = {}, {}, {}
for i = 4, #ARGV, 3 do
  local seat_id, area_no = ARGV[i], tonumber(ARGV[i + 2])
  states[#states + 1] = seat_id
  states[#states + 1] = 'A'
  infos[#infos + 1] = seat_id
  infos[#infos + 1] = ARGV[i + 1]
  if area_no > 0 then
    places[#places + 1] = 0
    places[#places + 1] = place_member(area_no, seat_id)
  end
end
if count > 0 then
  redis.call('HSET', KEYS[2], unpack(states))
  redis.call('HSET', KEYS[8], unpack(infos))
end
if #places > 0 then redis.call('ZADD', KEYS[11], unpack(places)) end
built = math.max(built, first + count - 1)
redis.call('HSET', KEYS[1], 'built_entries', built)
keep_staged(ARGV[2])
return {'OK', built}
