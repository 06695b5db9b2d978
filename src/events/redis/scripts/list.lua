purge()
local statuses, since, untl, order = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local offset, limit, rid = tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11]
local wanted = {}
for s in string.gmatch(statuses, '[^,]+') do wanted[#wanted + 1] = s end
if rid ~= '' then
  local f = redis.call('HMGET', P .. 'ev:' .. rid, 'status', 'submit')
  local st, submit = f[1], tonumber(f[2])
  local match = st and (#wanted == 0)
  for _, s in ipairs(wanted) do if s == st then match = true end end
  if match and since ~= '' and submit < tonumber(since) then match = false end
  if match and untl ~= '' and submit >= tonumber(untl) then match = false end
  if not match then return {0} end
  if offset > 0 or limit == 0 then return {1} end
  return {1, ev(rid)}
end
local min = since ~= '' and (since .. '000') or '-inf'
local max = untl ~= '' and ('(' .. untl .. '000') or '+inf'
local keys = {}
if #wanted == 0 then keys[1] = P .. 'all' end
for _, s in ipairs(wanted) do keys[#keys + 1] = P .. 'st:' .. s end
local total, page = 0, {}
for _, k in ipairs(keys) do
  total = total + redis.call('ZCOUNT', k, min, max)
  if limit > 0 then
    local r
    if order == 'asc' then
      r = redis.call('ZRANGEBYSCORE', k, min, max, 'WITHSCORES', 'LIMIT', 0, offset + limit)
    else
      r = redis.call('ZREVRANGEBYSCORE', k, max, min, 'WITHSCORES', 'LIMIT', 0, offset + limit)
    end
    for j = 1, #r, 2 do page[#page + 1] = {r[j], tonumber(r[j + 1])} end
  end
end
if #keys > 1 then
  table.sort(page, function(a, b)
    if order == 'asc' then return a[2] < b[2] end
    return a[2] > b[2]
  end)
end
local out = {total}
for j = offset + 1, math.min(offset + limit, #page) do
  local e = ev(page[j][1])
  -- A hash that expired with its queue unused; the indexes forget it on the next purge.
  if e[2] then out[#out + 1] = e end
end
return out
