local id = ARGV[5]
local h = P .. 'ev:' .. id
preflight({id})
if redis.call('HGET', h, 'dst') ~= 'pending' then return 0 end
redis.call('HINCRBY', h, 'datt', 1)
if ARGV[6] == 'pending' then
  redis.call('ZADD', P .. 'outbox', tonumber(ARGV[7]), id)
else
  redis.call('HSET', h, 'dst', ARGV[6])
  redis.call('HDEL', h, 'dpay')
  redis.call('ZREM', P .. 'outbox', id)
  -- Back under the retention, counted from the event's end as any other.
  redis.call('ZADD', P .. 'ended', tonumber(redis.call('HGET', h, 'end')) or NOW, id)
  redis.call('PEXPIREAT', h, NOW + TTL)
end
return 1
