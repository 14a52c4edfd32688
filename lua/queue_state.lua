--[[
  queue_state: pauses, resumes or closes an event's waiting room.

  Input:
    KEYS[1] queue  settings, state, counters (hash)
    ARGV[1] "paused", "open" (resume) or "closed"

  Output:
    {"OK"}
    Errors, nothing changed:
    {"QUEUE_NOT_FOUND", message} no waiting room configured for the event
    {"QUEUE_CLOSED", message} pause or resume after CloseQueue (closing is final)
  Resuming empties the rate's bucket, so the time paused gives no burst. Closing again, pausing
  a paused queue or resuming an open one change nothing. Cost: O(1).
]]
-- @include clock

local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'QUEUE_NOT_FOUND', 'the event has no waiting room'} end
if state == 'closed' and ARGV[1] ~= 'closed' then
  return {'QUEUE_CLOSED', 'the waiting room is closed'}
end
if ARGV[1] == 'open' and state ~= 'open' then
  redis.call('HSET', KEYS[1], 'bucket', 0, 'bucket_ms', now_ms())
end
redis.call('HSET', KEYS[1], 'state', ARGV[1])
return {'OK'}
