-- The waiting room's check on a hold: when the event has a waiting room on, the holder needs an
-- admission that the service verified (signed for this event and holder, not expired) and that
-- is still live in Redis. Read-only, so it runs before any write of the hold.
-- Needs KEYS[14] queue (hash) and KEYS[15] admissions (sorted set buyer id -> expiry ms).
-- `carried`: "none" (no token), "token" (a token the service verified), "exempt" (a trusted
-- caller skipping the check). Returns nil when the hold may go on, else the error reply.
local function admission_error(holder_id, carried, now)
  if carried == 'exempt' or redis.call('HGET', KEYS[14], 'enabled') ~= '1' then return nil end
  if carried ~= 'token' then
    return {'ADMISSION_REQUIRED', 'the event has a waiting room: join it and hold when admitted'}
  end
  local expires = redis.call('ZSCORE', KEYS[15], holder_id)
  if not expires or tonumber(expires) <= now then
    return {'ADMISSION_INVALID', 'the admission has lapsed'}
  end
  return nil
end
