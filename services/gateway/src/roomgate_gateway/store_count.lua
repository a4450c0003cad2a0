-- Count one connection in a cluster-wide hash (a field per gateway) unless the total is at
-- the limit. One key per script: it works in a Redis Cluster (IP and user hashes live on
-- different shards).
-- KEYS[1] the count hash; ARGV[1] this gateway's id, ARGV[2] the limit.
-- Returns 1 when refused (at the limit), 0 when counted.
local sum = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do sum = sum + tonumber(v) end
if sum >= tonumber(ARGV[2]) then return 1 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 0
