-- wrk script: POST a small GraphQL query to the URL given on the command line.
--   wrk -t2 -c64 -d10s --latency -s bench/graphql.lua http://127.0.0.1:18080/graphql
wrk.method = "POST"
wrk.body = '{"query":"{ serverInfo { version } }"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
