-- atomic_upsert_trade_offer.lua: store upserted trade offers of one account, only if
-- the account still holds the version they were computed from (compare-and-set).
--
-- The merge ran in the Python fold; this stores its result. Offer JSON is stored
-- exactly as given and never decoded here (Redis cjson turns [] into {}).
--
-- KEYS[1]  <prefix>:meta:{<account>}          hash: the document's top-level fields but
--          trade_offers and negotiations (strings as they are, others JSON, `_order`,
--          `_json`), `version` (the applied version) and `position` ("partition:offset")
-- KEYS[2]  <prefix>:offers:{<account>}        hash: trade_offer_id -> offer JSON
-- KEYS[3]  <prefix>:offers:index:{<account>}  sorted set: trade_offer_id scored in ms
-- ARGV[1]  the version the change was computed from (the version KEYS[1] must hold)
-- ARGV[2]  the version it brings the account to (its last event's)
-- ARGV[3]  that event's position, "partition:offset"
-- ARGV[4]  m, the number of meta strings; ARGV[5 … 4+m] the changed meta fields
--          (field, value, field, value …)
-- ARGV[5+m]  n, the number of offers; then n pairs trade_offer_id, offer JSON;
--          then n pairs score, trade_offer_id
--
-- Returns {1, version}  applied;
--         {0, held}     already applied (held >= ARGV[2]): nothing changed (a redelivery);
--         {-1, held}    stale: the account holds another version than ARGV[1]; the caller
--                       reloads it and computes again (or parks it on a real gap).
-- #include _cas.lua
local m = tonumber(ARGV[4])
if m <= CHUNK then
  redis.call('HSET', KEYS[1], 'version', ARGV[2], 'position', ARGV[3], unpack(ARGV, 5, 4 + m))
else
  redis.call('HSET', KEYS[1], 'version', ARGV[2], 'position', ARGV[3])
  each('HSET', KEYS[1], 5, 4 + m)
end
local at = 6 + m
local n = tonumber(ARGV[5 + m])
each('HSET', KEYS[2], at, at + 2 * n - 1)
each('ZADD', KEYS[3], at + 2 * n, at + 4 * n - 1)
return {1, tonumber(ARGV[2])}
