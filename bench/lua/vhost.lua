-- The Host field for a server with several sites on one port (bench/metrics_cost.py): the site
-- named by CORRAL_BENCH_HOST.
wrk.headers["Host"] = os.getenv("CORRAL_BENCH_HOST") or "localhost"
