purge()
local h = P .. 'ev:' .. ARGV[5]
if redis.call('HEXISTS', h, 'status') == 0 then return false end
local r = ev(ARGV[5])
local q = redis.call('HMGET', h, 'rhdr', 'rdat')
r[#r + 1] = q[1]
r[#r + 1] = q[2]
return r
