-- Expires the live holds whose deadline has passed and purges tombstones past their retention,
-- oldest first, at most `limit` of them. Returns {expired, purged, more_due (0/1)}.
-- Needs KEYS[3] holds, KEYS[4] deadlines.
-- @include end_hold

local function sweep_due(now, limit)
  local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, limit)
  local expired, purged = 0, 0
  for _, hold_id in ipairs(due) do
    local raw = redis.call('HGET', KEYS[3], hold_id)
    local rec = raw and cjson.decode(raw)
    if rec and rec.state == 'held' then
      end_hold(hold_id, rec, 'expired', now)
      expired = expired + 1
    else
      redis.call('HDEL', KEYS[3], hold_id)
      redis.call('ZREM', KEYS[4], hold_id)
      purged = purged + 1
    end
  end
  return {expired, purged, #due == limit and 1 or 0}
end
