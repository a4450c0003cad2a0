-- KEYS: [1] version, [2] subjects set of the relation. ARGV: [1] key prefix of the object sets.
-- Returns {version, subject, object, subject, object, ...} from one consistent snapshot.
local out = {tonumber(redis.call('GET', KEYS[1]) or '0')}
for _, subj in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  for _, obj in ipairs(redis.call('SMEMBERS', ARGV[1] .. subj)) do
    out[#out + 1] = subj
    out[#out + 1] = obj
  end
end
return out
