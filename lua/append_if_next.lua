-- append_if_next.lua: add entries to a partition's stream only right after its top.
--
-- KEYS[1]  the partition's stream, <prefix>:log:{pNN}; the entry for log offset k
--          has the ID 0-(k+1), so IDs and offsets can never drift apart.
-- ARGV[1]  the offset of the first entry; the stream's last entry must be ARGV[1]-1
--          (no entry at all when ARGV[1] is 0).
-- ARGV[2]  n, the number of values per entry: the envelope's fields, in the order
--          of FIELDS below (data and meta as JSON strings, stored as given).
-- ARGV[3…] the entries, n values each, in offset order.
--
-- Returns {1, count}   appended;
--         {0, top}     not appended: the stream ends at offset `top` (-1 when empty),
--                      so the caller must fill the gap first (or is behind);
--         {2, top}     not appended: the stream ends at `top` but entries after it were
--                      deleted by hand, and Redis never gives a stream an ID again.
local FIELDS = {'id', 'account', 'version', 'partition', 'offset', 'type', 'ts',
                'data', 'meta', 'schema'}
local first = tonumber(ARGV[1])
local width = tonumber(ARGV[2])
local top = -1
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  top = tonumber(string.match(last[1][1], '^0%-(%d+)$')) - 1
end
if top ~= first - 1 then
  return {0, top}
end
local entry = {}
local count = 0
for i = 3, #ARGV, width do
  for j = 1, width do
    entry[2 * j - 1] = FIELDS[j]
    entry[2 * j] = ARGV[i + j - 1]
  end
  local id = '0-' .. (first + count + 1)
  if count == 0 then
    -- Only the first ID can be refused (at or below the stream's last ID), and then
    -- nothing has been added yet.
    local added = redis.pcall('XADD', KEYS[1], id, unpack(entry))
    if type(added) == 'table' and added.err then
      if string.find(added.err, 'equal or smaller', 1, true) then
        return {2, top}
      end
      return redis.error_reply(added.err)  -- anything else (out of memory, …) as it is
    end
  else
    redis.call('XADD', KEYS[1], id, unpack(entry))
  end
  count = count + 1
end
return {1, count}
