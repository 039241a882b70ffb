-- wrk script: cycles over the tile paths in $URLS (one absolute URL per line; path+query used),
-- counts non-200 answers and prints one RESULT line (req/s, p50/p90/p99/max in ms).
local urls, n = {}, 0
for line in io.lines(os.getenv("URLS")) do
  local p = line:match("^https?://[^/]+(/.*)$")
  if p then n = n + 1; urls[n] = p end
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
local i, non200 = 0, 0
function request()
  local p = urls[(i % n) + 1]
  i = i + 1
  return wrk.format("GET", p)
end
function response(status)
  if status ~= 200 then non200 = non200 + 1 end
end
function done(summary, latency)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + (t:get("non200") or 0) end
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT req=%d rps=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f non200=%d sock_err=%d\n",
    summary.requests, summary.requests / secs, latency:percentile(50) / 1000,
    latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000, bad,
    e.connect + e.read + e.write + e.timeout))
end
