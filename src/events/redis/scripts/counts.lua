purge()
local out = {}
for _, s in ipairs({'QUEUED', 'RUNNING', 'FINISHED', 'FAILED', 'ABORTED', 'EXPIRED'}) do
  out[#out + 1] = redis.call('ZCARD', P .. 'st:' .. s)
end
return out
