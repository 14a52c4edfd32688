--[[
  build_rows: writes one chunk of a building event's rows and indexes their free runs for best
  available (free_index.lua), from the seats' states as they are: seats booked again by
  restore_event.lua before are left out of the index. Runs once every seat and place is
  written; chunks go in row order; a chunk written again (a retry) changes nothing.

  Input:
    KEYS[1..13] as in create_event.lua (KEYS[1] building, KEYS[13] meta)
    ARGV[1] fingerprint of the create request
    ARGV[2] staging TTL (ms)
    ARGV[3] the number of the chunk's first row (rows count from 1)
    ARGV[4 ..] each row's JSON (lua/RECORDS.md), in row order

  Output:
    {"OK", rows written so far}
    {"EVENT_NOT_FOUND", message} no build of this event under way (expired, or finished by an
      identical create): create again
    {"EVENT_EXISTS", message} another create, with other input, took the build over
    {"INVALID_ARGUMENT", message} seats not all written yet, or the chunk does not follow the
      rows written
  Cost: O(seats of the chunk's rows).
]]
-- @include building
-- @include free_index

local refused = check_build(ARGV[1])
if refused then return refused end
local first, last = tonumber(ARGV[3]), tonumber(ARGV[3]) + #ARGV - 4
local progress = redis.call('HMGET', KEYS[1], 'built_entries', 'entries', 'built_rows')
if tonumber(progress[1]) ~= tonumber(progress[2]) then
  return {'INVALID_ARGUMENT', 'rows before every seat and place is written'}
end
local built = tonumber(progress[3])
if first > built + 1 then
  return {'INVALID_ARGUMENT', 'rows ' .. built + 1 .. ' to ' .. first - 1 .. ' not written yet'}
end

local rows = {}
for r = first, last do
  rows[#rows + 1] = r
  rows[#rows + 1] = ARGV[4 + r - first]
end
if #rows > 0 then redis.call('HSET', KEYS[9], unpack(rows)) end
for r = first, last do reindex_row(r) end
built = math.max(built, last)
redis.call('HSET', KEYS[1], 'built_rows', built)
keep_staged(ARGV[2])
return {'OK', built}
