-- upsert_friend.lua: replace friends' negotiation records of one account, only if the
-- account still holds the version they were computed from (compare-and-set).
--
-- Each record is a hash with a field per top-level key of the record (strings as they
-- are, others JSON, escaped names) plus `_order` and `_json`, all built in Python;
-- values are stored as given and never decoded here.
--
-- KEYS[1]  <prefix>:meta:{<account>}            hash: the document's top-level fields,
--          `version` (the applied version) and `position` (see atomic_upsert_trade_offer)
-- KEYS[2]  <prefix>:friends:index:{<account>}   set: friend ids
-- KEYS[3 …]  <prefix>:friend:{<account>}:<friendId>, one per record in ARGV, in order
-- ARGV[1]  the version the change was computed from (the version KEYS[1] must hold)
-- ARGV[2]  the version it brings the account to (its last event's)
-- ARGV[3]  that event's position, "partition:offset"
-- ARGV[4]  m, the number of meta strings; ARGV[5 … 4+m] the changed meta fields
-- then per record, in KEYS order: friend id, k, and k strings (field, value …): the
--          record's whole hash
--
-- Returns {1, version}  applied;
--         {0, held}     already applied (held >= ARGV[2]): nothing changed (a redelivery);
--         {-1, held}    stale: the account holds another version than ARGV[1].
-- #include _cas.lua
local m = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'position', ARGV[3])
each('HSET', KEYS[1], 5, 4 + m)
local at = 5 + m
for key = 3, #KEYS do
  local k = tonumber(ARGV[at + 1])
  redis.call('DEL', KEYS[key])
  each('HSET', KEYS[key], at + 2, at + 1 + k)
  redis.call('SADD', KEYS[2], ARGV[at])
  at = at + 2 + k
end
return {1, tonumber(ARGV[2])}
