-- _cas.lua: the opening every apply script includes (`-- #include _cas.lua`):
-- compare-and-set of the account's version, and a chunked variadic call.
--
-- KEYS[1]  <prefix>:meta:{<account>}  hash holding `version`, the applied version
-- ARGV[1]  the version the change was computed from (the version KEYS[1] must hold)
-- ARGV[2]  the version it brings the account to
--
-- Returns (from the including script) {0, held} when already applied (a redelivery)
-- and {-1, held} when stale; otherwise falls through with `held`, CHUNK and each().
local held = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if held >= tonumber(ARGV[2]) then
  return {0, held}
end
if held ~= tonumber(ARGV[1]) then
  return {-1, held}
end
-- unpack is bounded by the Lua C stack: long key and argument runs go in chunks.
local CHUNK = 2000
local function each(command, key, from, to)
  for i = from, to, CHUNK do
    redis.call(command, key, unpack(ARGV, i, math.min(to, i + CHUNK - 1)))
  end
end
