-- wrk script for the Postbox benchmark (bench/run.ts passes the arguments).
--
--   wrk ... -s bench/wrk/scenario.lua http://127.0.0.1:PORT -- METHOD PATH [READ_PATH]
--
-- GET sends the same request every time (built once). POST sends a distinct JSON message
-- per request, so a server cannot answer from a cache or collapse duplicates, with senders
-- and recipients spread over many users as real traffic is.
--
-- With READ_PATH (the chat mix), each connection alternates: a send, then a GET of READ_PATH
-- with "{user}" replaced by that send's recipient (read from the send's answer, so the read
-- always comes after the answer and must show the message), then a send again, and so on.
-- wrk's callbacks do not say which connection they serve, but on one thread it asks for a
-- connection's next request after that connection's answer, and in the order the answers
-- came: so response() queues what should follow each answer (a read after a 201, a send
-- after anything else) and request() takes the oldest. A connection's first request is a
-- send. Measured against a server that logs each connection's requests, every read followed
-- a send to the same user on the same connection; were the order ever to differ, a read
-- would still follow an answered send, and sends and reads stay one to one.
--
-- At the end, one line starting with BENCH_RESULT carries the figures as JSON for the
-- harness, in microseconds, so nothing depends on wrk's human-readable units; in a mix it
-- also counts the answered sends and reads.

local thread_index = 0
-- Every thread, to read their counters in done() (which runs in wrk's main Lua state).
local threads = {}

function setup(thread)
  thread:set("thread_id", thread_index)
  thread_index = thread_index + 1
  table.insert(threads, thread)
end

local method, path, fixed, headers
local counter = 0
-- The chat mix: the read path around the recipient, and what follows each answer not yet
-- taken by a request, oldest first: a recipient to read, or false for a send.
local read_prefix, read_suffix
local queue, first, last = {}, 1, 0

-- Answers of each kind in a mix; globals, so done() can read them with thread:get().
chat_sends, chat_reads = nil, nil

local function chat_response(status, headers, body)
  local next_read = false
  if status == 201 then
    chat_sends = chat_sends + 1
    -- The answer is the stored Message; its recipient is the page to read next.
    next_read = string.match(body, '"toUser":"([^"]*)"') or false
  elseif status == 200 then
    chat_reads = chat_reads + 1
  end
  last = last + 1
  queue[last] = next_read
end

function init(args)
  method = args[1] or "GET"
  path = args[2] or "/"
  if method == "POST" then
    headers = { ["Content-Type"] = "application/json" }
  else
    fixed = wrk.format(method, path)
  end
  if args[3] then
    local at = string.find(args[3], "{user}", 1, true)
    if not at then
      error("the read path must contain {user}: " .. args[3])
    end
    read_prefix = string.sub(args[3], 1, at - 1)
    read_suffix = string.sub(args[3], at + 6)
    chat_sends, chat_reads = 0, 0
    -- Defined only in a mix: with a response() function wrk hands every answer's headers and
    -- body to Lua, which costs wrk CPU the single-request scenarios should not pay.
    response = chat_response
  end
end

function request()
  if fixed then
    return fixed
  end
  if first <= last then
    local user = queue[first]
    queue[first] = nil
    first = first + 1
    if user then
      return wrk.format("GET", read_prefix .. user .. read_suffix)
    end
  end
  counter = counter + 1
  -- thread_id is set by setup(); each thread numbers its own messages.
  local n = (thread_id or 0) * 1000000000 + counter
  -- 50 senders, 100 recipients: bench/lib/scenarios.ts prefills the chat mix's recipients to match.
  local body = string.format(
    '{"fromUser":"sender%d","toUser":"recipient%d","message":"benchmark message %d: the quick brown fox jumps over the dog"}',
    n % 50, n % 100, n)
  return wrk.format(method, path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  local mix = ""
  if threads[1] and threads[1]:get("chat_sends") then
    local sends, reads = 0, 0
    for _, t in ipairs(threads) do
      sends = sends + t:get("chat_sends")
      reads = reads + t:get("chat_reads")
    end
    mix = string.format(',"mix":{"sends":%d,"reads":%d}', sends, reads)
  end
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"durationUs":%d,"bytes":%d,"connectErrors":%d,"readErrors":%d,' ..
    '"writeErrors":%d,"statusErrors":%d,"timeouts":%d,"p50Us":%d,"p90Us":%d,"p99Us":%d,"maxUs":%d,"meanUs":%.1f%s}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean, mix))
end
