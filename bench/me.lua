-- wrk script: POST `{ me { id } }` with a bearer token taken from BENCH_TOKEN.
--   BENCH_TOKEN=tsr_sat_... wrk -t2 -c64 -d10s --latency -s bench/me.lua http://127.0.0.1:18080/graphql
wrk.method = "POST"
wrk.body = '{"query":"{ me { id } }"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "")
