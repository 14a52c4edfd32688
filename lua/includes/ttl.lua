-- The TTL a hold or extend asked for, in ms: 0 means the event's default; above the event's
-- maximum is refused. Returns the ttl, or nil and the error reply.
local function resolve_ttl(requested, default_ttl, max_ttl)
  local ttl = tonumber(requested)
  if ttl == 0 then ttl = default_ttl end
  if ttl < 1 or ttl > max_ttl then
    return nil, {'INVALID_ARGUMENT', 'ttl must be between 1 ms and ' .. max_ttl .. ' ms'}
  end
  return ttl
end
