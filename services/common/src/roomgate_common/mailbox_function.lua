-- file_in_mailbox, shared by mailbox_file.lua and the publish script (publisher_publish.lua):
-- files one message and evicts to the cap (oldest low first, then oldest). Returns how many
-- were evicted. The two field names below are roomgate_common.mailbox's constants, put in
-- by load_lua.
local EVICTED_FIELD = '$EVICTED_FIELD'
local SEQUENCE_FIELD = '$SEQUENCE_FIELD'
local function file_in_mailbox(box, msgs, low, id, payload, priority, cap, ttl_ms, score)
  if score == '' then
    -- Arrival order: a per-mailbox sequence (two messages in one millisecond stay ordered).
    score = redis.call('HINCRBY', msgs, SEQUENCE_FIELD, 1)
  end
  redis.call('ZADD', box, score, id)
  redis.call('HSET', msgs, id, payload)
  if priority == 'low' then redis.call('ZADD', low, score, id) end
  local evicted = 0
  while redis.call('ZCARD', box) > tonumber(cap) do
    local victim = redis.call('ZRANGE', low, 0, 0)[1] or redis.call('ZRANGE', box, 0, 0)[1]
    redis.call('ZREM', box, victim)
    redis.call('ZREM', low, victim)
    redis.call('HDEL', msgs, victim)
    evicted = evicted + 1
  end
  if evicted > 0 then redis.call('HINCRBY', msgs, EVICTED_FIELD, evicted) end
  redis.call('PEXPIRE', box, ttl_ms)
  redis.call('PEXPIRE', msgs, ttl_ms)
  redis.call('PEXPIRE', low, ttl_ms)
  return evicted
end
