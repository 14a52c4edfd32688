-- Picks seats for a hold from the best-available index (free_index.lua), which lists every
-- free run as it is now: an adjacent block in one row, accessible seats, the best seats when no
-- block is free, or general-admission places.
-- Each function returns the seat ids, or nil when nothing fits.
-- Needs KEYS[10] row_seats, KEYS[11] free.
-- @include free_index

local ACCESSIBLE_RUNS_READ = 64  -- accessible runs looked at per request, best first

-- A view member's best rank, row and first seat, and its run's length (from the bucket when
-- below the cap, else from the row's status letters).
local function parse_member(member)
  local bucket, rank, row_no, start = string.match(member, '|(%d+)|(%d+)|(%d+)|(%d+)$')
  bucket, start = tonumber(bucket), tonumber(start)
  local length = bucket
  if bucket >= bucket_cap then length = run_length(row_no, start) end
  return tonumber(rank), row_no, start, length
end

local function rank_of(member)
  return tonumber(string.match(member, '|(%d+)|%d+|%d+$'))
end

local function members_from(prefix, limit)
  return redis.call('ZRANGEBYLEX', KEYS[11], '[' .. prefix, '(' .. prefix .. '\255',
    'LIMIT', 0, limit)
end

-- The start of the best window of `want` seats in the run of `length` seats from `start`: the
-- least sum of ranks (the leftmost of equals), among windows that `fits` (when given) and, unless
-- gaps_ok, that leave no single free seat of the run on either side. O(length).
local function best_window(row, start, length, want, gaps_ok, fits)
  local sums = {[0] = 0}
  for i = 1, length do sums[i] = sums[i - 1] + rank_at(row, start + i - 1) end
  local best_at, best_sum
  for left = 0, length - want do
    local right = length - want - left
    local first = start + left
    if (gaps_ok or (left ~= 1 and right ~= 1)) and (not fits or fits(row, first, want)) then
      local sum = sums[left + want] - sums[left]
      if not best_sum or sum < best_sum then best_at, best_sum = first, sum end
    end
  end
  return best_at
end

local function seats_at(row, first, want)
  local ids = {}
  for i = first, first + want - 1 do ids[#ids + 1] = id_at(row, i) end
  return ids
end

-- `want` adjacent standard seats: the best-ranked run among the buckets whose runs leave no
-- single seat (length want, or want + 2 and more); a run of want + 1 only when there is none.
local function pick_block(scope, want)
  local best, best_rank
  local function consider(bucket)
    local member = members_from(scope .. string.format('%04d', bucket) .. '|', 1)[1]
    if member then
      local rank = rank_of(member)
      if not best_rank or rank < best_rank then best, best_rank = member, rank end
    end
  end
  for bucket = want, bucket_cap do
    if bucket ~= want + 1 then consider(bucket) end
  end
  local gaps_ok = best == nil
  if gaps_ok then consider(want + 1) end
  if not best then return nil end
  local _, row_no, start, length = parse_member(best)
  local row = read_row(row_no)
  return seats_at(row, best_window(row, start, length, want, gaps_ok), want)
end

-- `want` adjacent accessible seats of which exactly `wheelchairs` are wheelchair spaces (the
-- others companion seats): the first run that has such a window, in bucket then rank order.
local function pick_accessible(scope, want, wheelchairs)
  local function fits(row, first, n)
    local count = 0
    for i = first, first + n - 1 do
      if kind_at(row, i) == 'W' then count = count + 1 end
    end
    return count == wheelchairs
  end
  local fallback, left = nil, ACCESSIBLE_RUNS_READ
  for bucket = want, bucket_cap do
    local members = members_from(scope .. string.format('%04d', bucket) .. '|', left)
    left = left - #members
    for _, member in ipairs(members) do
      local _, row_no, start, length = parse_member(member)
      if length >= want then
        local row = read_row(row_no)
        local at = best_window(row, start, length, want, false, fits)
        if at then return seats_at(row, at, want) end
        at = not fallback and best_window(row, start, length, want, true, fits)
        if at then fallback = seats_at(row, at, want) end
      end
    end
    if left == 0 then break end
  end
  return fallback
end

-- When no block of `want` is free (so every free run is shorter): the seats in as few groups
-- as possible, the longest runs first, the best-ranked first among runs of one length. At most
-- `want` runs are read.
local function pick_split(scope, want)
  local picked = {}
  for bucket = math.min(want - 1, bucket_cap), 1, -1 do
    local need = want - #picked
    for _, member in ipairs(members_from(scope .. string.format('%04d', bucket) .. '|', need)) do
      local take = math.min(bucket, want - #picked)
      if take == 0 then break end
      local _, row_no, start, length = parse_member(member)
      local row = read_row(row_no)
      for _, id in ipairs(seats_at(row, best_window(row, start, length, take, true), take)) do
        picked[#picked + 1] = id
      end
    end
    if #picked == want then return picked end
  end
  return nil
end

-- The engine's choice for `want` seats of `scope` ("|<category or *>|<section or *>|"), and 1
-- when they are a split.
local function pick_best(scope, want, wheelchairs, allow_split)
  if wheelchairs > 0 then return pick_accessible('A' .. scope, want, wheelchairs), 0 end
  local picked = pick_block('S' .. scope, want)
  if picked or not allow_split then return picked, 0 end
  return pick_split('S' .. scope, want), 1
end

-- `want` free places of the area; nil and the number left when there are fewer.
local function pick_places(area_index, want)
  local prefix = place_member(area_index, '')
  local members = members_from(prefix, want)
  if #members < want then return nil, #members end
  local ids = {}
  for i, member in ipairs(members) do ids[i] = string.sub(member, #prefix + 1) end
  return ids
end
