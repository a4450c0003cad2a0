-- A disconnect, in one round trip (a single Redis server): one connection less in each
-- count hash, and each hash whose field this gateway no longer needs out of its set.
-- KEYS[1..n-1] the count hashes; KEYS[n] the gateway's set of the hashes it has a field in.
-- ARGV[1] this gateway's id; ARGV[2..n] per hash, 1 when no other local connection counts
-- in it (the gateway's reference count reached zero before this call), else 0.
-- A connect of this gateway counted in a hash concurrently re-adds it to the set (its
-- store_admit.lua does SADD), so the order of the two scripts does not matter.
local last = #KEYS - 1
for i = 1, last do
  if redis.call('HINCRBY', KEYS[i], ARGV[1], -1) <= 0 then
    redis.call('HDEL', KEYS[i], ARGV[1])
    if ARGV[i + 1] == '1' then redis.call('SREM', KEYS[#KEYS], KEYS[i]) end
  end
end
return 0
