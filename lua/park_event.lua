-- park_event.lua: keep an event of a parked account in its dead-letter list, in order.
--
-- A parked account's events wait here, oldest first, until `reapply_parked` applies
-- them; the list exists exactly while the account is parked (its first entry is the
-- event that parked it), so "is it parked?" and "add to it" are one atomic step.
--
-- KEYS[1]  <prefix>:parked:events:{<account>}  list: the account's waiting events, each
--          the JSON envelope as StoredEvent.to_dict writes it ({"id":…,"account":…,
--          "version":N,…}), versions strictly rising
-- ARGV[1]  "park" (start the list or add to it) or "follow" (add only if it exists)
-- ARGV[2]  the event's version
-- ARGV[3]  the event's JSON envelope
--
-- Returns 1   added;
--         0   not added: the list already holds this version or a later one (a redelivery);
--         -1  not added: "follow" and the account is not parked (any more).
local last = redis.call('LINDEX', KEYS[1], -1)
if not last then
  if ARGV[1] ~= 'park' then
    return -1
  end
else
  local held = tonumber(string.match(last, '^{"id":"[^"]*","account":"[^"]*","version":(%d+)'))
  if held >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('RPUSH', KEYS[1], ARGV[3])
return 1
