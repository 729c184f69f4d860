-- Counts wrk's answers by HTTP status over all its threads and prints them when the run is done,
-- as one line: "statuses 200=1234 503=56". tools/faults.py appends it to tools.benchmark's
-- multipart POST script (wrk takes one script). Each thread has its own Lua state: it counts in its
-- global `statuses`, which done(), run in the main state, reads from each thread with thread:get.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
  end
  local codes = {}
  for status in pairs(total) do
    table.insert(codes, status)
  end
  table.sort(codes)
  local parts = {}
  for _, status in ipairs(codes) do
    table.insert(parts, status .. "=" .. total[status])
  end
  print("statuses " .. table.concat(parts, " "))
end
