-- KEYS: alert, timeline, due, counts. ARGV: id, by, entry_body, timeline_max
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {'missing'} end
if st == 'acknowledged' or st == 'resolved' then
  return {'unchanged', st, redis.call('HGET', KEYS[1], 'pub_ack') or '1'}
end
redis.call('HSET', KEYS[1], 'state', 'acknowledged', 'ack_by', ARGV[2], 'ack_at', now,
  'updated', now, 'pub_ack', '0')
redis.call('HDEL', KEYS[1], 'due_at')
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[4], st, -1)
redis.call('HINCRBY', KEYS[4], 'acknowledged', 1)
redis.call('RPUSH', KEYS[2], entry('acknowledged', ARGV[3]))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
return {'changed', st, '0'}
