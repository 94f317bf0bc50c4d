-- wrk script of `make bench` (bench/wrk.py): cycles a fixed list of prepared requests.
--
-- MLC_WRK_REQUESTS names a Lua file returning { {path, token, body}, ... } (written by bench/wrk.py).
-- Every request is formatted once in init(), so a request costs wrk a table lookup. Each thread starts
-- at its own place in the list. response() counts non-200 answers and answers holding "errors"; done()
-- prints one line, MLC_WRK_RESULT {json}, that bench/wrk.py reads.

local requests_file = os.getenv("MLC_WRK_REQUESTS")
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local listed = dofile(requests_file)
  prepared = {}
  for i, item in ipairs(listed) do
    prepared[i] = wrk.format("POST", item[1], {
      ["Host"] = wrk.headers["Host"],
      ["Content-Type"] = "application/json",
      ["Accept-Encoding"] = "identity",
      ["Authorization"] = "Bearer " .. item[2],
    }, item[3])
  end
  position = (id * 7919) % #prepared
  bad_status = 0
  answer_errors = 0
  answered = 0
  first_problem = ""
end

function request()
  position = position % #prepared + 1
  return prepared[position]
end

function response(status, headers, body)
  answered = answered + 1
  if status ~= 200 then
    bad_status = bad_status + 1
    if first_problem == "" then first_problem = "HTTP " .. status .. ": " .. string.sub(body or "", 1, 200) end
  elseif string.find(body, '"errors":', 1, true) then
    answer_errors = answer_errors + 1
    if first_problem == "" then first_problem = string.sub(body, 1, 200) end
  end
end

local function json_string(text)
  return '"' .. string.gsub(text, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end) .. '"'
end

function done(summary, latency, requests)
  local bad, errors, answers, problem = 0, 0, 0, ""
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("bad_status")
    errors = errors + thread:get("answer_errors")
    answers = answers + thread:get("answered")
    if problem == "" then problem = thread:get("first_problem") end
  end
  local socket = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    'MLC_WRK_RESULT {"requests":%d,"answered":%d,"duration_us":%d,"bytes":%d,"socket_errors":%d,' ..
    '"bad_status":%d,"answer_errors":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,"mean_us":%.1f,"first_problem":%s}\n',
    summary.requests, answers, summary.duration, summary.bytes, socket, bad, errors,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean, json_string(problem)))
end
