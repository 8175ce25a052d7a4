-- wrk script for the Postbox benchmark (bench/run.ts passes the arguments).
--
--   wrk ... -s bench/wrk/scenario.lua http://127.0.0.1:PORT -- METHOD PATH
--
-- GET sends the same request every time (built once). POST sends a distinct JSON message
-- per request, so a server cannot answer from a cache or collapse duplicates, with senders
-- and recipients spread over many users as real traffic is.
-- At the end, one line starting with BENCH_RESULT carries the figures as JSON for the
-- harness, in microseconds, so nothing depends on wrk's human-readable units.

local thread_index = 0

function setup(thread)
  thread:set("thread_id", thread_index)
  thread_index = thread_index + 1
end

local method, path, fixed, headers
local counter = 0

function init(args)
  method = args[1] or "GET"
  path = args[2] or "/"
  if method == "POST" then
    headers = { ["Content-Type"] = "application/json" }
  else
    fixed = wrk.format(method, path)
  end
end

function request()
  if fixed then
    return fixed
  end
  counter = counter + 1
  -- thread_id is set by setup(); each thread numbers its own messages.
  local n = (thread_id or 0) * 1000000000 + counter
  local body = string.format(
    '{"fromUser":"sender%d","toUser":"recipient%d","message":"benchmark message %d: the quick brown fox jumps over the dog"}',
    n % 50, n % 100, n)
  return wrk.format(method, path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"durationUs":%d,"bytes":%d,"connectErrors":%d,"readErrors":%d,' ..
    '"writeErrors":%d,"statusErrors":%d,"timeouts":%d,"p50Us":%d,"p90Us":%d,"p99Us":%d,"maxUs":%d,"meanUs":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
