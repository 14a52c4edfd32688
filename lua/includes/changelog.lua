-- Appends one seat state change to the event's change log and returns its version.
-- The stream entry id is "0-<version>", so a reader resumes after version v with XREAD from "0-v".
-- Needs KEYS[1] meta and KEYS[6] changes; read_event (event.lua) sets `changelog_max`.
local changelog_max = 100000

local function append_change(reason, status, hold_id, holder_id, seats, now, booking_id)
  local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', changelog_max, '0-' .. version,
    'r', reason, 'st', status, 'h', hold_id, 'by', holder_id,
    's', cjson.encode(seats), 't', now, 'b', booking_id or '')
  return version
end
