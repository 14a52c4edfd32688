--[[
  create_event: creates an event's inventory, every seat and place available, and its
  best-available index. Idempotent: creating the same event again with identical input (same
  fingerprint) changes nothing. Versions go on from the change log's last id when the event's
  change log outlived its other keys, so that no version is issued twice.

  Input:
    KEYS[1..12] the event's keys (as in hold.lua)
    ARGV[1] fingerprint: SHA-256 of the canonical request, computed by the service
    ARGV[2] max_seats_per_hold
    ARGV[3] max_seats_per_holder
    ARGV[4] default_ttl_ms
    ARGV[5] max_ttl_ms
    ARGV[6] max_lifetime_ms
    ARGV[7] changelog_max: change-log entries kept for watchers (approximately; entries a
            consumer group has not read are kept longer: includes/changelog.lua)
    ARGV[8] the event's shape as JSON: {"seat_count": seats without places, "entries": seats
            and places (E), "rows": row count (R), "bucket_cap": see free_index.lua,
            "areas": a list of [area id, capacity, category or ""], "categories": [...],
            "sections": [sections with rows], "rowless_sections": [sections whose seats
            have no row]}
    ARGV[9 .. 8 + 2E] seat id, its description (lua/RECORDS.md), ...
    ARGV[9 + 2E ..] each row's JSON, rows numbered from 1 in this order (lua/RECORDS.md)

  Output:
    {"OK", 1} created; {"OK", 0} existed with identical input
    {"EVENT_EXISTS", message} existed with other input; nothing changed
  Cost: O(seats and places in the event), once per event.
]]
-- @include clock
-- @include changelog
-- @include free_index

local existing = redis.call('HGET', KEYS[1], 'fingerprint')
if existing then
  if existing == ARGV[1] then return {'OK', 0} end
  return {'EVENT_EXISTS', 'the event exists with other seats or limits'}
end

local shape = cjson.decode(ARGV[8])
redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'max_seats_per_hold', ARGV[2],
  'max_seats_per_holder', ARGV[3], 'default_ttl_ms', ARGV[4], 'max_ttl_ms', ARGV[5],
  'max_lifetime_ms', ARGV[6], 'changelog_max', ARGV[7], 'version', last_logged_version(),
  'seat_count', shape.seat_count, 'row_count', shape.rows, 'created_at_ms', now_ms(),
  'bucket_cap', shape.bucket_cap,
  'areas', cjson.encode(shape.areas))
-- Names best-available and general-admission requests may use, checked in O(1).
for index, area in ipairs(shape.areas) do
  redis.call('HSET', KEYS[1], 'area:' .. area[1], index)
end
for _, category in ipairs(shape.categories) do
  redis.call('HSET', KEYS[1], 'category:' .. category, 1)
end
for _, section in ipairs(shape.sections) do
  redis.call('HSET', KEYS[1], 'section:' .. section, 1)
end
for _, section in ipairs(shape.rowless_sections) do
  redis.call('HSET', KEYS[1], 'section:' .. section, 0)
end

-- Lua's unpack is limited to a few thousand values: write in chunks.
local CHUNK = 1000
local function write_chunks(command, key, count, pair_of)
  local args = {}
  for i = 1, count do
    local a, b = pair_of(i)
    args[#args + 1] = a
    args[#args + 1] = b
    if #args >= 2 * CHUNK or i == count then
      redis.call(command, key, unpack(args))
      args = {}
    end
  end
end

local entries, rows = shape.entries, shape.rows
local function seat_id(i) return ARGV[7 + 2 * i] end
local function description(i) return ARGV[8 + 2 * i] end
write_chunks('HSET', KEYS[2], entries, function(i) return seat_id(i), 'A' end)
write_chunks('HSET', KEYS[8], entries, function(i) return seat_id(i), description(i) end)
write_chunks('HSET', KEYS[9], rows, function(r) return r, ARGV[8 + 2 * entries + r] end)
for r = 1, rows do reindex_row(r) end
-- Places are free from the start: each goes into the index under its area.
local places = {}
for i = 1, entries do
  local area = cjson.decode(description(i)).area_no
  if area then places[#places + 1] = place_member(area, seat_id(i)) end
end
write_chunks('ZADD', KEYS[11], #places, function(i) return 0, places[i] end)
return {'OK', 1}
