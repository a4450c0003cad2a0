if not fenced() then return {'lost'} end
local f = redis.call('HMGET', KEYS[1], 'state', 'level', 'plan', 'created', 'due_at',
  'intent', 'data', 'severity', 'tp', 'title')
if (not f[1]) or f[1] == 'acknowledged' or f[1] == 'resolved' then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  return {'closed'}
end
-- The intent ("<level>:<ms>") says this level's publishing may have started at <ms>. One
-- left by a replica that died is returned (the caller recovers); else a new one is set.
local previous = ''
if f[6] then
  local lv = string.match(f[6], '^(%d+):')
  if lv and tonumber(lv) == tonumber(f[2]) then previous = f[6] end
end
if previous == '' then redis.call('HSET', KEYS[1], 'intent', f[2] .. ':' .. now) end
return {'ok', now, f[2], f[3], f[4], f[5] or '', previous, f[7], f[8], f[9] or '', f[10]}
