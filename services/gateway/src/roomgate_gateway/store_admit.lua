-- A connect, in one round trip (a single Redis server).
-- KEYS[1] the principal's connect counter of this minute; KEYS[2..n-1] the count hashes;
-- KEYS[n] the gateway's set of the hashes it has a field in.
-- ARGV[1] this gateway's id; ARGV[2] the connects allowed per minute; ARGV[3..] each
-- hash's limit.
-- Returns -1 beyond the connect rate; the index (0-based) of the first hash at its limit;
-- -2 when counted in every hash (and the hashes remembered in KEYS[n]).
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], 120) end
if n > tonumber(ARGV[2]) then return -1 end
local last = #KEYS - 1
for i = 2, last do
  local sum = 0
  for _, v in ipairs(redis.call('HVALS', KEYS[i])) do sum = sum + tonumber(v) end
  if sum >= tonumber(ARGV[i + 1]) then return i - 2 end
end
for i = 2, last do
  redis.call('HINCRBY', KEYS[i], ARGV[1], 1)
  redis.call('SADD', KEYS[#KEYS], KEYS[i])
end
return -2
