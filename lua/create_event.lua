--[[
  create_event: opens the build of an event's inventory, or finds it built. The event stays
  invisible (no meta) while build_seats.lua and build_rows.lua fill it in bounded chunks and
  until build_commit.lua makes it visible (includes/building.lua). Idempotent: an event that
  exists with identical input (same fingerprint) is left alone; a build of identical input left
  by a caller that died is taken up where it stopped; a build of other input left behind is
  dropped and started again. Versions go on from the change log's last id when the event's
  change log outlived its other keys, so that no version is issued twice.

  Input:
    KEYS[1] building: the event's settings while it is built (includes/building.lua)
    KEYS[2..12] the event's other keys (as in hold.lua)
    KEYS[13] meta
    ARGV[1] fingerprint: SHA-256 of the canonical request, computed by the service
    ARGV[2] staging TTL (ms): how long a build outlives its last chunk
    ARGV[3] max_seats_per_hold
    ARGV[4] max_seats_per_holder
    ARGV[5] default_ttl_ms
    ARGV[6] max_ttl_ms
    ARGV[7] max_lifetime_ms
    ARGV[8] changelog_max: change-log entries kept for watchers (approximately; entries a
            consumer group has not read are kept longer: includes/changelog.lua)
    ARGV[9] the event's shape as JSON: {"seat_count": seats without places, "entries": seats
            and places, "rows": row count, "bucket_cap": see free_index.lua,
            "areas": a list of [area id, capacity, category or ""], "categories": [...],
            "sections": [sections with rows], "row_categories": [categories of the seats
            in rows, "" for none], "rowless_sections": [sections whose seats have no row]}

  Output:
    {"OK", 0} the event exists with identical input: nothing to do
    {"OK", 1, seats and places written, rows written}: the build to go on with, from there
    {"EVENT_EXISTS", message} the event exists with other input; nothing changed
  Cost: O(areas, categories and sections), and O(1) in seats: a build dropped is unlinked (freed
  in the background).
]]
-- @include clock
-- @include changelog
-- @include building
-- @include event

local existing = redis.call('HGET', KEYS[13], 'fingerprint')
if existing then
  if existing == ARGV[1] then return {'OK', 0} end
  return {'EVENT_EXISTS', 'the event exists with other seats or limits'}
end

local ttl_ms = ARGV[2]
local progress = redis.call('HMGET', KEYS[1], 'fingerprint', 'built_entries', 'built_rows')
if progress[1] == ARGV[1] then
  keep_staged(ttl_ms)
  return {'OK', 1, tonumber(progress[2]), tonumber(progress[3])}
end

-- No build, or one of other input: start afresh, without what any earlier build left.
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12])
local shape = cjson.decode(ARGV[9])
-- The fields every command reads (read_event) come first: while the hash is small Redis keeps
-- it as a list that a lookup walks from its head, and these are looked up on every call. The
-- settings field takes its place here and its value at the end.
redis.call('HSET', KEYS[1], 'version', last_logged_version(), 'settings', '',
  'changelog_max', ARGV[8], 'changelog_acked', 0, 'changelog_retention', CHANGELOG_RETENTION,
  'fingerprint', ARGV[1], 'max_seats_per_hold', ARGV[3], 'max_seats_per_holder', ARGV[4],
  'default_ttl_ms', ARGV[5], 'max_ttl_ms', ARGV[6], 'max_lifetime_ms', ARGV[7],
  'seat_count', shape.seat_count, 'row_count', shape.rows, 'created_at_ms', now_ms(),
  'bucket_cap', shape.bucket_cap, 'areas', cjson.encode(shape.areas),
  'entries', shape.entries, 'built_entries', 0, 'built_rows', 0)
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
-- One category or section among the seats in rows: the index lists no views by it
-- (includes/free_index.lua). Set before build_rows indexes any row; build_commit carries them
-- into meta with the rest of the building hash.
if #shape.row_categories == 1 then
  redis.call('HSET', KEYS[1], 'index_category', shape.row_categories[1])
end
if #shape.sections == 1 then redis.call('HSET', KEYS[1], 'index_section', shape.sections[1]) end
redis.call('HSET', KEYS[1], 'settings', pack_settings(KEYS[1]))
keep_staged(ttl_ms)
return {'OK', 1, 0, 0}
