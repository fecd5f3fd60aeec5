-- One script for every scenario: method, body file and headers come from the environment
-- (BENCH_METHOD, BENCH_BODY_FILE, BENCH_CONTENT_TYPE, BENCH_ACCEPT), and done() prints one
-- machine-readable line that benchmarks/wrk.py parses. No response() hook unless
-- BENCH_STATUSES=1 (the overload scenarios, which need each status counted): it makes wrk
-- parse every answer in Lua and slows the load generator down.
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

-- More headers, one "Name: value" per line (an OIP binary body's JSON header length).
local extra = os.getenv("BENCH_HEADERS")
if extra ~= nil and extra ~= "" then
  for line in extra:gmatch("[^\n]+") do
    local name, value = line:match("^([^:]+):%s*(.*)$")
    wrk.headers[name] = value
  end
end

local threads = {}
local count_statuses = os.getenv("BENCH_STATUSES") == "1"

if count_statuses then
  function setup(thread)
    table.insert(threads, thread)
  end

  -- Per thread (each has its own Lua state): answers by status, and 503s with Retry-After.
  statuses = {}
  retry_after = 0

  function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
    if status == 503 and headers["retry-after"] ~= nil then
      retry_after = retry_after + 1
    end
  end
end

local function status_json()
  local counts, with_retry = {}, 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
    with_retry = with_retry + thread:get("retry_after")
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  return string.format(',"statuses":{%s},"retry_after":%d', table.concat(parts, ","), with_retry)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"latency_mean_us":%.1f,"latency_max_us":%.1f,' ..
    '"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"timeout_errors":%d,"status_errors":%d%s}\n',
    summary.requests, summary.duration, summary.bytes,
    latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    e.connect, e.read, e.write, e.timeout, e.status,
    count_statuses and status_json() or ""))
end
