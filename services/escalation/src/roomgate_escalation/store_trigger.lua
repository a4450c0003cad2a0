-- KEYS: alert, timeline, dedup (or alert), due, active, counts, seen (or alert)
-- ARGV: id, data, severity, title, policy, plan, first_offset_ms, dedup_key, traceparent,
--       entry_body, timeline_max, seen_ttl_ms, max_active, expected_dedup
local has_seen = tonumber(ARGV[12]) > 0
if has_seen and redis.call('EXISTS', KEYS[7]) == 1 then
  return {'seen', redis.call('GET', KEYS[7])}
end
local has_dedup = ARGV[8] ~= ''
if has_dedup then
  local cur = redis.call('GET', KEYS[3]) or ''
  if cur ~= ARGV[14] then return {'retry', cur} end
end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'resolved' then return {'resolved', ARGV[1]} end
local max = tonumber(ARGV[11])
if state then
  redis.call('HSET', KEYS[1], 'data', ARGV[2], 'severity', ARGV[3], 'title', ARGV[4],
    'updated', now)
  redis.call('HINCRBY', KEYS[1], 'trig', 1)
  redis.call('RPUSH', KEYS[2], entry('retriggered', ARGV[10]))
  redis.call('LTRIM', KEYS[2], -max, -1)
  if has_seen then redis.call('SET', KEYS[7], ARGV[1], 'PX', ARGV[12]) end
  return {'updated', ARGV[1], redis.call('HGETALL', KEYS[1])}
end
if redis.call('ZCARD', KEYS[5]) >= tonumber(ARGV[13]) then return {'full', ''} end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'data', ARGV[2], 'severity', ARGV[3],
  'title', ARGV[4], 'policy', ARGV[5], 'plan', ARGV[6], 'state', 'triggered', 'level', 0,
  'created', now, 'updated', now, 'dedup', ARGV[8], 'trig', 1, 'tp', ARGV[9])
redis.call('RPUSH', KEYS[2], entry('triggered', ARGV[10]))
redis.call('ZADD', KEYS[5], now, ARGV[1])
redis.call('HINCRBY', KEYS[6], 'triggered', 1)
if tonumber(ARGV[7]) >= 0 then
  local due = now + tonumber(ARGV[7])
  redis.call('HSET', KEYS[1], 'due_at', due)
  redis.call('ZADD', KEYS[4], due, ARGV[1])
end
if has_dedup then redis.call('SET', KEYS[3], ARGV[1]) end
if has_seen then redis.call('SET', KEYS[7], ARGV[1], 'PX', ARGV[12]) end
return {'created', ARGV[1], redis.call('HGETALL', KEYS[1])}
