-- The "mixed" scenario: an app where some requests wait and some compute. Requests alternate,
-- in the order wrk sends them, between /sleep50 (the app waits 50 ms, as on a database or an
-- API) and /cpu5 (the app burns 5 ms of CPU): half of each. The scenario's own path is unused.
local paths = { "/sleep50", "/cpu5" }
local sent = 0

request = function()
  sent = sent + 1
  return wrk.format(nil, paths[sent % 2 + 1])
end
