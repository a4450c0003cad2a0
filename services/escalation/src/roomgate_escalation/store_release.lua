-- KEYS: claims, due, alert. ARGV: id, token. The timer is due again at once.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local due = redis.call('HGET', KEYS[3], 'due_at')
if due and due ~= '' then
  redis.call('ZADD', KEYS[2], due, ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 1
