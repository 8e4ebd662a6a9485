-- unpark.lua: end an account's parking once every waiting event has been re-applied.
--
-- KEYS[1]  <prefix>:parked:events:{<account>}  list: the account's waiting events
-- ARGV[1]  n, how many events the caller has re-applied (the list's first n)
--
-- Returns {1, n}    the list held exactly n events and is deleted: the account is live again;
--         {0, len}  more events arrived meanwhile (len in all): apply the rest, then retry.
local len = redis.call('LLEN', KEYS[1])
if len == tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return {1, len}
end
return {0, len}
