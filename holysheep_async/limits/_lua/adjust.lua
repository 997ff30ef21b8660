-- Correct a request's token estimate with its real usage: a charge or a refund.
--
-- KEYS: 1 tokens bucket (hash t: TAT, r: refunded so far)
-- ARGV: 1 now in us ("" = Redis TIME), 2 us per token, 3 delta tokens (> 0 charge, < 0 refund),
--       4 the bucket's TAT just after this request's pour, 5 its refunded-so-far then
-- Returns the tokens given back (a refund), as a string, or "0".
--
-- A refund gives back only what of the over-estimate is still in the bucket. The
-- level since the pour was at least the level just after it, minus what drained
-- since, minus what other refunds took out since: at most that goes back (and never
-- more than the level now). What had drained already stays spent.
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local int, delta = tonumber(ARGV[2]), tonumber(ARGV[3])
local got = redis.call('HMGET', KEYS[1], 't', 'r')
local tat = math.max(now, tonumber(got[1] or '0'))
local r = tonumber(got[2] or '0')
if delta > 0 then
  tat = tat + delta * int
  redis.call('HSET', KEYS[1], 't', string.format('%.0f', tat))
  redis.call('PEXPIRE', KEYS[1], math.floor((tat - now) / 1000) + 1000)
  return '0'
end
local poured_tat, poured_r = tonumber(ARGV[4]), tonumber(ARGV[5])
local since = math.max(0, r - poured_r)
local give = math.min(-delta, (poured_tat - now) / int - since, (tat - now) / int)
if give <= 0 then
  return '0'
end
tat = tat - give * int
redis.call('HSET', KEYS[1], 't', string.format('%.0f', tat), 'r', tostring(r + give))
redis.call('PEXPIRE', KEYS[1], math.floor((tat - now) / 1000) + 1000)
return tostring(give)
