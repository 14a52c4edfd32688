-- The best-available index, KEYS[11] free: a sorted set read by lexical range (every score 0),
-- kept exact: every change of seat states updates it in the same script, touching only the
-- runs around the seats that changed (O(log n) each), never a whole row.
-- A free run is a maximal stretch of consecutive available seats of one row with one category
-- and one class (S standard seats; A accessible: wheelchair spaces and companion seats). Each
-- run is listed in views, by its category or any (*) and by its section or any (*), ordered by
-- length bucket, then best rank:
--   <class>|<category>|<section>|<bucket>|<best rank, 7 digits>|<row>|<first seat>
-- Where the runs of a row are is in its status letters (KEYS[10] "<row>|free", one byte a
-- seat): "a" or "b" for a free seat, "A" or "B" for a held or booked one, the letter flipping
-- where the class or the category changes, so that a run is a maximal stretch of one lower-case
-- letter, found around any seat by string.find in C. A change rewrites the letters of its seats
-- and the view members of the runs it changed; a member names no last seat, so a run that
-- grows or shrinks at its end within its bucket, its best rank unchanged, keeps its member.
-- A run without a category has no view of category "" unless a seat of the event names that
-- category (meta field `category:`): no request can ask for it otherwise. When every seat in a
-- row has one category (meta field `index_category`) or one section (`index_section`), the
-- views by it would repeat those by any (*): runs are listed under * only, and view_scope maps
-- a request for it to *.
-- Seats are numbered from 1 in their row. The bucket is the run's length, capped at `bucket_cap`
-- (meta field): best available for N seats reads the head of a few buckets, never the event.
-- A free general-admission place is listed once: G|<area index, 6 digits>|<place id>.
-- KEYS[12] seat_spots: seat id -> "<row>|<seat>|<rank>|<kind>|<section>|<category>", what a
-- change needs of a seat without decoding its description (seats of a row only).
-- KEYS[10] row_seats: per row, what best available and a change read of it, packed so that any
-- seat is read in O(1): "<row>|free" the status letters (above), "<row>|ids" the seat ids end
-- to end, "<row>|ends" where each ends, "<row>|kinds" one letter per seat (S, W, C), and
-- "<row>|m<k>" for k = 0, 1, ...: the least rank of the 2^k seats from each seat on (m0: the
-- ranks), so that the best rank of any stretch takes two reads. Numbers are 3 bytes, big-endian.
-- Built per row by reindex_row (create_event.lua), from KEYS[9] rows and the seats' states.
-- Needs KEYS[1] meta, KEYS[2] seats, KEYS[8] seat_info, KEYS[9] rows, KEYS[10] row_seats,
-- KEYS[11] free, KEYS[12] seat_spots.
-- Functions a command may leave unused, for luacheck:
-- luacheck: ignore 211/reindex 211/reindex_row 211/index_rows 211/read_row 211/rank_at
-- luacheck: ignore 211/id_at 211/kind_at 211/run_length 211/view_scope
local bucket_cap
local blank_category  -- true when requests may ask for category "" (see above)
local only_category, only_section  -- the one category / section of the seats in rows, or nil
local ZSET_CHUNK = 500  -- members per ZADD / ZREM: Lua's unpack takes a few thousand values

-- The settings above start unread on every call (the library's locals outlive a call).
local function reset_free_index()
  bucket_cap, blank_category, only_category, only_section = nil, nil, nil, nil
end

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
  local v = redis.call('HMGET', KEYS[1], 'bucket_cap', 'category:', 'index_category',
    'index_section')
  bucket_cap, blank_category = tonumber(v[1]), v[2] ~= false
  only_category, only_section = v[3] or nil, v[4] or nil
end

-- The views best available reads for a request's category and section ("*" for any), as
-- "|<category>|<section>|".
local function view_scope(category, section)
  if category == only_category then category = '*' end
  if section == only_section then section = '*' end
  return '|' .. category .. '|' .. section .. '|'
end

-- A zero-padded number, for the members listed by an earlier version of this file (listed_runs).
local function pad(n, width)
  return string.sub('000000' .. n, -width)
end

-- Appends the members of `run` ({row, first, last, best, class, section, category}) to `out`.
local function add_members(run, out)
  local length = run.last - run.first + 1
  local tail = string.format('|%04d|%07d|%s|%d', math.min(length, bucket_cap), run.best, run.row,
    run.first)
  local class, section = run.class, run.section
  local by_section = only_section == nil
  if (run.category ~= '' or blank_category) and only_category == nil then
    local prefix = class .. '|' .. run.category .. '|'
    if by_section then out[#out + 1] = prefix .. section .. tail end
    out[#out + 1] = prefix .. '*' .. tail
  end
  if by_section then out[#out + 1] = class .. '|*|' .. section .. tail end
  out[#out + 1] = class .. '|*|*' .. tail
end

local function zchange(command, members, with_score)
  for first = 1, #members, ZSET_CHUNK do
    local last = math.min(first + ZSET_CHUNK - 1, #members)
    if not with_score then
      redis.call(command, KEYS[11], unpack(members, first, last))
    else
      -- Scores as text: Redis turns a number argument into text at a cost each time.
      local args, n = {}, 0
      for i = first, last do
        args[n + 1], args[n + 2], n = '0', members[i], n + 2
      end
      redis.call(command, KEYS[11], unpack(args))
    end
  end
end

-- Removes then adds members: a member in both lists stays. A change lists a few members, and
-- sending one that is in both costs Redis less than the script finding it.
local function apply(removed, added)
  if #removed > 0 then zchange('ZREM', removed, false) end
  if #added > 0 then zchange('ZADD', added, true) end
end

local function place_member(area_index, place_id)
  return string.format('G|%06d|', area_index) .. place_id
end

-- Patterns: any letter but a free one; the last such letter before a seat.
local NOT_FREE = {a = '[^a]', b = '[^b]'}
local LAST_NOT_FREE = {a = '^.*[^a]', b = '^.*[^b]'}

-- The first seat from `from` on whose letter is not `letter`, or nil.
local function run_end(status, letter, from)
  return (string.find(status, NOT_FREE[letter], from))
end

-- The free run around free seat `seat` of a row's status letters: its first and last seats.
local function run_bounds(status, seat)
  local letter = string.sub(status, seat, seat)
  local stop = run_end(status, letter, seat + 1)
  local _, before = string.find(string.sub(status, 1, seat - 1), LAST_NOT_FREE[letter])
  return (before or 0) + 1, (stop or #status + 1) - 1
end

local function is_free(letter)
  return letter == 'a' or letter == 'b'
end

-- `status` with the letters of `seats` (sorted, distinct) changed by `case` (upper or lower).
local function with_letters(status, seats, case)
  if #seats == 1 then
    local at = seats[1].seat
    return string.sub(status, 1, at - 1) .. case(string.sub(status, at, at))
      .. string.sub(status, at + 1)
  end
  local parts, from = {}, 1
  for _, seat in ipairs(seats) do
    parts[#parts + 1] = string.sub(status, from, seat.seat - 1)
    parts[#parts + 1] = case(string.sub(status, seat.seat, seat.seat))
    from = seat.seat + 1
  end
  parts[#parts + 1] = string.sub(status, from)
  return table.concat(parts)
end

local function run_of(seat, first, last)
  return {row = seat.row, first = first, last = last, class = seat.class, section = seat.section,
    category = seat.category}
end

-- Seats taken out of their runs: each run around them (to `old`) gives way to the pieces left
-- over (to `new`). Seats not free in `status` are left alone. Returns the row's new letters.
local function take_in_row(seats, status, old, new)
  local i = 1
  while i <= #seats do
    local seat = seats[i]
    if not is_free(string.sub(status, seat.seat, seat.seat)) then
      i = i + 1
    else
      local first, last = run_bounds(status, seat.seat)
      old[#old + 1] = run_of(seat, first, last)
      local from = first
      while i <= #seats and seats[i].seat <= last do
        if seats[i].seat > from then new[#new + 1] = run_of(seat, from, seats[i].seat - 1) end
        from = seats[i].seat + 1
        i = i + 1
      end
      if from <= last then new[#new + 1] = run_of(seat, from, last) end
    end
  end
  return with_letters(status, seats, string.upper)
end

-- Seats made free: the run around each (to `new`) replaces the free runs it joins (to `old`).
-- Returns the row's new letters.
local function free_in_row(seats, status, old, new)
  local letters = with_letters(status, seats, string.lower)
  local done = 0
  for _, seat in ipairs(seats) do
    if seat.seat > done then
      local first, last = run_bounds(letters, seat.seat)
      new[#new + 1] = run_of(seat, first, last)
      -- The runs before were the stretches of this letter within the new run.
      local stretch = string.sub(letters, seat.seat, seat.seat) .. '+'
      local from, to = string.find(status, stretch, first)
      while from and from <= last do
        old[#old + 1] = run_of(seat, from, to)
        from, to = string.find(status, stretch, to + 1)
      end
      done = last
    end
  end
  return letters
end

-- A row's range-minimum level fields, by k (see above): a row has at most 500 seats
-- (inventory/event_shape.py MAX_ROW_LENGTH), fewer than 2^9.
local LEVEL_FIELDS = {[0] = '|m0', '|m1', '|m2', '|m3', '|m4', '|m5', '|m6', '|m7', '|m8'}

-- The best rank of each run, from one read of the range-minimum levels they need: the least of
-- the two (overlapping) stretches of 2^k seats that cover the run.
local function rank_runs(runs)
  local fields, field_at = {}, {}
  for i = 1, #runs do
    local run = runs[i]
    local k, span, length = 0, 1, run.last - run.first + 1
    while span * 2 <= length do k, span = k + 1, span * 2 end
    local field = run.row .. LEVEL_FIELDS[k]
    local at = field_at[field]
    if not at then
      at = #fields + 1
      fields[at], field_at[field] = field, at
    end
    run.level, run.span = at, span
  end
  if #fields == 0 then return end
  local levels = redis.call('HMGET', KEYS[10], unpack(fields))
  for i = 1, #runs do
    local run = runs[i]
    local level, from, to = levels[run.level], 3 * run.first, 3 * (run.last - run.span + 1)
    local a1, a2, a3 = string.byte(level, from - 2, from)
    local b1, b2, b3 = string.byte(level, to - 2, to)
    local a, b = (a1 * 256 + a2) * 256 + a3, (b1 * 256 + b2) * 256 + b3
    run.best = a < b and a or b
  end
end

local reindex_row

local function by_seat(a, b) return a.seat < b.seat end

-- Records that `seat_ids` became available (freed = true) or held or booked (freed = false):
-- places enter or leave the index, the runs around the seats of rows are split or merged.
-- Cost: O(seats x log n + the changed rows' lengths, in C), one read of the rows' letters.
local function reindex(seat_ids, freed)
  if #seat_ids == 0 then return end
  load_bucket_cap()
  local rows, by_row, others = {}, {}, {}
  for i, spot in ipairs(redis.call('HMGET', KEYS[12], unpack(seat_ids))) do
    if spot then
      local row, seat, kind, section, category =
        string.match(spot, '^(%d+)|(%d+)|%d+|(%a)|([^|]*)|(.*)$')
      if not by_row[row] then
        by_row[row] = {}
        rows[#rows + 1] = row
      end
      local list = by_row[row]
      list[#list + 1] = {row = row, seat = tonumber(seat), class = seat_class(kind),
        section = section, category = category}
    else
      others[#others + 1] = seat_ids[i]
    end
  end
  local removed, added = {}, {}
  if #others > 0 then  -- places, and seats without a row (never in the index)
    for i, raw in ipairs(redis.call('HMGET', KEYS[8], unpack(others))) do
      local area = raw and cjson.decode(raw).area_no
      if area then
        local list = freed and added or removed
        list[#list + 1] = place_member(area, others[i])
      end
    end
  end
  if #rows > 0 then
    local fields = {}
    for k, row in ipairs(rows) do fields[k] = row .. '|free' end
    local old, new, letters = {}, {}, {}
    for k, status in ipairs(redis.call('HMGET', KEYS[10], unpack(fields))) do
      local row, seats = rows[k], by_row[rows[k]]
      if not status then  -- a row indexed before the letters existed: built whole
        reindex_row(tonumber(row))
      else
        if #seats > 1 then table.sort(seats, by_seat) end
        letters[#letters + 1] = fields[k]
        if freed then
          letters[#letters + 1] = free_in_row(seats, status, old, new)
        else
          letters[#letters + 1] = take_in_row(seats, status, old, new)
        end
      end
    end
    local runs = {}
    for _, run in ipairs(old) do runs[#runs + 1] = run end
    for _, run in ipairs(new) do runs[#runs + 1] = run end
    rank_runs(runs)
    for _, run in ipairs(old) do add_members(run, removed) end
    for _, run in ipairs(new) do add_members(run, added) end
    if #letters > 0 then redis.call('HSET', KEYS[10], unpack(letters)) end
  end
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

-- Lists in `out` the members of the runs of a row's status letters (best ranks from the row).
local function runs_of(row_no, row, status, out)
  local from = string.find(status, '[ab]')
  while from do
    local stop = string.find(status, '[^' .. string.sub(status, from, from) .. ']', from + 1)
    local last = (stop or #status + 1) - 1
    local best = row.ranks[from]
    for i = from + 1, last do best = math.min(best, row.ranks[i]) end
    add_members({row = row_no, first = from, last = last, best = best,
      class = seat_class(row.kinds[from]), section = row.section,
      category = row.categories[from]}, out)
    from = string.find(status, '[ab]', last + 1)
  end
end

-- The runs of a row indexed by an earlier version of this file, which listed each run by
-- position too: P|<row, 6 digits>|<last seat, 3 digits>|<first seat>|<best rank>|<class>|
-- <section>|<category>, beside its views (by category and * and by section and *).
local function listed_runs(row_no, out)
  local prefix = 'P|' .. pad(row_no, 6) .. '|'
  for _, member in ipairs(redis.call('ZRANGEBYLEX', KEYS[11], '[' .. prefix,
      '(' .. prefix .. '\255')) do
    local last, first, best, class, section, category =
      string.match(member, '^P|%d+|(%d+)|(%d+)|(%d+)|(%a)|([^|]*)|(.*)$')
    out[#out + 1] = member
    add_members({row = row_no, first = tonumber(first), last = tonumber(last),
      best = tonumber(best), class = class, section = section, category = category}, out)
  end
end

-- The status letters of a row (see above) from its seats' states.
local function row_letters(row, states)
  local letters, letter = {}, 'a'
  for i = 1, #states do
    if i > 1 and (seat_class(row.kinds[i]) ~= seat_class(row.kinds[i - 1])
        or row.categories[i] ~= row.categories[i - 1]) then
      letter = letter == 'a' and 'b' or 'a'
    end
    letters[i] = states[i] == 'A' and letter or string.upper(letter)
  end
  return table.concat(letters)
end

-- (Re)builds one row's part of the index from its description (KEYS[9]) and its seats' states:
-- its packed seats and letters, its seats' spots, its runs (those listed before are replaced).
function reindex_row(row_no)
  load_bucket_cap()
  local row = cjson.decode(redis.call('HGET', KEYS[9], row_no))
  local ids = row.seat_ids
  local ends, spots, at = {}, {}, 0
  for i, id in ipairs(ids) do
    at = at + #id
    ends[i] = pack3(at)
    spots[#spots + 1] = id
    spots[#spots + 1] = row_no .. '|' .. i .. '|' .. row.ranks[i] .. '|' .. row.kinds[i] .. '|'
      .. row.section .. '|' .. row.categories[i]
  end
  local removed, added = {}, {}
  local before = redis.call('HGET', KEYS[10], row_no .. '|free')
  if before then
    runs_of(row_no, row, before, removed)
  else
    listed_runs(row_no, removed)
  end
  local status = row_letters(row, redis.call('HMGET', KEYS[2], unpack(ids)))
  local packed = {row_no .. '|ids', table.concat(ids), row_no .. '|ends', table.concat(ends),
    row_no .. '|kinds', table.concat(row.kinds), row_no .. '|free', status}
  for k, level in ipairs(rank_levels(row.ranks)) do
    packed[#packed + 1] = row_no .. '|m' .. (k - 1)
    packed[#packed + 1] = level
  end
  redis.call('HSET', KEYS[10], unpack(packed))
  redis.call('HSET', KEYS[12], unpack(spots))
  runs_of(row_no, row, status, added)
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

-- The length of the free run of `row_no` that starts at seat `first`, from the row's letters.
local function run_length(row_no, first)
  local status = redis.call('HGET', KEYS[10], row_no .. '|free')
  local stop = run_end(status, string.sub(status, first, first), first + 1)
  return (stop or #status + 1) - first
end
