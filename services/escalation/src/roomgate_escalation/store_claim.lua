-- KEYS: due, claims. ARGV: owner, lease_ms, batch. Returns {now, next_due|-1, id, token...}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local out = {now, -1}
for i, id in ipairs(ids) do
  local token = ARGV[1] .. ':' .. now .. ':' .. i
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
  redis.call('HSET', KEYS[2], id, token)
  out[#out + 1] = id
  out[#out + 1] = token
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if nxt[2] then out[2] = tonumber(nxt[2]) end
return out
