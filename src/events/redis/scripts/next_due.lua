local r = redis.call('ZRANGE', P .. 'outbox', 0, 0, 'WITHSCORES')
if r[2] then return r[2] end
return false
