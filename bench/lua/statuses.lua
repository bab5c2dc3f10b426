-- Diagnosis only (bench/run.py adds it for a short extra run when a scenario had status errors):
-- count the answers by status code. Defining response() makes wrk hand every answer to Lua, which
-- costs the client CPU, so measured runs never include this script.
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

-- Called by report.lua's done(): the counts of every thread as JSON object members.
function status_counts_json()
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses") or {}) do
      total[status] = (total[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(total) do
    table.insert(parts, string.format('"%d": %d', status, count))
  end
  return table.concat(parts, ", ")
end
