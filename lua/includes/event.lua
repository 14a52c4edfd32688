-- The event's settings, read once at the start of every command but create_event, before any
-- write: `read_event()` returns them (numbers as numbers), or nil when the event does not exist,
-- and the caller returns EVENT_NOT_FOUND. It also gives the change log its cap and the
-- best-available index its bucket cap and views.
-- Needs KEYS[1] meta.
-- @include changelog
-- @include free_index

local EVENT_NOT_FOUND = {'EVENT_NOT_FOUND', 'no event for these keys'}

local function read_event()
  local v = redis.call('HMGET', KEYS[1], 'version', 'changelog_max', 'bucket_cap',
    'max_seats_per_hold', 'max_seats_per_holder', 'default_ttl_ms', 'max_ttl_ms',
    'max_lifetime_ms', 'category:', 'index_category', 'index_section')
  if not v[1] then return nil end
  changelog_max, bucket_cap, blank_category = tonumber(v[2]), tonumber(v[3]), v[9] ~= false
  only_category, only_section = v[10] or nil, v[11] or nil
  return {
    version = tonumber(v[1]),
    max_seats_per_hold = tonumber(v[4]),
    max_seats_per_holder = tonumber(v[5]),
    default_ttl_ms = tonumber(v[6]),
    max_ttl_ms = tonumber(v[7]),
    max_lifetime_ms = tonumber(v[8]),
  }
end
