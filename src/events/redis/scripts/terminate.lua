local id = ARGV[5]
preflight({id})
local h = P .. 'ev:' .. id
local done, st = unended(id)
if done then return done end
if st == 'QUEUED' then
  abort(h, id, '')
  return {3, ev(id)}
end
local term = ARGV[6] == '1' and 'graceful' or 'forced'
local owner = redis.call('HGET', h, 'owner') or ''
local alive = redis.call('EXISTS', P .. 'alive:' .. owner)
-- The word first: a publish that fails (a user without the channel's right) fails the whole
-- script before anything is recorded, so the terminate answers an error and the event runs on.
if owner ~= ME and alive == 1 then redis.call(PUB, P .. 'ctl:' .. owner, term .. ' ' .. id) end
redis.call('HSET', h, 'term', term)
return {2, ev(id), owner, alive}
