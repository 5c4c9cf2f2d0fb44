-- Requests spread over many workspaces and keys: a random workspace root:bench:wNNNNNNN of
-- BENCH_NWS and a random API key of BENCH_KEYS (one key per line) on every request.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

function init(args)
   keys = bearer_lines("BENCH_KEYS")
   nws = tonumber((assert(os.getenv("BENCH_NWS"), "BENCH_NWS is not set")))
   math.randomseed(1000 + tid)
   hdrs = {}
end

function request()
   hdrs["Authorization"] = keys[math.random(#keys)]
   local path = string.format("/clusters/root:bench:w%07d/api/v1/namespaces/default",
                              math.random(nws) - 1)
   return wrk.format(nil, path, hdrs)
end
