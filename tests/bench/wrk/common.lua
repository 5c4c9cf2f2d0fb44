-- Shared by the benchmark's wrk scripts (loaded with dofile): at the end of a run, one
-- machine-readable line "BENCHJSON {...}" that tests/bench/run collects.
-- Latencies are wrk's (microseconds, from writing a request to reading its response).
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
      '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
      '"mean_us":%.1f,"max_us":%d}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
      e.status, e.timeout, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.mean, latency.max))
end

-- Thread numbering for scripts that slice a shared input per thread: each thread sees its
-- index (0-based) as the global "tid" in init(); done() can read them back from "threads".
threads = {}

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

-- The non-empty lines of the file named by environment variable VAR, each as "Bearer <line>".
function bearer_lines(var)
   local out = {}
   for line in io.lines((assert(os.getenv(var), var .. " is not set"))) do
      if #line > 0 then
         out[#out + 1] = "Bearer " .. line
      end
   end
   return out
end
