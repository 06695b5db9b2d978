local id = ARGV[5]
preflight({id})
local done = unended(id)
if done then return done end
abort(P .. 'ev:' .. id, id, ARGV[6])
return {3, ev(id)}
