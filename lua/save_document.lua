-- save_document.lua: replace one account's whole projection (NegotiationsSaved,
-- LegacyImported), only if it still holds the version the document was computed
-- from (compare-and-set).
--
-- Every string is stored as given (built in Python by projections.redis_codec) and
-- never decoded here (Redis cjson turns [] into {}).
--
-- KEYS[1]  <prefix>:meta:{<account>}            hash: the document's top-level fields but
--          trade_offers and negotiations (strings as they are, others JSON, `_order`,
--          `_json`), `version` (the applied version) and `position` ("partition:offset")
-- KEYS[2]  <prefix>:offers:{<account>}          hash: trade_offer_id -> offer JSON
-- KEYS[3]  <prefix>:offers:index:{<account>}    sorted set: trade_offer_id scored in ms
-- KEYS[4]  <prefix>:friends:index:{<account>}   set: friend ids
-- KEYS[5 …]  <prefix>:friend:{<account>}:<friendId>: first one per record written (ARGV
--          order), then those of the friends the account had before and no longer has
-- ARGV[1]  the version the document was computed from (the version KEYS[1] must hold)
-- ARGV[2]  the version it brings the account to (its last event's)
-- ARGV[3]  that event's position, "partition:offset"
-- ARGV[4]  m, the number of meta strings; ARGV[5 … 4+m] every meta field (field, value …)
-- ARGV[5+m]  n, the number of offers; then n pairs trade_offer_id, offer JSON;
--          then n pairs score, trade_offer_id
-- then f, the number of records, and per record: friend id, k, k strings (field, value …)
--
-- Returns {1, version}  applied;
--         {0, held}     already applied (held >= ARGV[2]): nothing changed (a redelivery);
--         {-1, held}    stale: the account holds another version than ARGV[1].
-- #include _cas.lua
for i = 1, #KEYS, CHUNK do
  redis.call('DEL', unpack(KEYS, i, math.min(#KEYS, i + CHUNK - 1)))
end
local m = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'position', ARGV[3])
each('HSET', KEYS[1], 5, 4 + m)
local at = 6 + m
local n = tonumber(ARGV[5 + m])
each('HSET', KEYS[2], at, at + 2 * n - 1)
each('ZADD', KEYS[3], at + 2 * n, at + 4 * n - 1)
at = at + 4 * n
local f = tonumber(ARGV[at])
at = at + 1
for r = 1, f do
  local k = tonumber(ARGV[at + 1])
  each('HSET', KEYS[4 + r], at + 2, at + 1 + k)
  redis.call('SADD', KEYS[4], ARGV[at])
  at = at + 2 + k
end
return {1, tonumber(ARGV[2])}
