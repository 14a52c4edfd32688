-- The event's change log, KEYS[6] changes: a stream whose entry ids are "0-<version>", so a
-- reader resumes after version v with XREAD from "0-v". Versions are never reused: KEYS[1]
-- meta "version" is the last one issued, and create_event / restore_event raise it to at least
-- the stream's last id (last_logged_version).
-- Needs KEYS[1] meta and KEYS[6] changes; read_event (event.lua) sets `changelog_max`.
-- Functions a command may leave unused, for luacheck:
-- luacheck: ignore 211/append_change 211/last_logged_version
local changelog_max = 100000

-- Appends one seat state change (fields in lua/RECORDS.md) and returns its version. A change
-- calls it before its own writes: the XADD is the one write that can fail (an id not above the
-- stream's last one), and failing first it leaves nothing of the change behind.
local function append_change(reason, status, hold_id, holder_id, seats, now, booking_id)
  local version = tonumber(redis.call('HGET', KEYS[1], 'version')) + 1
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', changelog_max, '0-' .. version,
    'reason', reason, 'status', status, 'hold_id', hold_id, 'holder_id', holder_id,
    'seat_ids', cjson.encode(seats), 'changed_at', now, 'booking_id', booking_id or '')
  redis.call('HSET', KEYS[1], 'version', version)
  return version
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
