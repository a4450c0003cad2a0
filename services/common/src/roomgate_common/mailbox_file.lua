-- KEYS: mailbox, messages, low. ARGV: id, bus payload, priority, cap, ttl ms, score ('' =
-- next in arrival order).
return file_in_mailbox(KEYS[1], KEYS[2], KEYS[3],
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
