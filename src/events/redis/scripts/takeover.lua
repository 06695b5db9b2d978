local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', S, G)
if not ok then return 0 end
local n = 0
for _, c in ipairs(consumers) do
  local name, pending
  for k = 1, #c, 2 do
    if c[k] == 'name' then name = c[k + 1] elseif c[k] == 'pending' then pending = c[k + 1] end
  end
  if name and name ~= ME and redis.call('EXISTS', P .. 'alive:' .. name) == 0 then
    local left = pending or 0
    if left > 0 then
      for _, p in ipairs(redis.call('XPENDING', S, G, '-', '+', 100, name)) do
        redis.call('XCLAIM', S, G, ME, 0, p[1], 'JUSTID')
        reclaim(p[1])
        n = n + 1
        left = left - 1
      end
    end
    -- Its events are taken over: the dead consumer leaves the group (a live instance that
    -- was only cut off comes back as a new consumer when it reads again).
    if left <= 0 then redis.call('XGROUP', 'DELCONSUMER', S, G, name) end
  end
end
local r = redis.call('XAUTOCLAIM', S, G, ME, ARGV[5], '0-0', 'COUNT', 100, 'JUSTID')
for _, eid in ipairs(r[2]) do
  reclaim(eid)
  n = n + 1
end
return n
