-- Give back concurrency leases and renew the ones still held, in one call.
--
-- KEYS: 1 leases (zset id -> expiry)
-- ARGV: 1 now in us ("" = Redis TIME), 2 lease ttl us, 3 how many ids to release, then the
--       ids to release, then the ids to renew
-- A renewed lease is written back even when it had gone (Redis restarted or was
-- flushed): the slot is in use, so the fleet must count it.
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local ttl, n = tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 4, 3 + n do
  redis.call('ZREM', KEYS[1], ARGV[i])
end
local expiry = string.format('%.0f', now + ttl)
local renewed = 0
for i = 4 + n, #ARGV do
  redis.call('ZADD', KEYS[1], expiry, ARGV[i])
  renewed = renewed + 1
end
if renewed > 0 then
  redis.call('PEXPIRE', KEYS[1], math.floor(ttl / 1000) + 1000)
end
return renewed
