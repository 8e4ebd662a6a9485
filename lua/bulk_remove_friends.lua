-- bulk_remove_friends.lua: remove friends' negotiation records of one account, only if
-- the account still holds the version the removal was computed from (compare-and-set).
--
-- KEYS[1]  <prefix>:meta:{<account>}            hash: the document's top-level fields,
--          `version` (the applied version) and `position` (see atomic_upsert_trade_offer)
-- KEYS[2]  <prefix>:friends:index:{<account>}   set: friend ids
-- KEYS[3 …]  <prefix>:friend:{<account>}:<friendId>, one per removed friend, ARGV order
-- ARGV[1]  the version the change was computed from (the version KEYS[1] must hold)
-- ARGV[2]  the version it brings the account to (its last event's)
-- ARGV[3]  that event's position, "partition:offset"
-- ARGV[4]  m, the number of meta strings; ARGV[5 … 4+m] the changed meta fields
-- ARGV[5+m …]  the removed friends' ids, in KEYS order
--
-- Returns {1, version}  applied;
--         {0, held}     already applied (held >= ARGV[2]): nothing changed (a redelivery);
--         {-1, held}    stale: the account holds another version than ARGV[1].
-- #include _cas.lua
local m = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'position', ARGV[3])
each('HSET', KEYS[1], 5, 4 + m)
for i = 3, #KEYS do
  redis.call('DEL', KEYS[i])
end
each('SREM', KEYS[2], 5 + m, #ARGV)
return {1, tonumber(ARGV[2])}
