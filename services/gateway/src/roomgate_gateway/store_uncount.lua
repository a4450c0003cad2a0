-- One connection less in a count hash.
-- KEYS[1] the count hash; ARGV[1] this gateway's id.
-- Returns 1 when this gateway's field is gone (its count reached zero).
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
