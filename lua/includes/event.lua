-- The event's settings, read once at the start of every command but create_event, before any
-- write: `read_event()` returns them (numbers as numbers), or nil when the event does not exist,
-- and the caller returns EVENT_NOT_FOUND. It also gives the change log its cap and the
-- best-available index its bucket cap and views.
-- Needs KEYS[1] meta.
-- @include changelog
-- @include free_index
-- Functions a command may leave unused, for luacheck:
-- luacheck: ignore 211/read_event 211/EVENT_NOT_FOUND

local EVENT_NOT_FOUND = {'EVENT_NOT_FOUND', 'no event for these keys'}

-- The settings every command reads, packed in one meta field (`settings`, written by
-- create_event.lua): one field costs Redis far less to read than a field each. A name that is
-- absent is "-", a present one "=" and its value (names never hold "|"). The change log's fields
-- (changelog_max, and those the booking worker writes) are read on their own: they may change
-- after the event is created.
local SETTINGS = {'max_seats_per_hold', 'max_seats_per_holder', 'default_ttl_ms', 'max_ttl_ms',
  'max_lifetime_ms', 'bucket_cap', 'category:', 'index_category', 'index_section'}
local SETTINGS_PATTERN = '^(%d+)|(%d+)|(%d+)|(%d+)|(%d+)|(%d+)|([01])|([-=])([^|]*)|([-=])(.*)$'

local function named(value)
  if value then return '=' .. value end
  return '-'
end

-- The `settings` field of the event whose fields are in hash `key`.
local function pack_settings(key)
  local v = redis.call('HMGET', key, unpack(SETTINGS))
  return table.concat({v[1], v[2], v[3], v[4], v[5], v[6], v[7] and '1' or '0', named(v[8]),
    named(v[9])}, '|')
end

local function read_event()
  local v = redis.call('HMGET', KEYS[1], 'version', 'settings', 'changelog_max', 'changelog_acked',
    'changelog_retention')
  if not v[1] then return nil end
  -- An event created before the field existed packs it now (read-only: not stored).
  local hold_max, holder_max, default_ttl, max_ttl, lifetime, cap, blank, has_category,
    category, has_section, section = string.match(v[2] or pack_settings(KEYS[1]), SETTINGS_PATTERN)
  bucket_cap, blank_category = tonumber(cap), blank == '1'
  changelog_max, log_version, log_acked = tonumber(v[3]), tonumber(v[1]), tonumber(v[4]) or 0
  log_retention = tonumber(v[5]) or CHANGELOG_RETENTION
  only_category = has_category == '=' and category or nil
  only_section = has_section == '=' and section or nil
  return {
    version = tonumber(v[1]),
    max_seats_per_hold = tonumber(hold_max),
    max_seats_per_holder = tonumber(holder_max),
    default_ttl_ms = tonumber(default_ttl),
    max_ttl_ms = tonumber(max_ttl),
    max_lifetime_ms = tonumber(lifetime),
  }
end
