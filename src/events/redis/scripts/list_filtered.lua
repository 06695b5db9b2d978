purge()
local statuses, since, untl, order = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local offset, limit, rid, prefix = tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11], ARGV[12]
local fname, qual, itype = ARGV[13], ARGV[14], ARGV[15]
local ss, su = tonumber(ARGV[16]), tonumber(ARGV[17])
local es, eu = tonumber(ARGV[18]), tonumber(ARGV[19])
local by = ARGV[20]
local wanted = {}
for s in string.gmatch(statuses, '[^,]+') do wanted[#wanted + 1] = s end
local min = since ~= '' and (since .. '000') or '-inf'
local max = untl ~= '' and ('(' .. untl .. '000') or '+inf'
local keys = {}
if #wanted == 0 then keys[1] = P .. 'all' end
for _, s in ipairs(wanted) do keys[#keys + 1] = P .. 'st:' .. s end
local rows = {}
for _, k in ipairs(keys) do
  local ids = redis.call('ZRANGEBYSCORE', k, min, max, 'WITHSCORES')
  for j = 1, #ids, 2 do
    local id = ids[j]
    local f = redis.call('HMGET', P .. 'ev:' .. id, 'status', 'fn', 'qual', 'start', 'end')
    local st, en = tonumber(f[4]), tonumber(f[5])
    local ok = f[1] ~= false
      and (rid == '' or id == rid)
      and (prefix == '' or string.sub(id, 1, #prefix) == prefix)
      and (fname == '' or (f[2] or '') == fname)
      and (qual == '' or (f[3] or 'LATEST') == qual)
      and (itype == '' or itype == 'Async')
      and (not ss or (st ~= nil and st >= ss)) and (not su or (st ~= nil and st < su))
      and (not es or (en ~= nil and en >= es)) and (not eu or (en ~= nil and en < eu))
    if ok then
      local score = tonumber(ids[j + 1])
      local t = score
      if by == 'start' then t = st elseif by == 'end' then t = en end
      rows[#rows + 1] = {id, t or false, score}
    end
  end
end
-- As SQLite's ORDER BY: events without the time ordered by come last, either way.
table.sort(rows, function(a, b)
  if (a[2] == false) ~= (b[2] == false) then return b[2] == false end
  if a[2] ~= false and a[2] ~= b[2] then
    if order == 'asc' then return a[2] < b[2] end
    return a[2] > b[2]
  end
  if order == 'asc' then return a[3] < b[3] end
  return a[3] > b[3]
end)
local out = {#rows}
for j = offset + 1, math.min(offset + limit, #rows) do out[#out + 1] = ev(rows[j][1]) end
return out
