-- An event under construction: create_event.lua opens the build, build_seats.lua and
-- build_rows.lua fill it in bounded chunks (restore_event.lua may book seats again in between),
-- build_commit.lua makes it visible. Until then the event's settings live in KEYS[1], the
-- building hash, and the event's meta (KEYS[13]) does not exist: every other command reads the
-- meta first and answers EVENT_NOT_FOUND, so no one sees a half-built event.
-- The building hash holds the meta's fields as they will be, plus the build's progress:
--   built_entries  seats and places written so far, in request order (build_seats.lua)
--   built_rows     rows written and indexed so far, in row order (build_rows.lua)
--   entries, row_count  how many there are in all
-- Every key a build writes carries a TTL, refreshed by each chunk and removed on commit: a build
-- whose caller died is dropped by Redis, or taken up again by a retry with the same input.
-- The change log is not staged: the "restored" entries restore_event.lua appends into a build
-- are in it at once (a watcher that outlived the loss reads them before the event is visible;
-- they say what the event will show), and stay if the build dies (the retry logs again, with
-- new versions: versions are never reused).
-- Needs KEYS[1] building, KEYS[2] seats, KEYS[8] seat_info, KEYS[9] rows, and KEYS[10..12]:
-- what the best-available index keeps (includes/free_index.lua).
-- Functions a command may leave unused, for luacheck:
-- luacheck: ignore 211/check_build 211/keep_staged 211/STAGED

-- The keys a build writes besides the building hash.
local STAGED = {2, 8, 9, 10, 11, 12}

-- nil when KEYS[1] is the build of this fingerprint, else the error reply: EVENT_NOT_FOUND when
-- there is no build (it expired, or an identical create finished it: create again), EVENT_EXISTS
-- when another create with other input took it over.
local function check_build(fingerprint)
  local building = redis.call('HGET', KEYS[1], 'fingerprint')
  if not building then
    return {'EVENT_NOT_FOUND', 'no build of this event under way: create it again'}
  end
  if building ~= fingerprint then
    return {'EVENT_EXISTS', 'another create of this event, with other input, took over'}
  end
  return nil
end

-- Sets (or refreshes) the TTL of the building hash and every staged key that exists.
local function keep_staged(ttl_ms)
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
  for _, k in ipairs(STAGED) do redis.call('PEXPIRE', KEYS[k], ttl_ms) end
end
