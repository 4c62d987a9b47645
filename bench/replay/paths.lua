-- wrk script for bench/replay.sh: GET /item/0 .. /item/(N-1) round-robin,
-- N the first script argument (wrk ... -s paths.lua URL -- N). The
-- requests are formatted once, in init, so the script costs wrk the same
-- for N = 1 as for N = 10000.
local reqs, n, i = {}, 1, 0

function init(args)
	n = tonumber(args[1]) or 1
	for k = 0, n - 1 do
		reqs[k + 1] = wrk.format("GET", "/item/" .. k)
	end
	-- Each thread starts somewhere else, so several threads do not walk
	-- the paths in step.
	i = math.random(n) - 1
end

function request()
	i = i % n + 1
	return reqs[i]
end
