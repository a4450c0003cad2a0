-- KEYS: alert, timeline, claims, due, counts
-- ARGV: id, token, level (0-based), entry_body, timeline_max, next_due_ms|-1
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return {'lost'} end
redis.call('HDEL', KEYS[3], ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'state', 'level')
if not f[1] then
  redis.call('ZREM', KEYS[4], ARGV[1])
  return {'gone'}
end
if tonumber(f[2]) ~= tonumber(ARGV[3]) then return {'stale'} end
redis.call('HSET', KEYS[1], 'level', tonumber(ARGV[3]) + 1, 'updated', now)
redis.call('HDEL', KEYS[1], 'intent')
redis.call('RPUSH', KEYS[2], entry('escalated', ARGV[4]))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[5]), -1)
if f[1] == 'triggered' then
  redis.call('HSET', KEYS[1], 'state', 'escalated')
  redis.call('HINCRBY', KEYS[5], 'triggered', -1)
  redis.call('HINCRBY', KEYS[5], 'escalated', 1)
end
local open = f[1] == 'triggered' or f[1] == 'escalated'
if open and tonumber(ARGV[6]) >= 0 then
  redis.call('HSET', KEYS[1], 'due_at', ARGV[6])
  redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
else
  redis.call('HDEL', KEYS[1], 'due_at')
  redis.call('ZREM', KEYS[4], ARGV[1])
end
return {'ok', now}
