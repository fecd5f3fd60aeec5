-- One script for every scenario: method, body file and headers come from the environment
-- (BENCH_METHOD, BENCH_BODY_FILE, BENCH_CONTENT_TYPE, BENCH_ACCEPT), and done() prints one
-- machine-readable line that benchmarks/wrk.py parses. No response() hook on purpose: it
-- would make wrk parse every answer in Lua and slow the load generator down.
-- "status_errors" is wrk's count of answers with status >= 400 (our non-2xx figure).

wrk.method = os.getenv("BENCH_METHOD") or "GET"

local body_file = os.getenv("BENCH_BODY_FILE")
if body_file ~= nil and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
end

local content_type = os.getenv("BENCH_CONTENT_TYPE")
if content_type ~= nil and content_type ~= "" then
  wrk.headers["Content-Type"] = content_type
end

local accept = os.getenv("BENCH_ACCEPT")
if accept ~= nil and accept ~= "" then
  wrk.headers["Accept"] = accept
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"latency_mean_us":%.1f,"latency_max_us":%.1f,' ..
    '"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"timeout_errors":%d,"status_errors":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    e.connect, e.read, e.write, e.timeout, e.status))
end
