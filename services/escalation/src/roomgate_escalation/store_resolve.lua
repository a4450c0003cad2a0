-- KEYS: alert, timeline, due, counts, active, dedup (or alert), claims
-- ARGV: id, by, entry_body, timeline_max, retention_s
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {'missing'} end
if st == 'resolved' then
  return {'unchanged', st, redis.call('HGET', KEYS[1], 'pub_res') or '1'}
end
redis.call('HSET', KEYS[1], 'state', 'resolved', 'res_by', ARGV[2], 'res_at', now,
  'updated', now, 'pub_res', '0')
redis.call('HDEL', KEYS[1], 'due_at')
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('HINCRBY', KEYS[4], st, -1)
redis.call('RPUSH', KEYS[2], entry('resolved', ARGV[3]))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
if KEYS[6] ~= KEYS[1] and redis.call('GET', KEYS[6]) == ARGV[1] then
  redis.call('DEL', KEYS[6])
end
redis.call('HDEL', KEYS[7], ARGV[1])
return {'changed', st, '0'}
