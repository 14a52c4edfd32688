-- The best-available index, KEYS[11] free: a sorted set read by lexical range (every score 0).
-- A free run is a maximal stretch of consecutive available seats of one row with one category
-- and one class (S standard seats; A accessible: wheelchair spaces and companion seats). Each
-- run is listed in four views, by its category or any (*) and by its section or any (*),
-- ordered by length bucket, then best rank:
--   <class>|<category>|<section>|<bucket>|<best rank, 7 digits>|<row>|<start>|<length>
-- The bucket is the run's length, capped at `bucket_cap` (meta field): best available for N
-- seats reads the head of a few buckets, never the whole event.
-- Rows are brought up to date lazily: a seat change only marks its row in KEYS[12] dirty_rows,
-- a sorted set by the row's best rank (about 3 us of Redis per seat, where rewriting the row's
-- entries at once cost about 50); best-available requests and the sweeper refresh dirty rows,
-- best rows first, in bounded batches. Until then a row's entries may list seats taken since or
-- miss seats freed since (best available refreshes a dirty row it picked from, and picks again).
-- A free general-admission place is listed once, at once: G|<area index, 6 digits>|<place id>.
-- KEYS[10] row_runs keeps each row's members, so that a refresh replaces only what changed.
-- Needs KEYS[1] meta, KEYS[2] seats, KEYS[8] seat_info, KEYS[9] rows, KEYS[10] row_runs,
-- KEYS[12] dirty_rows.
-- Functions a command may leave unused, for luacheck:
-- luacheck: ignore 211/reindex 211/rows_of 211/refresh_rows
local bucket_cap

local function seat_class(kind)
  if kind == 'S' then return 'S' end
  return 'A'
end

local function run_members(row_no, row, states)
  if not bucket_cap then bucket_cap = tonumber(redis.call('HGET', KEYS[1], 'bucket_cap')) end
  local members, n, i = {}, #row.seat_ids, 1
  while i <= n do
    if states[i] == 'A' then
      local class, category = seat_class(row.kinds[i]), row.categories[i]
      local j, best = i, row.ranks[i]
      while j < n and states[j + 1] == 'A' and seat_class(row.kinds[j + 1]) == class
          and row.categories[j + 1] == category do
        j = j + 1
        if row.ranks[j] < best then best = row.ranks[j] end
      end
      local length = j - i + 1
      local tail = string.format('%07d|%d|%d|%d', best, row_no, i, length)
      local bucket = string.format('%04d', math.min(length, bucket_cap))
      for _, c in ipairs({category, '*'}) do
        for _, x in ipairs({row.section, '*'}) do
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
  local members = run_members(row_no, row, redis.call('HMGET', KEYS[2], unpack(row.seat_ids)))
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

-- The rows of these seats (general-admission places and seats without a row have none).
local function rows_of(seat_ids)
  local rows, seen = {}, {}
  for _, raw in ipairs(redis.call('HMGET', KEYS[8], unpack(seat_ids))) do
    local row_no = cjson.decode(raw).row_no
    if row_no and not seen[row_no] then
      seen[row_no] = true
      rows[#rows + 1] = row_no
    end
  end
  return rows
end

-- Records that `seat_ids` became available (freed = true) or held or booked (freed = false):
-- places enter or leave the index now, the seats' rows are marked for a refresh.
local function reindex(seat_ids, freed)
  if #seat_ids == 0 then return end
  local infos = redis.call('HMGET', KEYS[8], unpack(seat_ids))
  local rows, places = {}, {}
  for i, raw in ipairs(infos) do
    local info = cjson.decode(raw)
    if info.area_no then
      if freed then places[#places + 1] = 0 end
      places[#places + 1] = place_member(info.area_no, seat_ids[i])
    elseif info.row_no then  -- a seat without a row is not in the index
      rows[#rows + 1] = info.row_best_rank
      rows[#rows + 1] = info.row_no
    end
  end
  if #places > 0 then redis.call(freed and 'ZADD' or 'ZREM', KEYS[11], unpack(places)) end
  if #rows > 0 then redis.call('ZADD', KEYS[12], unpack(rows)) end
end

-- Refreshes up to `limit` dirty rows, best first; returns true when rows are still dirty.
local function refresh_rows(limit)
  local popped = redis.call('ZPOPMIN', KEYS[12], limit)
  for i = 1, #popped, 2 do reindex_row(popped[i]) end
  return redis.call('ZCARD', KEYS[12]) > 0
end
