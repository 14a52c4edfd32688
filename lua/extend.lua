--[[
  extend: moves a live hold's expiry to now + ttl (never earlier than it was), within the
  hold's lifetime limit counted from its creation.

  Input:
    KEYS[1..12] the event's keys (as in hold.lua)
    ARGV[1] hold id
    ARGV[2] holder id
    ARGV[3] ttl in ms; 0 takes the event's default

  Output:
    {"OK", expires at (ms since epoch), seat ids (an array)}
    Errors, nothing changed:
    {"EVENT_NOT_FOUND", message}
    {"HOLD_NOT_FOUND", message} unknown, purged or released hold
    {"NOT_HOLDER", message}
    {"HOLD_EXPIRED", message} (a live hold found past its deadline is ended as expired first)
    {"HOLD_CONFIRMED", message}
    {"INVALID_ARGUMENT", message} TTL out of range
    {"LIMIT_EXCEEDED", message, "max_hold_lifetime"}
  Cost: O(seats of the hold).
]]
-- @include clock
-- @include event
-- @include changelog
-- @include find_hold
-- @include ttl

local hold_id, holder_id = ARGV[1], ARGV[2]
local event = read_event()
if not event then return EVENT_NOT_FOUND end

local ttl, ttl_err = resolve_ttl(ARGV[3], event.default_ttl_ms, event.max_ttl_ms)
if not ttl then return ttl_err end

local now = now_ms()
local rec, err = find_hold(hold_id, holder_id, now)
if not rec then return err end
if rec.state ~= 'held' then return ended_error(hold_id, rec) end

local expires_at = math.max(rec.expires_at, now + ttl)
local lifetime = event.max_lifetime_ms
if expires_at > rec.created_at + lifetime then
  return {'LIMIT_EXCEEDED', 'a hold lives at most ' .. lifetime .. ' ms from its creation',
    'max_hold_lifetime'}
end
append_change('extended', 'HELD', hold_id, holder_id, rec.seat_ids, now)
rec.expires_at = expires_at
redis.call('HSET', KEYS[3], hold_id, cjson.encode(rec))
redis.call('ZADD', KEYS[4], expires_at, hold_id)
return {'OK', expires_at, rec.seat_ids}
