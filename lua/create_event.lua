--[[
  create_event: creates an event's inventory, every seat available. Idempotent: creating the
  same event again with identical input (same fingerprint) changes nothing.

  Input:
    KEYS[1] meta       (hash)
    KEYS[2] seats      (hash)
    KEYS[3] seat_info  seat id -> JSON description (hash)
    ARGV[1] fingerprint: SHA-256 of the canonical request, computed by the service
    ARGV[2] max_seats_per_hold
    ARGV[3] max_seats_per_holder
    ARGV[4] default_ttl_ms
    ARGV[5] max_ttl_ms
    ARGV[6] max_lifetime_ms
    ARGV[7] changelog_max: change-log entries kept (approximately)
    ARGV[8..] seat id, seat description JSON, seat id, seat description JSON, ...

  Output:
    {"OK", 1} created; {"OK", 0} existed with identical input
    {"EVENT_EXISTS", message} existed with other input; nothing changed
  Cost: O(seats in the event), once per event.
]]
-- @include clock

local existing = redis.call('HGET', KEYS[1], 'fingerprint')
if existing then
  if existing == ARGV[1] then return {'OK', 0} end
  return {'EVENT_EXISTS', 'the event exists with other seats or limits'}
end

redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'max_seats_per_hold', ARGV[2],
  'max_seats_per_holder', ARGV[3], 'default_ttl_ms', ARGV[4], 'max_ttl_ms', ARGV[5],
  'max_lifetime_ms', ARGV[6], 'changelog_max', ARGV[7], 'version', 0,
  'seat_count', (#ARGV - 7) / 2, 'created_at_ms', now_ms())

-- Lua's unpack is limited to a few thousand values: write the seats in chunks.
local CHUNK = 1000
local states, infos = {}, {}
for i = 8, #ARGV, 2 do
  states[#states + 1] = ARGV[i]
  states[#states + 1] = 'A'
  infos[#infos + 1] = ARGV[i]
  infos[#infos + 1] = ARGV[i + 1]
  if #states >= 2 * CHUNK or i + 1 >= #ARGV then
    redis.call('HSET', KEYS[2], unpack(states))
    redis.call('HSET', KEYS[3], unpack(infos))
    states, infos = {}, {}
  end
end
return {'OK', 1}
