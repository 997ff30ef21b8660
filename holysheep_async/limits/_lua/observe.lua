-- What the server said is left of its quota (x-ratelimit-remaining-* / -reset-*).
--
-- KEYS: 1 server quota (hash: seq grants so far, rq_left, rq_until, tk_left, tk_until,
--       rq_seq / tk_seq: the grant the stored word was counted after)
-- ARGV: 1 now in us ("" = Redis TIME), 2 the observed request's grant seq,
--       3 requests left (-1: not said), 4 us until they reset, 5 tokens left (-1), 6 us until reset
-- The answer counted every request granted up to and including the observed one, and
-- perhaps none after it: those are taken off what it said is left. An older answer
-- (an earlier grant) never replaces a newer one.
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local grant = tonumber(ARGV[2])
local q = redis.call('HMGET', KEYS[1], 'seq', 'rq_seq', 'tk_seq')
local seq = tonumber(q[1] or '0')
local after = math.max(0, seq - grant)
for i, kind in ipairs({'rq', 'tk'}) do
  local left, reset = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  local stored = tonumber(q[1 + i] or '-1')
  if left >= 0 and grant >= stored then
    if kind == 'tk' then
      -- Tokens granted after the observed one are not known one by one: be safe and
      -- keep the lower of the two words while the stored one holds.
      local old = redis.call('HMGET', KEYS[1], 'tk_left', 'tk_until')
      if tonumber(old[2] or '0') > now and after > 0 then
        left = math.min(left, tonumber(old[1] or left))
      end
    else
      -- Minus one more: some servers count the request that carried the header only after
      -- answering (its "remaining" was read before it was taken).
      left = left - after - 1
    end
    redis.call('HSET', KEYS[1], kind .. '_left', string.format('%.0f', left),
      kind .. '_until', string.format('%.0f', now + reset), kind .. '_seq', tostring(grant))
  end
end
redis.call('PEXPIRE', KEYS[1], 3600000)
return seq
