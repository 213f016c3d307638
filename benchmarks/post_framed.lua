-- wrk script: POST one body with a content type and optional extra header, then print one BENCH line.
--   wrk -t1 -c16 -d5s --latency -s post_framed.lua URL -- BODY CONTENT-TYPE ["Name: value"]
-- Used for the binary tensor data extension (Inference-Header-Content-Length) next to JSON.

function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  wrk.headers["Content-Type"] = args[2]
  if args[3] then
    local name, value = args[3]:match("^([^:]+):%s*(.*)$")
    wrk.headers[name] = value
  end
  file:close()
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "bytes": %d, "errors_connect": %d, "errors_read": %d, '
      .. '"errors_write": %d, "errors_status": %d, "errors_timeout": %d, "p50_us": %d, "p90_us": %d, '
      .. '"p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
