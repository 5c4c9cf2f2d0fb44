-- A distinct bearer token per request, from a pre-minted pool (BENCH_TOKENS, one per line).
-- Thread t of n walks its own slice of the pool starting at BENCH_OFFSET + t * size / n, so
-- no token repeats within a run unless a thread sends more than size / n requests (the run
-- reports "wrapped" then); successive runs start at different offsets.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

function init(args)
   tokens = bearer_lines("BENCH_TOKENS")
   size = #tokens
   local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
   first = (tonumber(os.getenv("BENCH_OFFSET") or "0") + tid * math.floor(size / nthreads)) % size
   sent = 0
   hdrs = {}
end

function request()
   hdrs["Authorization"] = tokens[(first + sent) % size + 1]
   sent = sent + 1
   return wrk.format(nil, nil, hdrs)
end

-- a thread that used more than its slice reused tokens (cache hits): say so
local base_done = done
function done(summary, latency, requests)
   for _, t in ipairs(threads) do
      local sent, size = t:get("sent") or 0, t:get("size") or 1
      if sent > size / #threads then
         io.write("BENCHWRAP " .. sent .. "\n")
      end
   end
   base_done(summary, latency, requests)
end
