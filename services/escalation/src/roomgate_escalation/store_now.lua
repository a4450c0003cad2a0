-- The prelude of every store script but release: `now` (ms, Redis's clock) and
-- entry(event, body), a timeline entry stamped with it.
local _t = redis.call('TIME')
local now = tonumber(_t[1]) * 1000 + math.floor(tonumber(_t[2]) / 1000)
local function entry(event, body)
  return '{"at":' .. now .. ',"event":"' .. event .. '",' .. string.sub(body, 2)
end
