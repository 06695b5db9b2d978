purge()
if redis.call('HEXISTS', P .. 'ev:' .. ARGV[5], 'status') == 0 then return false end
return ev(ARGV[5])
