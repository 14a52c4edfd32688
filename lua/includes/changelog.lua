-- The event's change log, KEYS[6] changes: a stream whose entry ids are "0-<version>", so a
-- reader resumes after version v with XREAD from "0-v". Versions are never reused: KEYS[1]
-- meta "version" is the last one issued, and create_event / restore_event raise it to at least
-- the stream's last id (last_logged_version).
-- Needs KEYS[1] meta and KEYS[6] changes; read_event (event.lua) sets `changelog_max` and the
-- log's state, so a command calls it before any append.
-- Functions a command may leave unused, for luacheck:
-- luacheck: ignore 211/append_change 211/last_logged_version 211/raise_version
--
-- Trimming never drops an entry a consumer group has not acknowledged, unless it is beyond the
-- retention, and then it is counted. Meta fields, written by the booking worker:
--   changelog_acked      the version up to which every consumer group has acknowledged
--                        (0 at create_event, and unset on events made before it wrote it:
--                        nothing acknowledged yet)
--   changelog_retention  entries kept at most, read or not (CHANGELOG_RETENTION at create_event;
--                        unset on events made before it wrote it: the same)
--   changelog_lost       (written here) entries trimmed before every group had read them
-- Acknowledged entries older than the last `changelog_max` (what watchers may resume from) go
-- with XADD's approximate trim, at most 10,000 per call by Redis's default LIMIT; unread entries
-- beyond the retention go at most LOST_TRIM_MAX per call, counted against the groups' own
-- positions. Cost per call: O(1) amortized, O(consumer groups) while beyond the retention.
local DEFAULT_CHANGELOG_MAX = 100000
local changelog_max = DEFAULT_CHANGELOG_MAX
-- The log's state, from the meta fields read by read_event (event.lua) at the start of the
-- command: the last version issued, acknowledged by every group, and the retention.
local log_version, log_acked, log_retention
local CHANGELOG_RETENTION = 1000000
local LOST_TRIM_MAX = 100

-- The cap starts at its default and the log's state unknown on every call (the library's locals
-- outlive a call): an append without read_event fails rather than use another event's version.
local function reset_changelog()
  changelog_max = DEFAULT_CHANGELOG_MAX
  log_version, log_acked, log_retention = nil, nil, nil
end

local function version_of(entry_id)
  return tonumber(string.match(entry_id, '%d+$'))
end

-- The version up to which every consumer group has acknowledged, from the groups themselves
-- (the published `changelog_acked` may lag by one worker round). O(groups).
local function acked_by_every_group()
  local acked
  for _, fields in ipairs(redis.call('XINFO', 'GROUPS', KEYS[6])) do
    local group = {}
    for i = 1, #fields, 2 do group[fields[i]] = fields[i + 1] end
    local through = version_of(group['last-delivered-id'])
    if group.pending > 0 then
      through = version_of(redis.call('XPENDING', KEYS[6], group.name)[2]) - 1
    end
    acked = math.min(acked or through, through)
  end
  return acked or 0
end

local function trim_unread(version, retention)
  local first = redis.call('XRANGE', KEYS[6], '-', '+', 'COUNT', 1)[1]
  if not first then return end
  local first_version = version_of(first[1])
  local keep_from = math.min(version - retention + 1, first_version + LOST_TRIM_MAX)
  if keep_from <= first_version then return end
  local lost = keep_from - math.max(first_version, acked_by_every_group() + 1)
  if lost > 0 then redis.call('HINCRBY', KEYS[1], 'changelog_lost', lost) end
  redis.call('XTRIM', KEYS[6], 'MINID', '0-' .. keep_from)
end

-- Appends one seat state change (fields in lua/RECORDS.md) and returns its version. A change
-- calls it before its own writes: the XADD is the one write that can fail (an id not above the
-- stream's last one), and failing first it leaves nothing of the change behind.
local function append_change(reason, status, hold_id, holder_id, seats, now, booking_id)
  local version = log_version + 1
  local keep_from = math.max(math.min(log_acked, version - changelog_max) + 1, 0)
  -- The version as text once: Redis turns a number argument into text at a cost each time.
  local entry_id = '0-' .. version
  redis.call('XADD', KEYS[6], 'MINID', '~', '0-' .. keep_from, entry_id,
    'reason', reason, 'status', status, 'hold_id', hold_id, 'holder_id', holder_id,
    'seat_ids', cjson.encode(seats), 'changed_at', now, 'booking_id', booking_id or '')
  redis.call('HSET', KEYS[1], 'version', string.sub(entry_id, 3))
  log_version = version
  -- After the XADD, so that a failing append leaves nothing behind.
  if version - log_retention > log_acked then trim_unread(version, log_retention) end
  return version
end

-- Raises the last version issued to `version` (never lowered: versions are never reused).
local function raise_version(version)
  redis.call('HSET', KEYS[1], 'version', version)
  log_version = version
end

-- The last version the change log ever took (its last generated id, even when that entry was
-- trimmed since), 0 when there is no log.
local function last_logged_version()
  if redis.call('EXISTS', KEYS[6]) == 0 then return 0 end
  local info = redis.call('XINFO', 'STREAM', KEYS[6])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      return tonumber(string.match(info[i + 1], '%-(%d+)$'))
    end
  end
  return 0
end
