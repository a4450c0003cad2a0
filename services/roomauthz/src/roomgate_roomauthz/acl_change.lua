-- KEYS: [1] version, then per change a pair (object set, subjects set).
-- ARGV: [1] channel, then per change a quadruple (op, object id, subject id, change JSON).
local n = (#KEYS - 1) / 2
local effective = {}
for i = 1, n do
  local setkey, subjkey = KEYS[2 * i], KEYS[2 * i + 1]
  local op, obj, subj, frag = ARGV[4 * i - 2], ARGV[4 * i - 1], ARGV[4 * i], ARGV[4 * i + 1]
  if op == 'add' then
    if redis.call('SADD', setkey, obj) == 1 then
      redis.call('SADD', subjkey, subj)
      effective[#effective + 1] = frag
    end
  elseif redis.call('SREM', setkey, obj) == 1 then
    if redis.call('SCARD', setkey) == 0 then
      redis.call('SREM', subjkey, subj)
    end
    effective[#effective + 1] = frag
  end
end
if #effective == 0 then
  return {tonumber(redis.call('GET', KEYS[1]) or '0'), 0}
end
local version = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1],
  '{"version": ' .. version .. ', "changes": [' .. table.concat(effective, ', ') .. ']}')
return {version, #effective}
