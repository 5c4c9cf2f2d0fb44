-- One bearer token on every request: BENCH_TOKEN (an API key or a JWT).
-- BENCH_DELAY_MS > 0 makes every connection wait that long before each request
-- (the fixed-rate load of the p99 target: rate ~ connections * 1000 / (delay + latency)).
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

wrk.headers["Authorization"] = "Bearer " .. assert(os.getenv("BENCH_TOKEN"), "BENCH_TOKEN")

local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if pause > 0 then
   function delay()
      return pause
   end
end
