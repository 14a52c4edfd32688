-- Expires the live holds whose deadline has passed and purges tombstones past their retention,
-- oldest first, at most `limit` of them, and stops early once the holds expired have freed
-- `seat_limit` seats or more (nil: no such bound): each call's work stays bounded whatever the
-- size of the holds. Returns {expired, purged, more_due (0/1)}.
-- Needs KEYS[3] holds, KEYS[4] deadlines.
-- @include end_hold

local function sweep_due(now, limit, seat_limit)
  local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, limit)
  local expired, purged, freed = 0, 0, 0
  for i, hold_id in ipairs(due) do
    if seat_limit and freed >= seat_limit then
      return {expired, purged, 1}
    end
    local raw = redis.call('HGET', KEYS[3], hold_id)
    local rec = raw and cjson.decode(raw)
    if rec and rec.state == 'held' then
      end_hold(hold_id, rec, 'expired', now)
      expired = expired + 1
      freed = freed + #rec.seat_ids
    else
      redis.call('HDEL', KEYS[3], hold_id)
      redis.call('ZREM', KEYS[4], hold_id)
      purged = purged + 1
    end
    if i == #due and #due == limit then return {expired, purged, 1} end
  end
  return {expired, purged, 0}
end
