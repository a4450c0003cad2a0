-- KEYS[1] alert, KEYS[2] claims, KEYS[3] due; ARGV[1] id, ARGV[2] token, ARGV[3] margin_ms
local function fenced()
  if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return false end
  local score = redis.call('ZSCORE', KEYS[3], ARGV[1])
  return score and (tonumber(score) - now >= tonumber(ARGV[3]))
end
