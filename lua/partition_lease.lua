-- partition_lease.lua: take, renew or release a consumer's lease on one partition.
--
-- While the Redis projector's consumer group spreads a stream's entries, the lease
-- makes one consumer read each partition at a time, so an account's events are
-- applied in order without waiting on each other (the version compare-and-set
-- still keeps a lagging former holder from doing harm).
--
-- KEYS[1]  <prefix>:lease:{pNN}  string: the holding consumer's name, with a TTL
-- ARGV[1]  the consumer's name
-- ARGV[2]  the lease time in ms; 0 releases the lease if this consumer holds it
--
-- Returns 2  taken (it was free);
--         1  renewed (this consumer held it);
--         3  released;
--         0  held by another consumer (nothing changed).
local holder = redis.call('GET', KEYS[1])
if ARGV[2] == '0' then
  if holder == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return 3
  end
  return 0
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
