-- A disconnect, in one round trip (a single Redis server): one connection less in each
-- count hash, and each hash this gateway no longer has a field in out of its set.
-- KEYS[1..n-1] the count hashes; KEYS[n] the gateway's set of the hashes it has a field in.
-- ARGV[1] this gateway's id.
-- store_admit.lua adds the field and the set entry together, this script removes them
-- together, so the set holds exactly the hashes with a field of this gateway whatever
-- order the gateway's pipelines reach Redis in (two disconnects sent in consecutive loop
-- turns travel on different connections and may arrive swapped).
local last = #KEYS - 1
for i = 1, last do
  if redis.call('HINCRBY', KEYS[i], ARGV[1], -1) <= 0 then
    redis.call('HDEL', KEYS[i], ARGV[1])
    redis.call('SREM', KEYS[#KEYS], KEYS[i])
  end
end
return 0
