-- One more event (a connect, a message) of a principal in this window.
-- KEYS[1] the window's counter; ARGV[1] its expiry in seconds.
-- Returns the count so far.
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
