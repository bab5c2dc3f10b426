-- Appended to every scenario's script by bench/run.py: at the end of the run, print one line
-- "CORRAL_BENCH_JSON {...}" that the harness parses (wrk's own text output is for humans).
-- Latencies are in microseconds; wrk only records latencies below its --timeout and counts the
-- rest as "timeout" errors.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'CORRAL_BENCH_JSON {"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, ' ..
    '"p999": %d}, "statuses": {%s}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9),
    status_counts_json and status_counts_json() or ""))
end
