-- The best-available index, KEYS[11] free: a sorted set read by lexical range (every score 0).
-- A free run is a maximal stretch of consecutive available seats of one row with one category
-- and one class (S standard seats; A accessible: wheelchair spaces and companion seats). Each
-- run is listed in four views, by its category or any (*) and by its section or any (*),
-- ordered by length bucket, then best rank:
--   <class>|<category>|<section>|<bucket>|<best rank, 7 digits>|<row>|<start>|<length>
-- The bucket is the run's length, capped at `bucket_cap` (meta field): best available for N
-- seats reads the head of a few buckets, never the whole event. A change rewrites only the
-- members of the runs it changed, since every index write costs on the hot path.
-- A free general-admission place is listed once: G|<area index, 6 digits>|<place id>.
-- KEYS[10] row_runs keeps each row's members, so that a change of the row replaces them.
-- Needs KEYS[1] meta, KEYS[2] seats, KEYS[8] seat_info, KEYS[9] rows, KEYS[10] row_runs.
local bucket_cap

local function seat_class(kind)
  if kind == 'S' then return 'S' end
  return 'A'
end

local function run_members(row_no, row, states)
  if not bucket_cap then bucket_cap = tonumber(redis.call('HGET', KEYS[1], 'bucket_cap')) end
  local members, n, i = {}, #row.s, 1
  while i <= n do
    if states[i] == 'A' then
      local class, category = seat_class(row.k[i]), row.c[i]
      local j, best = i, row.r[i]
      while j < n and states[j + 1] == 'A' and seat_class(row.k[j + 1]) == class
          and row.c[j + 1] == category do
        j = j + 1
        if row.r[j] < best then best = row.r[j] end
      end
      local length = j - i + 1
      local tail = string.format('%07d|%d|%d|%d', best, row_no, i, length)
      local bucket = string.format('%04d', math.min(length, bucket_cap))
      for _, c in ipairs({category, '*'}) do
        for _, x in ipairs({row.x, '*'}) do
          members[#members + 1] = class .. '|' .. c .. '|' .. x .. '|' .. bucket .. '|' .. tail
        end
      end
      i = j + 1
    else
      i = i + 1
    end
  end
  return members
end

local function read_row(row_no)
  return cjson.decode(redis.call('HGET', KEYS[9], row_no))
end

-- Replaces the row's members by those of its current seat states: removes the runs that are
-- gone, adds the new ones, leaves the others alone.
local function reindex_row(row_no)
  local row = read_row(row_no)
  local members = run_members(row_no, row, redis.call('HMGET', KEYS[2], unpack(row.s)))
  local old = redis.call('HGET', KEYS[10], row_no)
  local current, gone, was = {}, {}, {}
  for _, member in ipairs(members) do current[member] = true end
  for _, member in ipairs(old and cjson.decode(old) or {}) do
    was[member] = true
    if not current[member] then gone[#gone + 1] = member end
  end
  local added = {}
  for _, member in ipairs(members) do
    if not was[member] then
      added[#added + 1] = 0
      added[#added + 1] = member
    end
  end
  if #gone > 0 then redis.call('ZREM', KEYS[11], unpack(gone)) end
  if #added > 0 then redis.call('ZADD', KEYS[11], unpack(added)) end
  if #members == 0 then
    redis.call('HDEL', KEYS[10], row_no)
  elseif #gone > 0 or #added > 0 then
    redis.call('HSET', KEYS[10], row_no, cjson.encode(members))
  end
end

local function place_member(area_index, place_id)
  return string.format('G|%06d|', area_index) .. place_id
end

-- Brings the index up to date after `seat_ids` became available (freed = true) or held or
-- booked (freed = false). Cost: O(the seats' rows) for seats, O(log n) per place.
local function reindex(seat_ids, freed)
  if #seat_ids == 0 then return end
  local infos = redis.call('HMGET', KEYS[8], unpack(seat_ids))
  local rows, places = {}, {}
  for i, raw in ipairs(infos) do
    local info = cjson.decode(raw)
    if info.a then
      if freed then places[#places + 1] = 0 end
      places[#places + 1] = place_member(info.a, seat_ids[i])
    else
      rows[info.r] = true
    end
  end
  if #places > 0 then redis.call(freed and 'ZADD' or 'ZREM', KEYS[11], unpack(places)) end
  for row_no in pairs(rows) do reindex_row(row_no) end
end
