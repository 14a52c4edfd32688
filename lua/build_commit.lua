--[[
  build_commit: makes a built event visible, in one step: its building hash becomes its meta,
  and every key of the build loses its TTL. Before this call no command sees the event; after
  it, every command sees all of it.

  Input:
    KEYS[1..13] as in create_event.lua (KEYS[1] building, KEYS[13] meta)
    ARGV[1] fingerprint of the create request

  Output:
    {"OK", 1} the event is visible
    {"EVENT_NOT_FOUND", message} no build of this event under way (expired, or finished by an
      identical create): create again
    {"EVENT_EXISTS", message} another create, with other input, took the build over
    {"INVALID_ARGUMENT", message} seats, places or rows not all written yet
  Cost: O(1).
]]
-- @include building

local refused = check_build(ARGV[1])
if refused then return refused end
local progress = redis.call('HMGET', KEYS[1], 'built_entries', 'entries', 'built_rows',
  'row_count')
if tonumber(progress[1]) ~= tonumber(progress[2])
    or tonumber(progress[3]) ~= tonumber(progress[4]) then
  return {'INVALID_ARGUMENT', 'the build is not complete'}
end

redis.call('HDEL', KEYS[1], 'built_entries', 'entries', 'built_rows')
redis.call('RENAME', KEYS[1], KEYS[13])
redis.call('PERSIST', KEYS[13])
for _, k in ipairs(STAGED) do redis.call('PERSIST', KEYS[k]) end
return {'OK', 1}
