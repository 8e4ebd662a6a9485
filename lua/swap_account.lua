-- swap_account.lua: put an account's rebuilt copy (built under a fresh key prefix) in
-- place of its live copy, in one step, so a reader sees either copy whole, never a mix.
--
-- Both copies share the account's hash tag {<account>}, so all these keys are in one
-- slot. n = ARGV[2] live friend hashes, m = ARGV[3] rebuilt friend hashes (m <= n: the
-- live names of the rebuilt friends come first among the live friend keys).
-- KEYS[1..4]        live  <prefix>:meta:{a}, offers:{a}, offers:index:{a}, friends:index:{a}
-- KEYS[5..8]        fresh <fresh>:meta:{a}, offers:{a}, offers:index:{a}, friends:index:{a}
-- KEYS[9 … 8+n]     live  <prefix>:friend:{a}:<id>: the rebuilt friends' names, then the
--                   live copy's other friends (deleted)
-- KEYS[9+n … 8+n+m] fresh <fresh>:friend:{a}:<id>, in the order of the first m above
-- ARGV[1]  v, the rebuilt copy's version (KEYS[5] must hold it)
--
-- Returns {1, held}  swapped (the live copy held `held` <= v: a projector that is behind
--                    finds the account ahead and skips what it already holds);
--         {0, held}  not swapped: the live copy moved past v, or the fresh copy is not at
--                    v; catch the fresh copy up and try again.
local v = tonumber(ARGV[1])
local held = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
local fresh = tonumber(redis.call('HGET', KEYS[5], 'version') or '-1')
if held > v or fresh ~= v then
  return {0, held}
end
local n = tonumber(ARGV[2])
local m = tonumber(ARGV[3])
for i = 1, 4 do
  redis.call('DEL', KEYS[i])
end
for i = 9, 8 + n do
  redis.call('DEL', KEYS[i])
end
for i = 1, 4 do
  if redis.call('EXISTS', KEYS[4 + i]) == 1 then
    redis.call('RENAME', KEYS[4 + i], KEYS[i])
  end
end
for j = 1, m do
  redis.call('RENAME', KEYS[8 + n + j], KEYS[8 + j])
end
return {1, held}
