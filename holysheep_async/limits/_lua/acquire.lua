-- Grant waiting requests their permits from the shared limits, atomically, first come first
-- served: the longest run of them that fits now; for the first that does not, how long to wait.
--
-- GCRA (the leaky bucket in one number per bucket): a bucket keeps its
-- "theoretical arrival time" TAT, the moment it will be empty. Its level now is
-- (TAT - now) / interval; an amount fits while level + amount <= capacity (an amount
-- larger than the bucket waits for an empty bucket, then overdraws it).
--
-- KEYS: 1 requests bucket (hash t), 2 tokens bucket (hash t, r), 3 leases (zset id -> expiry),
--       4 cooldown (string: its end), 5 server quota (hash, see observe.lua)
-- ARGV: 1 now in us ("" = Redis TIME), 2 us per request (0: no rpm), 3 request capacity,
--       4 unused, 5 us per token (0: no tpm), 6 token capacity, 7 max concurrency (0: off),
--       8 unused, 9 lease ttl us, 10 skip a cooldown ending at or before this (us, 0: none),
--       11 learn the server's quota (1/0), then per waiter: its tokens, its lease id
-- Returns {code, wait us, now, then per granted waiter: tokens TAT after its pour, tokens
-- refunded so far, grant seq}. code for the first waiter not granted: 0 all granted,
-- 1 cooldown, 2 rate, 3 concurrency, 4 server quota.
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local rq_int, rq_cap = tonumber(ARGV[2]), tonumber(ARGV[3])
local tk_int, tk_cap = tonumber(ARGV[5]), tonumber(ARGV[6])
local max_conc, ttl = tonumber(ARGV[7]), tonumber(ARGV[9])
local skip, learn = tonumber(ARGV[10]), ARGV[11] == '1'

local ends = tonumber(redis.call('GET', KEYS[4]) or '0')
if ends > now and ends > skip then
  return {1, ends - now, now}
end

local count = 0
if max_conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  count = redis.call('ZCARD', KEYS[3])
end
local rq_tat = now
if rq_int > 0 then
  rq_tat = math.max(now, tonumber(redis.call('HGET', KEYS[1], 't') or '0'))
end
local tk_tat, tk_r = now, 0
if tk_int > 0 then
  local got = redis.call('HMGET', KEYS[2], 't', 'r')
  tk_tat = math.max(now, tonumber(got[1] or '0'))
  tk_r = tonumber(got[2] or '0')
end
local seq, rq_left, rq_until, tk_left, tk_until = 0, 1, 0, 0, 0
if learn then
  local q = redis.call('HMGET', KEYS[5], 'seq', 'rq_left', 'rq_until', 'tk_left', 'tk_until')
  seq = tonumber(q[1] or '0')
  rq_left, rq_until = tonumber(q[2] or '1'), tonumber(q[3] or '0')
  tk_left, tk_until = tonumber(q[4] or '0'), tonumber(q[5] or '0')
end

-- How long until `amount` fits a bucket of TAT `tat` (0: now).
local function wait_for(tat, amount, int, cap)
  local room = math.max(0, cap - amount) * int
  return math.max(0, (tat - now) - room)
end

local out = {0, 0, now}
local granted = 0
for i = 12, #ARGV, 2 do
  local tokens, lease = tonumber(ARGV[i]), ARGV[i + 1]
  local code, wait = 0, 0
  if max_conc > 0 and count >= max_conc then
    local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    code, wait = 3, (first[2] and tonumber(first[2]) - now or 0)
  else
    if rq_int > 0 then wait = wait_for(rq_tat, 1, rq_int, rq_cap) end
    if tk_int > 0 and tokens > 0 then
      wait = math.max(wait, wait_for(tk_tat, tokens, tk_int, tk_cap))
    end
    if wait > 0 then
      code = 2
    elseif learn then
      -- The server's own word (observe.lua): no more than it said was left until it resets.
      local blocked = 0
      if rq_until > now and rq_left < 1 then blocked = rq_until - now end
      if tokens > 0 and tk_until > now and tk_left < tokens then
        blocked = math.max(blocked, tk_until - now)
      end
      if blocked > 0 then code, wait = 4, blocked end
    end
  end
  if code ~= 0 then
    out[1], out[2] = code, wait
    break
  end
  -- It fits: take it all at once.
  if rq_int > 0 then rq_tat = rq_tat + rq_int end
  if tk_int > 0 and tokens > 0 then tk_tat = tk_tat + tokens * tk_int end
  if max_conc > 0 then
    redis.call('ZADD', KEYS[3], string.format('%.0f', now + ttl), lease)
    count = count + 1
  end
  if learn then
    seq = seq + 1
    if rq_until > now then rq_left = rq_left - 1 end
    if tokens > 0 and tk_until > now then tk_left = tk_left - tokens end
  end
  out[#out + 1] = string.format('%.0f', tk_tat)
  out[#out + 1] = tostring(tk_r)
  out[#out + 1] = seq
  granted = granted + 1
end

-- Write back what was taken. Keys live until their bucket would be empty.
if granted > 0 then
  if rq_int > 0 then
    redis.call('HSET', KEYS[1], 't', string.format('%.0f', rq_tat))
    redis.call('PEXPIRE', KEYS[1], math.floor((rq_tat - now) / 1000) + 1000)
  end
  if tk_int > 0 and tk_tat > now then
    redis.call('HSET', KEYS[2], 't', string.format('%.0f', tk_tat))
    redis.call('PEXPIRE', KEYS[2], math.floor((tk_tat - now) / 1000) + 1000)
  end
  if max_conc > 0 then
    redis.call('PEXPIRE', KEYS[3], math.floor(ttl / 1000) + 1000)
  end
  if learn then
    redis.call('HSET', KEYS[5], 'seq', string.format('%.0f', seq),
      'rq_left', string.format('%.0f', rq_left), 'tk_left', string.format('%.0f', tk_left))
    redis.call('PEXPIRE', KEYS[5], 3600000)
  end
end
return out
