-- Runs after mailbox_function.lua (file_in_mailbox).
-- KEYS: history stream, room meta, then for a user room: mailbox, messages, low.
-- ARGV: envelope JSON, history max messages, new epoch (used when the room has none),
--       channel, publish command (PUBLISH or SPUBLISH), history max age ms, envelope id,
--       priority, mailbox cap, mailbox ttl ms.
-- Returns {offset, epoch, evicted}.
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[3]
  redis.call('HSET', KEYS[2], 'epoch', epoch)
end
local offset = redis.call('HINCRBY', KEYS[2], 'offset', 1)
local maxlen = tonumber(ARGV[2])
local max_age = tonumber(ARGV[6])
if maxlen > 0 then
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, offset .. '-1', 'm', ARGV[1], 't', now_ms)
  if max_age > 0 then
    -- Age bound: drop expired entries from the head (a few per publish), and let an idle
    -- room's whole history expire.
    local cutoff = now_ms - max_age
    local last_old = nil
    for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 16)) do
      if tonumber(entry[2][4]) >= cutoff then break end
      last_old = entry[1]
    end
    if last_old then
      local old_offset = tonumber(string.match(last_old, '^(%d+)'))
      redis.call('XTRIM', KEYS[1], 'MINID', (old_offset + 1) .. '-0')
    end
    redis.call('PEXPIRE', KEYS[1], max_age)
  end
end
local evicted = 0
if #KEYS >= 5 then
  -- A user room: file the message in the user's mailbox until acknowledged.
  evicted = file_in_mailbox(KEYS[3], KEYS[4], KEYS[5], ARGV[7],
    offset .. ' ' .. epoch .. ' ' .. ARGV[1], ARGV[8], ARGV[9], ARGV[10], '')
end
redis.call(ARGV[5], ARGV[4], offset .. ' ' .. epoch .. ' ' .. ARGV[1])
return {offset, epoch, evicted}
