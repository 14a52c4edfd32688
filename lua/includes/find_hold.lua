-- Looks up a hold for one of its holder's calls. Returns the decoded record, or nil and the
-- error reply: HOLD_NOT_FOUND, NOT_HOLDER; for a live hold past its deadline it ends the hold
-- as expired first and answers HOLD_EXPIRED. Ended holds are returned as they are: each caller
-- decides what a released, expired or confirmed hold means for it.
-- Needs KEYS[3] holds.
-- @include end_hold

local function find_hold(hold_id, holder_id, now)
  local raw = redis.call('HGET', KEYS[3], hold_id)
  if not raw then return nil, {'HOLD_NOT_FOUND', 'no hold ' .. hold_id} end
  local rec = cjson.decode(raw)
  if rec.holder_id ~= holder_id then
    return nil, {'NOT_HOLDER', 'hold ' .. hold_id .. ' belongs to another holder'}
  end
  if rec.state == 'held' and rec.expires_at <= now then
    end_hold(hold_id, rec, 'expired', now)
  end
  return rec
end

-- The error for a hold that is no longer live, by what ended it.
local function ended_error(hold_id, rec)
  if rec.state == 'expired' then return {'HOLD_EXPIRED', 'hold ' .. hold_id .. ' expired'} end
  if rec.state == 'confirmed' then
    return {'HOLD_CONFIRMED', 'hold ' .. hold_id .. ' is already confirmed'}
  end
  return {'HOLD_NOT_FOUND', 'hold ' .. hold_id .. ' was released'}
end
