--[[
  hold: holds seats for one holder, all of them or none: seats named by id, seats picked by the
  engine (best available), or places in a general-admission area.

  Input:
    Every record below is described in lua/RECORDS.md.
    KEYS[1] meta       event settings and the change-log version (hash)
    KEYS[2] seats      seat id -> "A" | "H:<hold id>" | "B:<booking id>" (hash)
    KEYS[3] holds      hold id -> hold record, live or tombstone (hash)
    KEYS[4] deadlines  hold id by expiry / tombstone purge time (sorted set)
    KEYS[5] holders    holder id -> space-separated live hold ids (hash)
    KEYS[6] changes    change log (stream, ids "0-<version>")
    KEYS[7] outbox     unused here; declared so every mutating script takes the same keys
    KEYS[8] seat_info, KEYS[9] rows, KEYS[10] row_seats, KEYS[11] free, KEYS[12] seat_spots:
            the best-available index and what it is built from (includes/free_index.lua)
    KEYS[13] request   retry record for (holder, request id) (string, 24 h TTL); any key of
                       the event when there is no request id (then unused)
    KEYS[14] queue, KEYS[15] admissions: the event's waiting room (includes/admission.lua)

    ARGV[1] hold id: 128 random bits made by the service
    ARGV[2] holder id
    ARGV[3] ttl in ms; 0 takes the event's default
    ARGV[4] request id, or "" for none
    ARGV[5] how the seats are chosen, and what follows:
            "seats": ARGV[6..] seat ids
            "best":  ARGV[6] quantity, ARGV[7] category or "*", ARGV[8] section or "*",
                     ARGV[9] wheelchair spaces among them, ARGV[10] "1" to allow a split
            "area":  ARGV[6] general-admission area id, ARGV[7] quantity
    ARGV[#ARGV] (last) the holder's admission: "none", "token" (verified by the service) or
            "exempt" (includes/admission.lua)

  Output:
    {"OK", hold id, expires at (ms since epoch), seat ids (an array), split (1 when best available
    took seats that are not side by side, else 0)}
    A retry with a known request id answers as the first call did (with the hold's current
    expiry) while that hold is live, or confirmed: its seats are then this holder's booking, and
    a confirm retry with that hold id returns it (a "hold, then confirm" sequence is retried
    whole). Once the hold was released or expired: HOLD_NOT_FOUND or HOLD_EXPIRED, never the old
    hold as if alive while its seats may be another buyer's.
    Errors, nothing changed by the request:
    {"EVENT_NOT_FOUND", message}
    {"INVALID_ARGUMENT", message} duplicate seat ids, TTL out of range, unknown category,
                                  section or area, best available on an event whose seats
                                  have no rows (seats without a row are never picked)
    {"INVALID_ARGUMENT", message, seat ids...} unknown seats
    {"LIMIT_EXCEEDED", message, "max_seats_per_hold" | "max_seats_per_holder"}
    {"SEATS_UNAVAILABLE", message, seat ids...} named seats held or booked by others
    {"SEATS_UNAVAILABLE", message} no free block that fits, fewer places left than asked
    {"HOLD_EXPIRED" | "HOLD_NOT_FOUND", message} a retry of a hold that expired or was released
    {"ADMISSION_REQUIRED", message} waiting room on and no admission carried
    {"ADMISSION_INVALID", message} waiting room on and the admission no longer live

  Holds found past their deadline along the way (this holder's, or on the requested seats) are
  ended as expired first, whatever the outcome: that is the lazy half of expiry. Best available
  and areas first end up to DUE_BEFORE_PICK due holds of the event (fewer when they free over
  DUE_SEATS_BEFORE_PICK seats), so that their seats can be picked; the sweeper ends the rest.
  The index is exact (includes/free_index.lua): a pick sees every change made before it.
  Cost: O((requested seats + seats of holds that expire here) x log n + this holder's live
  holds + the changed rows' lengths in C string scans), plus for best available
  O(bucket_cap x log n + the runs read, each O(its length <= a row)), never O(seats of the
  event).
]]
-- @include clock
-- @include event
-- @include changelog
-- @include free_index
-- @include end_hold
-- @include find_hold
-- @include sweep_due
-- @include best_available
-- @include ttl
-- @include admission

local DUE_BEFORE_PICK = 4
local DUE_SEATS_BEFORE_PICK = 4

local hold_id, holder_id, request_id, mode = ARGV[1], ARGV[2], ARGV[4], ARGV[5]
local event = read_event()
if not event then return EVENT_NOT_FOUND end

local now = now_ms()
if request_id ~= '' then
  local earlier = redis.call('GET', KEYS[13])
  if earlier then
    local first = cjson.decode(earlier)
    local rec, err = find_hold(first.hold_id, holder_id, now)
    if not rec then return err end
    if rec.state ~= 'held' and rec.state ~= 'confirmed' then
      return ended_error(first.hold_id, rec)
    end
    return {'OK', first.hold_id, rec.expires_at, first.seat_ids, first.split}
  end
end

local seats = {}
if mode == 'seats' then
  for i = 6, #ARGV - 1 do seats[#seats + 1] = ARGV[i] end
end
local quantity = #seats
if mode ~= 'seats' then quantity = tonumber(mode == 'best' and ARGV[6] or ARGV[7]) end
local max_per_hold = event.max_seats_per_hold
if quantity > max_per_hold then
  return {'LIMIT_EXCEEDED', 'at most ' .. max_per_hold .. ' seats per hold', 'max_seats_per_hold'}
end
local seen = {}
for _, seat in ipairs(seats) do
  if seen[seat] then return {'INVALID_ARGUMENT', 'seat ' .. seat .. ' is listed twice'} end
  seen[seat] = true
end
local ttl, ttl_err = resolve_ttl(ARGV[3], event.default_ttl_ms, event.max_ttl_ms)
if not ttl then return ttl_err end

local admission_refused = admission_error(holder_id, ARGV[#ARGV], now)
if admission_refused then return admission_refused end
if mode ~= 'seats' then sweep_due(now, DUE_BEFORE_PICK, DUE_SEATS_BEFORE_PICK) end

-- This holder's live seats, for the per-holder limit.
local live_ids, held = {}, 0
local list = redis.call('HGET', KEYS[5], holder_id)
if list then
  for id in string.gmatch(list, '%S+') do
    local raw = redis.call('HGET', KEYS[3], id)
    local rec = raw and cjson.decode(raw)
    if rec and rec.state == 'held' then
      if rec.expires_at <= now then
        end_hold(id, rec, 'expired', now)
      else
        live_ids[#live_ids + 1] = id
        held = held + #rec.seat_ids
      end
    end
  end
end
local max_per_holder = event.max_seats_per_holder
if held + quantity > max_per_holder then
  return {'LIMIT_EXCEEDED', 'at most ' .. max_per_holder .. ' seats held at once per holder',
    'max_seats_per_holder'}
end

-- The engine's choice: seats the index lists as free, so the checks below find them available.
local split = 0
if mode == 'area' then
  local area_index = redis.call('HGET', KEYS[1], 'area:' .. ARGV[6])
  if not area_index then
    return {'INVALID_ARGUMENT', 'no general-admission area ' .. ARGV[6]}
  end
  local places, left = pick_places(tonumber(area_index), quantity)
  if not places then
    return {'SEATS_UNAVAILABLE', left .. ' places left in area ' .. ARGV[6]}
  end
  seats = places
elseif mode == 'best' then
  local category, section, wheelchairs = ARGV[7], ARGV[8], tonumber(ARGV[9])
  local known = redis.call('HMGET', KEYS[1], 'category:' .. category, 'section:' .. section,
    'row_count')
  if known[3] == '0' then
    return {'INVALID_ARGUMENT', 'best available picks seats in rows, and the seats of this event '
      .. 'have no rows: hold them by seat id'}
  end
  if category ~= '*' and not known[1] then
    return {'INVALID_ARGUMENT', 'no category ' .. category}
  end
  if section ~= '*' and not known[2] then return {'INVALID_ARGUMENT', 'no section ' .. section} end
  if known[2] == '0' then
    return {'INVALID_ARGUMENT', 'best available picks seats in rows, and the seats of section '
      .. section .. ' have no rows: hold them by seat id'}
  end
  local picked
  picked, split = pick_best(view_scope(category, section), quantity, wheelchairs,
    ARGV[10] == '1')
  if not picked then
    return {'SEATS_UNAVAILABLE', 'no ' .. quantity .. ' adjacent seats free that match'}
  end
  seats = picked
end

local states = redis.call('HMGET', KEYS[2], unpack(seats))
local unknown, taken, ended = {}, {}, {}
for i, state in ipairs(states) do
  if not state then
    unknown[#unknown + 1] = seats[i]
  elseif state ~= 'A' then
    local other = string.sub(state, 3)
    local free = ended[other]
    if free == nil and string.sub(state, 1, 1) == 'H' then
      -- A seat whose hold record is gone or ended (which the scripts never leave behind) counts
      -- as free rather than failing every hold on it.
      local raw = redis.call('HGET', KEYS[3], other)
      local rec = raw and cjson.decode(raw)
      free = not rec or rec.state ~= 'held' or rec.expires_at <= now
      if rec and rec.state == 'held' and rec.expires_at <= now then
        end_hold(other, rec, 'expired', now)
      end
      ended[other] = free
    end
    if not free then taken[#taken + 1] = seats[i] end
  end
end
if #unknown > 0 then
  local err = {'INVALID_ARGUMENT', 'unknown seats'}
  for _, seat in ipairs(unknown) do err[#err + 1] = seat end
  return err
end
if #taken > 0 then
  local err = {'SEATS_UNAVAILABLE', #taken .. ' of the seats are held or booked'}
  for _, seat in ipairs(taken) do err[#err + 1] = seat end
  return err
end

-- Every check passed: the change log first (the one write that can fail), then the hold.
append_change('held', 'HELD', hold_id, holder_id, seats, now)
local expires_at = now + ttl
set_seats(seats, 'H:' .. hold_id)
reindex(seats, false)
redis.call('HSET', KEYS[3], hold_id,
  cjson.encode({holder_id = holder_id, seat_ids = seats, expires_at = expires_at,
    created_at = now, state = 'held'}))
redis.call('ZADD', KEYS[4], expires_at, hold_id)
live_ids[#live_ids + 1] = hold_id
redis.call('HSET', KEYS[5], holder_id, table.concat(live_ids, ' '))
if request_id ~= '' then
  redis.call('SET', KEYS[13], cjson.encode({hold_id = hold_id, seat_ids = seats, split = split}),
    'EX', 86400)
end
return {'OK', hold_id, expires_at, seats, split}
