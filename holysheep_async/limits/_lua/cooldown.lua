-- Pause every client of the namespace (a 429): a longer pause extends, a shorter never shortens.
--
-- KEYS: 1 cooldown (string: ends, us)
-- ARGV: 1 now in us ("" = Redis TIME), 2 seconds of pause in us
-- Returns the pause's end (us, Redis time).
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local ends = now + tonumber(ARGV[2])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current >= ends then
  return current
end
redis.call('SET', KEYS[1], string.format('%.0f', ends), 'PX', math.floor((ends - now) / 1000) + 1)
return ends
