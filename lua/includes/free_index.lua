-- The best-available index, KEYS[11] free: a sorted set read by lexical range (every score 0),
-- kept exact: every change of seat states updates it in the same script, touching only the
-- runs around the seats that changed (O(log n) each), never a whole row.
-- A free run is a maximal stretch of consecutive available seats of one row with one category
-- and one class (S standard seats; A accessible: wheelchair spaces and companion seats). Each
-- run is listed once by position, to find the run around a seat:
--   P|<row, 6 digits>|<last seat, 3 digits>|<first seat>|<best rank>|<class>|<section>|<category>
-- and in views, by its category or any (*) and by its section or any (*), ordered by length
-- bucket, then best rank:
--   <class>|<category>|<section>|<bucket>|<best rank, 7 digits>|<row>|<first seat>
-- (the length is in the run's P member: a view member stays put while its run grows or shrinks
-- at its end within its bucket, so most changes rewrite one P member and the new run's views).
-- A run without a category has no view of category "" unless a seat of the event names that
-- category (meta field `category:`): no request can ask for it otherwise.
-- Seats are numbered from 1 in their row. The bucket is the run's length, capped at `bucket_cap`
-- (meta field): best available for N seats reads the head of a few buckets, never the event.
-- A free general-admission place is listed once: G|<area index, 6 digits>|<place id>.
-- KEYS[12] seat_spots: seat id -> "<row>|<seat>|<rank>|<kind>|<section>|<category>", what a
-- change needs of a seat without decoding its description (seats of a row only).
-- KEYS[10] row_seats: per row, what best available and a split read of it, packed so that any
-- seat is read in O(1): "<row>|ids" the seat ids end to end, "<row>|ends" where each ends,
-- "<row>|kinds" one letter per seat (S, W, C), and "<row>|m<k>" for k = 0, 1, ...: the least
-- rank of the 2^k seats from each seat on (m0: the ranks), so that the best rank of any stretch
-- takes two reads. Numbers are 3 bytes, big-endian.
-- Built per row by reindex_row (create_event.lua), from KEYS[9] rows and the seats' states.
-- Needs KEYS[1] meta, KEYS[2] seats, KEYS[8] seat_info, KEYS[9] rows, KEYS[10] row_seats,
-- KEYS[11] free, KEYS[12] seat_spots.
-- Functions a command may leave unused, for luacheck:
-- luacheck: ignore 211/reindex 211/reindex_row 211/index_rows 211/read_row 211/rank_at
-- luacheck: ignore 211/id_at 211/kind_at 211/run_length
local bucket_cap
local blank_category  -- true when requests may ask for category "" (see above)
local ZSET_CHUNK = 500  -- members per ZADD / ZREM: Lua's unpack takes a few thousand values

local function seat_class(kind)
  if kind == 'S' then return 'S' end
  return 'A'
end

local function pack3(n)
  return string.char(math.floor(n / 65536), math.floor(n / 256) % 256, n % 256)
end

local function unpack3(s, i)
  local a, b, c = string.byte(s, 3 * i - 2, 3 * i)
  return a * 65536 + b * 256 + c
end

-- The index's settings, from KEYS[1] (meta) unless read_event (event.lua) read them already.
local function load_bucket_cap()
  if bucket_cap then return end
  local v = redis.call('HMGET', KEYS[1], 'bucket_cap', 'category:')
  bucket_cap, blank_category = tonumber(v[1]), v[2] ~= false
end

-- Zero-padded numbers (cheaper than string.format on every change).
local function pad(n, width)
  return string.sub('000000' .. n, -width)
end

-- Appends the members of `run` ({row, first, last, best, class, section, category}) to `out`.
local function add_members(run, out)
  local length = run.last - run.first + 1
  local tail = '|' .. pad(math.min(length, bucket_cap), 4) .. '|' .. pad(run.best, 7) .. '|'
    .. run.row .. '|' .. run.first
  local class, section = run.class, run.section
  if run.category ~= '' or blank_category then
    local prefix = class .. '|' .. run.category .. '|'
    out[#out + 1] = prefix .. section .. tail
    out[#out + 1] = prefix .. '*' .. tail
  end
  out[#out + 1] = class .. '|*|' .. section .. tail
  out[#out + 1] = class .. '|*|*' .. tail
  out[#out + 1] = 'P|' .. pad(run.row, 6) .. '|' .. pad(run.last, 3) .. '|' .. run.first .. '|'
    .. run.best .. '|' .. class .. '|' .. section .. '|' .. run.category
end

local function parse_run(member)
  local row, last, first, best, class, section, category =
    string.match(member, '^P|(%d+)|(%d+)|(%d+)|(%d+)|(%a)|([^|]*)|(.*)$')
  return {row = tonumber(row), first = tonumber(first), last = tonumber(last),
    best = tonumber(best), class = class, section = section, category = category}
end

-- Up to `count` runs (P members) of the row whose last seat is `seat` or after, in seat order.
local function runs_from(row_no, seat, count)
  local prefix = 'P|' .. pad(row_no, 6) .. '|'
  return redis.call('ZRANGEBYLEX', KEYS[11], '[' .. prefix .. pad(seat, 3),
    '(' .. prefix .. '\255', 'LIMIT', 0, count)
end

local function zchange(command, members, with_score)
  for first = 1, #members, ZSET_CHUNK do
    local args = {}
    for i = first, math.min(first + ZSET_CHUNK - 1, #members) do
      if with_score then args[#args + 1] = 0 end
      args[#args + 1] = members[i]
    end
    redis.call(command, KEYS[11], unpack(args))
  end
end

-- Removes then adds members, leaving alone those in both lists.
local function apply(removed, added)
  local dropped, kept = {}, {}
  for _, member in ipairs(removed) do dropped[member] = true end
  local gone, new = {}, {}
  for _, member in ipairs(added) do
    if dropped[member] then kept[member] = true else new[#new + 1] = member end
  end
  for _, member in ipairs(removed) do
    if not kept[member] then gone[#gone + 1] = member end
  end
  if #gone > 0 then zchange('ZREM', gone, false) end
  if #new > 0 then zchange('ZADD', new, true) end
end

local function place_member(area_index, place_id)
  return string.format('G|%06d|', area_index) .. place_id
end

-- Seats taken out of their runs: each run around them gives way to the pieces left over, whose
-- best ranks come from the range minima. Seats not listed (not free) are left alone.
local function take_in_row(row_no, seats, removed, pieces)
  local i = 1
  while i <= #seats do
    local member = runs_from(row_no, seats[i].seat, 1)[1]
    local run = member and parse_run(member)
    if not run or run.first > seats[i].seat then
      i = i + 1
    else
      add_members(run, removed)
      local from = run.first
      while i <= #seats and seats[i].seat <= run.last do
        if seats[i].seat > from then
          pieces[#pieces + 1] = {row = row_no, first = from, last = seats[i].seat - 1,
            class = run.class, section = run.section, category = run.category}
        end
        from = seats[i].seat + 1
        i = i + 1
      end
      if from <= run.last then
        pieces[#pieces + 1] = {row = row_no, first = from, last = run.last, class = run.class,
          section = run.section, category = run.category}
      end
    end
  end
end

-- The best rank of each piece, from one read of the range-minimum levels they need.
local function rank_pieces(pieces)
  local fields, wanted = {}, {}
  for _, piece in ipairs(pieces) do
    local k, span = 0, 1
    while span * 2 <= piece.last - piece.first + 1 do k, span = k + 1, span * 2 end
    piece.field, piece.span = piece.row .. '|m' .. k, span
    if not wanted[piece.field] then
      wanted[piece.field] = true
      fields[#fields + 1] = piece.field
    end
  end
  if #fields == 0 then return end
  local levels = {}
  for i, level in ipairs(redis.call('HMGET', KEYS[10], unpack(fields))) do
    levels[fields[i]] = level
  end
  for _, piece in ipairs(pieces) do
    local level = levels[piece.field]
    piece.best = math.min(unpack3(level, piece.first), unpack3(level, piece.last - piece.span + 1))
  end
end

local function same_kind(a, b)
  return a.class == b.class and a.category == b.category
end

-- Seats made free: consecutive ones of a kind form segments, each merged with the free runs of
-- its kind that touch it (one read around each segment).
local function free_in_row(row_no, seats, removed, added)
  local parts, segment = {}, nil
  for _, seat in ipairs(seats) do
    if segment and seat.seat == segment.last + 1 and same_kind(seat, segment) then
      segment.last, segment.best = seat.seat, math.min(segment.best, seat.rank)
    else
      segment = {row = row_no, first = seat.seat, last = seat.seat, best = seat.rank,
        class = seat.class, section = seat.section, category = seat.category}
      parts[#parts + 1] = segment
    end
  end
  local seen = {}
  for s = 1, #parts do
    local part = parts[s]
    for _, member in ipairs(runs_from(row_no, part.first - 1, 2)) do
      local run = parse_run(member)
      if not seen[member] and same_kind(run, part)
          and run.first <= part.last + 1 and run.last >= part.first - 1 then
        seen[member] = true
        add_members(run, removed)
        parts[#parts + 1] = run
      end
    end
  end
  table.sort(parts, function(a, b) return a.first < b.first end)
  local merged
  for _, part in ipairs(parts) do
    if merged and part.first <= merged.last + 1 and same_kind(part, merged) then
      merged.last = math.max(merged.last, part.last)
      merged.best = math.min(merged.best, part.best)
    else
      if merged then add_members(merged, added) end
      merged = {row = row_no, first = part.first, last = part.last, best = part.best,
        class = part.class, section = part.section, category = part.category}
    end
  end
  add_members(merged, added)
end

-- Records that `seat_ids` became available (freed = true) or held or booked (freed = false):
-- places enter or leave the index, the runs around the seats of rows are split or merged.
-- Cost: O(seats x log n), one read of the runs around each seat or stretch of seats.
local function reindex(seat_ids, freed)
  if #seat_ids == 0 then return end
  load_bucket_cap()
  local rows, by_row, others = {}, {}, {}
  for i, spot in ipairs(redis.call('HMGET', KEYS[12], unpack(seat_ids))) do
    if spot then
      local row, seat, rank, kind, section, category =
        string.match(spot, '^(%d+)|(%d+)|(%d+)|(%a)|([^|]*)|(.*)$')
      row = tonumber(row)
      if not by_row[row] then
        by_row[row] = {}
        rows[#rows + 1] = row
      end
      local list = by_row[row]
      list[#list + 1] = {seat = tonumber(seat), rank = tonumber(rank), class = seat_class(kind),
        section = section, category = category}
    else
      others[#others + 1] = seat_ids[i]
    end
  end
  local removed, added, pieces = {}, {}, {}
  if #others > 0 then  -- places, and seats without a row (never in the index)
    for i, raw in ipairs(redis.call('HMGET', KEYS[8], unpack(others))) do
      local area = raw and cjson.decode(raw).area_no
      if area then
        local list = freed and added or removed
        list[#list + 1] = place_member(area, others[i])
      end
    end
  end
  for _, row in ipairs(rows) do
    local seats = by_row[row]
    table.sort(seats, function(a, b) return a.seat < b.seat end)
    if freed then
      free_in_row(row, seats, removed, added)
    else
      take_in_row(row, seats, removed, pieces)
    end
  end
  rank_pieces(pieces)
  for _, piece in ipairs(pieces) do add_members(piece, added) end
  apply(removed, added)
end

-- The range-minimum levels of a row's ranks: level k holds, from each seat on, the least rank
-- of the 2^k seats that start there.
local function rank_levels(ranks)
  local levels, level, span = {}, ranks, 1
  while true do
    local packed = {}
    for i = 1, #level do packed[i] = pack3(level[i]) end
    levels[#levels + 1] = table.concat(packed)
    if span * 2 > #ranks then return levels end
    local wider = {}
    for i = 1, #level - span do wider[i] = math.min(level[i], level[i + span]) end
    level, span = wider, span * 2
  end
end

-- (Re)builds one row's part of the index from its description (KEYS[9]) and its seats' states:
-- its packed seats, its seats' spots, its runs (those listed before are replaced).
local function reindex_row(row_no)
  load_bucket_cap()
  local row = cjson.decode(redis.call('HGET', KEYS[9], row_no))
  local ids, n = row.seat_ids, #row.seat_ids
  local ends, spots, at = {}, {}, 0
  for i, id in ipairs(ids) do
    at = at + #id
    ends[i] = pack3(at)
    spots[#spots + 1] = id
    spots[#spots + 1] = row_no .. '|' .. i .. '|' .. row.ranks[i] .. '|' .. row.kinds[i] .. '|'
      .. row.section .. '|' .. row.categories[i]
  end
  local packed = {row_no .. '|ids', table.concat(ids), row_no .. '|ends', table.concat(ends),
    row_no .. '|kinds', table.concat(row.kinds)}
  for k, level in ipairs(rank_levels(row.ranks)) do
    packed[#packed + 1] = row_no .. '|m' .. (k - 1)
    packed[#packed + 1] = level
  end
  redis.call('HSET', KEYS[10], unpack(packed))
  redis.call('HSET', KEYS[12], unpack(spots))
  local removed, added = {}, {}
  local prefix = 'P|' .. pad(row_no, 6) .. '|'
  local listed = redis.call('ZRANGEBYLEX', KEYS[11], '[' .. prefix, '(' .. prefix .. '\255')
  for _, member in ipairs(listed) do
    add_members(parse_run(member), removed)
  end
  local states = redis.call('HMGET', KEYS[2], unpack(ids))
  local i = 1
  while i <= n do
    if states[i] == 'A' then
      local run = {row = tonumber(row_no), first = i, last = i, best = row.ranks[i],
        class = seat_class(row.kinds[i]), section = row.section, category = row.categories[i]}
      while run.last < n and states[run.last + 1] == 'A'
          and seat_class(row.kinds[run.last + 1]) == run.class
          and row.categories[run.last + 1] == run.category do
        run.last = run.last + 1
        run.best = math.min(run.best, row.ranks[run.last])
      end
      add_members(run, added)
      i = run.last + 1
    else
      i = i + 1
    end
  end
  apply(removed, added)
end

-- Builds the index of rows first..last (a chunk of an event's rows).
local function index_rows(first, last)
  for row_no = first, last do reindex_row(row_no) end
end

-- A row's packed seats, as best available reads them (see rank_at, id_at, kind_at).
local function read_row(row_no)
  local v = redis.call('HMGET', KEYS[10], row_no .. '|ids', row_no .. '|ends', row_no .. '|m0',
    row_no .. '|kinds')
  return {ids = v[1], ends = v[2], ranks = v[3], kinds = v[4]}
end

local function rank_at(row, i) return unpack3(row.ranks, i) end

local function id_at(row, i)
  local from = 1
  if i > 1 then from = unpack3(row.ends, i - 1) + 1 end
  return string.sub(row.ids, from, unpack3(row.ends, i))
end

local function kind_at(row, i) return string.sub(row.kinds, i, i) end

-- The length of the run of `row_no` that starts at seat `first`, from its P member.
local function run_length(row_no, first)
  return parse_run(runs_from(row_no, first, 1)[1]).last - first + 1
end
