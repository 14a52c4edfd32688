-- Redis's own clock in milliseconds: every expiry is decided by the server, never by a client.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
