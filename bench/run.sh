#!/usr/bin/env bash
# Tessera benchmark: start-up time, idle RSS and HTTP throughput.
#
#   cargo build --release && bench/run.sh
#
# Everything runs against 127.0.0.1 only. See bench/README.md for what is
# measured and the targets. Tunables (environment):
#
#   TESSERA_BIN            binary to run            (default: target/release/tessera)
#   BENCH_DURATION         wrk duration per run     (default: 10s; plain number = seconds)
#   BENCH_CONNECTIONS      wrk connections          (default: 64)
#   BENCH_THREADS          wrk threads              (default: 2)
#   BENCH_WARMUP           warm-up seconds per endpoint before measuring (default: 2; 0 = none)
#   BENCH_STARTUP_RUNS     start-up repetitions     (default: 5)
#   BENCH_ROUNDS           rounds of (health, graphql, me), interleaved; medians reported (default: 3)
#   BENCH_SETTLE           seconds to idle before reading RSS (default: 2)
#   BENCH_PORT             first port to try        (default: 18080)
#   BENCH_READY_TIMEOUT_MS give up waiting for /ready after this long (default: 30000)
#   BENCH_RUST_LOG         RUST_LOG for the server  (default: warn)
#   BENCH_RESULTS_DIR      where raw output goes    (default: bench/results)
#   BENCH_SKIP_THROUGHPUT  1 = skip the wrk part
#   BENCH_STRICT           1 = exit with status 2 when a target is missed

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DEFAULT_BIN="$ROOT/target/release/tessera"
BIN="${TESSERA_BIN:-$DEFAULT_BIN}"
DURATION="${BENCH_DURATION:-10s}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"
WARMUP="${BENCH_WARMUP:-2}"
STARTUP_RUNS="${BENCH_STARTUP_RUNS:-5}"
ROUNDS="${BENCH_ROUNDS:-3}"
SETTLE="${BENCH_SETTLE:-2}"
FIRST_PORT="${BENCH_PORT:-18080}"
READY_TIMEOUT_MS="${BENCH_READY_TIMEOUT_MS:-30000}"
SERVER_RUST_LOG="${BENCH_RUST_LOG:-warn}"
RESULTS_ROOT="${BENCH_RESULTS_DIR:-$ROOT/bench/results}"
SKIP_THROUGHPUT="${BENCH_SKIP_THROUGHPUT:-0}"
STRICT="${BENCH_STRICT:-0}"

GRAPHQL_LUA="$ROOT/bench/graphql.lua"
ME_LUA="$ROOT/bench/me.lua"
GRAPHQL_BODY='{"query":"{ serverInfo { version } }"}'

# Targets (see bench/README.md).
TARGET_STARTUP_MS=500
TARGET_RSS_MIB=40
TARGET_RATIO_PCT=60
TARGET_ME_RATIO_PCT=80

# A bare number of seconds is accepted for the duration.
if [[ "$DURATION" =~ ^[0-9]+$ ]]; then
    DURATION="${DURATION}s"
fi

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# curl restricted to the local server: never use a proxy from the environment.
lcurl() { curl --noproxy '*' -sS --max-time 5 "$@"; }

now_ns() { date +%s%N; }

port_in_use() {
    # Succeeds when something accepts connections on 127.0.0.1:$1.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pick_port() {
    local p
    for ((p = FIRST_PORT; p < FIRST_PORT + 100; p++)); do
        if ! port_in_use "$p"; then
            echo "$p"
            return 0
        fi
    done
    die "no free port in ${FIRST_PORT}..$((FIRST_PORT + 99))"
}

SERVER_PID=""
TMP_DIRS=()

cleanup() {
    stop_server
    local d
    for d in "${TMP_DIRS[@]+"${TMP_DIRS[@]}"}"; do
        rm -rf -- "$d"
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_server LOGFILE
# Starts the binary with a fresh SQLite database in a new temporary directory
# (which is also its working directory, so no stray .env is picked up).
# Sets SERVER_PID.
start_server() {
    local logfile="$1" tmp
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/tessera-bench.XXXXXX")"
    TMP_DIRS+=("$tmp")
    (
        cd "$tmp"
        exec env \
            -u REDIS_URL -u OTEL_EXPORTER_OTLP_ENDPOINT -u OTEL_SERVICE_NAME \
            -u PUBLIC_URL -u CORS_ALLOWED_ORIGINS \
            DATABASE_URL="sqlite://$tmp/tessera.db?mode=rwc" \
            LISTEN_ADDR="127.0.0.1:$PORT" \
            LOG_FORMAT=json \
            RUST_LOG="$SERVER_RUST_LOG" \
            RUN_MIGRATIONS=true \
            "$BIN" serve
    ) >"$logfile" 2>&1 &
    SERVER_PID=$!
}

stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    local pid="$SERVER_PID" i
    SERVER_PID=""
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "server $pid ignored SIGTERM for 5 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

# wait_ready T0_NS LOGFILE -> prints elapsed milliseconds (one decimal)
wait_ready() {
    local t0="$1" logfile="$2" t
    while :; do
        if lcurl -f -o /dev/null --max-time 1 "$BASE_URL/ready" 2>/dev/null; then
            t="$(now_ns)"
            awk -v a="$t0" -v b="$t" 'BEGIN { printf "%.1f\n", (b - a) / 1e6 }'
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            log "server exited before /ready answered 200; last log lines:"
            tail -n 20 "$logfile" >&2 || true
            return 1
        fi
        t="$(now_ns)"
        if (((t - t0) / 1000000 > READY_TIMEOUT_MS)); then
            log "/ready did not answer 200 within ${READY_TIMEOUT_MS} ms; last log lines:"
            tail -n 20 "$logfile" >&2 || true
            return 1
        fi
        sleep 0.005
    done
}

rss_mib() {
    awk '/^VmRSS:/ { printf "%.1f\n", $2 / 1024 }' "/proc/$1/status"
}

hwm_mib() {
    awk '/^VmHWM:/ { printf "%.1f\n", $2 / 1024 }' "/proc/$1/status"
}

# Convert a wrk duration such as 812.00us, 3.21ms, 1.02s, 1.50m to milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (match(v, /^[0-9.]+/) == 0) { print "n/a"; exit }
        n = substr(v, 1, RLENGTH); u = substr(v, RLENGTH + 1)
        if (u == "us")      f = 0.001
        else if (u == "ms") f = 1
        else if (u == "s")  f = 1000
        else if (u == "m")  f = 60000
        else if (u == "h")  f = 3600000
        else { print "n/a"; exit }
        printf "%.2f\n", n * f
    }'
}

# Field extraction from a saved wrk report.
wrk_rps()      { awk '/^Requests\/sec:/ { print $2; found = 1 } END { if (!found) print "n/a" }' "$1"; }
wrk_p99_raw()  { awk '$1 == "99%" { print $2; found = 1; exit } END { if (!found) print "n/a" }' "$1"; }
wrk_requests() { awk '/ requests in / { print $1; found = 1 } END { if (!found) print "n/a" }' "$1"; }
wrk_non2xx()   { awk '/Non-2xx or 3xx responses:/ { print $NF; found = 1 } END { if (!found) print 0 }' "$1"; }
# Median over rounds of 100 * rps($1) / rps($2), each ratio taken within one round.
median_ratio() {
    local num="$1" den="$2" round
    for round in $(seq 1 "$ROUNDS"); do
        awk -v a="$(wrk_rps "$RESULTS/wrk-$num-$round.txt")" -v b="$(wrk_rps "$RESULTS/wrk-$den-$round.txt")" \
            'BEGIN { if (b > 0) printf "%.1f\n", 100 * a / b }'
    done | sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "n/a" }'
}

# The round of endpoint $1 whose Requests/sec is the median: prints its wrk output file.
median_file() {
    local name="$1" f
    for f in "$RESULTS"/wrk-"$name"-*.txt; do
        printf '%s %s\n' "$(wrk_rps "$f")" "$f"
    done | sort -n | awk '{ lines[NR] = $2 } END { print lines[int((NR + 1) / 2)] }'
}

wrk_sockerr()  {
    awk '/Socket errors:/ {
            gsub(/,/, ""); print $4 + $6 + $8 + $10; found = 1
         }
         END { if (!found) print 0 }' "$1"
}

# run_wrk NAME URL [LUA_SCRIPT] -> writes $RESULTS/wrk-NAME.txt
run_wrk() {
    local name="$1" url="$2" script="${3:-}" out="$RESULTS/wrk-$1.txt"
    local -a extra=()
    [[ -n "$script" ]] && extra=(-s "$script")
    if ((WARMUP > 0)); then
        log "warm-up $name (${WARMUP}s)"
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" "${extra[@]+"${extra[@]}"}" "$url" >/dev/null
    fi
    log "wrk $name: -t$THREADS -c$CONNECTIONS -d$DURATION --latency $url"
    {
        echo "# wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency ${script:+-s $(basename "$script") }$url"
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "${extra[@]+"${extra[@]}"}" "$url"
    } >"$out" 2>&1 || die "wrk failed for $name; see $out"
}

# verdict 1|0 -> "met" | "MISSED" (BENCH_STRICT greps the summary for MISSED)
verdict() { if [[ "$1" == 1 ]]; then echo "met"; else echo "MISSED"; fi; }

# ---------------------------------------------------------------------------
# preconditions
# ---------------------------------------------------------------------------

command -v curl >/dev/null || die "curl is required"
if [[ "$SKIP_THROUGHPUT" != 1 ]]; then
    command -v wrk >/dev/null || die "wrk is required (Debian/Ubuntu: apt-get install wrk), or set BENCH_SKIP_THROUGHPUT=1"
fi

if [[ ! -x "$BIN" ]]; then
    if [[ "$BIN" == "$DEFAULT_BIN" ]]; then
        log "target/release/tessera not found; running cargo build --release --bin tessera"
        cargo build --release --bin tessera
    else
        die "TESSERA_BIN=$BIN is not an executable file"
    fi
fi
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"

PORT="$(pick_port)"
BASE_URL="http://127.0.0.1:$PORT"

STAMP="$(date +%Y%m%d-%H%M%S)"
RESULTS="$RESULTS_ROOT/$STAMP"
mkdir -p "$RESULTS"

log "binary:  $BIN"
log "port:    $PORT"
log "results: $RESULTS"

# ---------------------------------------------------------------------------
# a) start-up: spawn -> GET /ready == 200
# ---------------------------------------------------------------------------

STARTUP_FILE="$RESULTS/startup.txt"
: >"$STARTUP_FILE"
for ((run = 1; run <= STARTUP_RUNS; run++)); do
    t0="$(now_ns)"
    start_server "$RESULTS/server-startup-$run.log"
    ms="$(wait_ready "$t0" "$RESULTS/server-startup-$run.log")" || die "start-up run $run failed"
    echo "$ms" >>"$STARTUP_FILE"
    log "start-up run $run/$STARTUP_RUNS: ${ms} ms"
    stop_server
done

read -r STARTUP_MIN STARTUP_MED STARTUP_MAX < <(
    sort -n "$STARTUP_FILE" | awk '
        { v[NR] = $1 }
        END {
            if (NR % 2) med = v[(NR + 1) / 2]
            else        med = (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%.1f %.1f %.1f\n", v[1], med, v[NR]
        }'
)

# ---------------------------------------------------------------------------
# b) idle RSS, then c) throughput on the same (fresh) server
# ---------------------------------------------------------------------------

t0="$(now_ns)"
start_server "$RESULTS/server-load.log"
wait_ready "$t0" "$RESULTS/server-load.log" >/dev/null || die "server for the load run did not become ready"
sleep "$SETTLE"
IDLE_RSS="$(rss_mib "$SERVER_PID")"
log "idle RSS after ${SETTLE}s: ${IDLE_RSS} MiB"

HEALTH_RPS="n/a" HEALTH_P99="n/a" HEALTH_REQS="n/a" HEALTH_BAD=0
GQL_RPS="n/a" GQL_P99="n/a" GQL_REQS="n/a" GQL_BAD=0
ME_RPS="n/a" ME_P99="n/a" ME_REQS="n/a" ME_BAD=0 ME_RATIO="n/a"
RATIO="n/a" LOADED_RSS="n/a" PEAK_RSS="n/a"

if [[ "$SKIP_THROUGHPUT" != 1 ]]; then
    # Sanity checks, so that we never benchmark an error page.
    code="$(lcurl -o "$RESULTS/health-response.txt" -w '%{http_code}' "$BASE_URL/health")" || code="000"
    [[ "$code" == 200 ]] || die "GET /health answered $code (see $RESULTS/health-response.txt)"
    code="$(lcurl -o "$RESULTS/graphql-response.json" -w '%{http_code}' \
        -X POST -H 'Content-Type: application/json' -H 'Accept: application/json' \
        --data "$GRAPHQL_BODY" "$BASE_URL/graphql")" || code="000"
    [[ "$code" == 200 ]] || die "POST /graphql answered $code (see $RESULTS/graphql-response.json)"
    if ! grep -q '"serverInfo"' "$RESULTS/graphql-response.json" || grep -q '"errors"' "$RESULTS/graphql-response.json"; then
        die "POST /graphql did not return serverInfo cleanly: $(head -c 300 "$RESULTS/graphql-response.json")"
    fi

    # A signed-in user for the authenticated query.
    REGISTER_BODY='{"query":"mutation { register(input: {email: \"bench@example.com\", username: \"bench\", password: \"bench-orchid-lantern-42\"}) { accessToken } }"}'
    lcurl -o "$RESULTS/register-response.json" -X POST -H 'Content-Type: application/json' \
        --data "$REGISTER_BODY" "$BASE_URL/graphql" >/dev/null || die "registering the bench user failed"
    BENCH_TOKEN="$(sed -n 's/.*"accessToken":"\([^"]*\)".*/\1/p' "$RESULTS/register-response.json")"
    [[ -n "$BENCH_TOKEN" ]] || die "no access token in $RESULTS/register-response.json"
    export BENCH_TOKEN
    code="$(lcurl -o "$RESULTS/me-response.json" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        -H "Authorization: Bearer $BENCH_TOKEN" --data '{"query":"{ me { id } }"}' "$BASE_URL/graphql")" || code="000"
    if [[ "$code" != 200 ]] || ! grep -q '"me":{"id"' "$RESULTS/me-response.json"; then
        die "{ me { id } } did not answer cleanly: $(head -c 300 "$RESULTS/me-response.json")"
    fi

    # Interleaved rounds: the machine's speed drifts between minutes, and the ratios
    # compare endpoints measured close together.
    for round in $(seq 1 "$ROUNDS"); do
        run_wrk "health-$round" "$BASE_URL/health"
        run_wrk "graphql-$round" "$BASE_URL/graphql" "$GRAPHQL_LUA"
        run_wrk "me-$round" "$BASE_URL/graphql" "$ME_LUA"
    done
    cp "$(median_file health)" "$RESULTS/wrk-health.txt"
    cp "$(median_file graphql)" "$RESULTS/wrk-graphql.txt"
    cp "$(median_file me)" "$RESULTS/wrk-me.txt"

    LOADED_RSS="$(rss_mib "$SERVER_PID")"
    PEAK_RSS="$(hwm_mib "$SERVER_PID")"

    HEALTH_RPS="$(wrk_rps "$RESULTS/wrk-health.txt")"
    HEALTH_P99="$(to_ms "$(wrk_p99_raw "$RESULTS/wrk-health.txt")")"
    HEALTH_REQS="$(wrk_requests "$RESULTS/wrk-health.txt")"
    HEALTH_BAD=$(($(wrk_non2xx "$RESULTS/wrk-health.txt") + $(wrk_sockerr "$RESULTS/wrk-health.txt")))

    GQL_RPS="$(wrk_rps "$RESULTS/wrk-graphql.txt")"
    GQL_P99="$(to_ms "$(wrk_p99_raw "$RESULTS/wrk-graphql.txt")")"
    GQL_REQS="$(wrk_requests "$RESULTS/wrk-graphql.txt")"
    GQL_BAD=$(($(wrk_non2xx "$RESULTS/wrk-graphql.txt") + $(wrk_sockerr "$RESULTS/wrk-graphql.txt")))

    ME_RPS="$(wrk_rps "$RESULTS/wrk-me.txt")"
    ME_P99="$(to_ms "$(wrk_p99_raw "$RESULTS/wrk-me.txt")")"
    ME_REQS="$(wrk_requests "$RESULTS/wrk-me.txt")"
    ME_BAD=$(($(wrk_non2xx "$RESULTS/wrk-me.txt") + $(wrk_sockerr "$RESULTS/wrk-me.txt")))

    [[ "$HEALTH_RPS" != n/a && "$GQL_RPS" != n/a && "$ME_RPS" != n/a ]] || die "could not parse Requests/sec from wrk output (see $RESULTS)"
    ME_RATIO="$(median_ratio me graphql)"
    RATIO="$(median_ratio graphql health)"
    RATIO_ROUNDS="$(for r in $(seq 1 "$ROUNDS"); do awk -v a="$(wrk_rps "$RESULTS/wrk-graphql-$r.txt")" -v b="$(wrk_rps "$RESULTS/wrk-health-$r.txt")" 'BEGIN { printf "%.1f%% ", 100 * a / b }'; done)"
fi

stop_server

# ---------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------

ok_startup=$(awk -v v="$STARTUP_MED" -v t="$TARGET_STARTUP_MS" 'BEGIN { print (v < t) ? 1 : 0 }')
ok_rss=$(awk -v v="$IDLE_RSS" -v t="$TARGET_RSS_MIB" 'BEGIN { print (v < t) ? 1 : 0 }')

GIT_REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null | head -n 1)" ]]; then
    GIT_REV="$GIT_REV (dirty)"
fi

SUMMARY="$RESULTS/summary.md"
{
    echo "## Tessera benchmark $STAMP"
    echo
    echo "- revision: $GIT_REV"
    echo "- machine: $(nproc) CPU, $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)"
    if [[ "$SKIP_THROUGHPUT" != 1 ]]; then
        echo "- wrk: $THREADS threads, $CONNECTIONS connections, $DURATION per endpoint (warm-up ${WARMUP}s), $ROUNDS interleaved rounds (medians below), same host as the server"
    fi
    echo
    echo "| Metric | Value | Target | |"
    echo "| --- | --- | --- | --- |"
    echo "| start-up to /ready, SQLite (min / median / max of $STARTUP_RUNS) | $STARTUP_MIN / $STARTUP_MED / $STARTUP_MAX ms | < $TARGET_STARTUP_MS ms (median) | $(verdict "$ok_startup") |"
    echo "| idle RSS after ${SETTLE}s | $IDLE_RSS MiB | < $TARGET_RSS_MIB MiB | $(verdict "$ok_rss") |"
    if [[ "$SKIP_THROUGHPUT" != 1 ]]; then
        ok_ratio=$(awk -v v="$RATIO" -v t="$TARGET_RATIO_PCT" 'BEGIN { print (v + 0 >= t) ? 1 : 0 }')
        echo "| GraphQL / health throughput | $RATIO % | >= $TARGET_RATIO_PCT % | $(verdict "$ok_ratio") |"
        ok_me=$(awk -v v="$ME_RATIO" -v t="$TARGET_ME_RATIO_PCT" 'BEGIN { print (v + 0 >= t) ? 1 : 0 }')
        echo "| authenticated \`{ me { id } }\` / \`{ serverInfo { version } }\` | $ME_RATIO % | >= $TARGET_ME_RATIO_PCT % | $(verdict "$ok_me") |"
        echo "| RSS after load (current / peak) | $LOADED_RSS / $PEAK_RSS MiB | | |"
        echo
        echo "| Endpoint | Req/s | p99 | Requests | Errors (non-2xx + socket) |"
        echo "| --- | ---: | ---: | ---: | ---: |"
        echo "| GET /health | $HEALTH_RPS | $HEALTH_P99 ms | $HEALTH_REQS | $HEALTH_BAD |"
        echo "| POST /graphql \`{ serverInfo { version } }\` | $GQL_RPS | $GQL_P99 ms | $GQL_REQS | $GQL_BAD |"
        echo "| POST /graphql \`{ me { id } }\` with a bearer token | $ME_RPS | $ME_P99 ms | $ME_REQS | $ME_BAD |"
        echo
        echo "Ratios are medians of per-round ratios (GraphQL/health by round: $RATIO_ROUNDS); the"
        echo "req/s columns show each endpoint's median round."
    fi
} >"$SUMMARY"

ln -sfn "$STAMP" "$RESULTS_ROOT/latest"

echo
cat "$SUMMARY"
echo
echo "Raw output: $RESULTS (also $RESULTS_ROOT/latest)"

if [[ "$STRICT" == 1 ]] && grep -q 'MISSED' "$SUMMARY"; then
    exit 2
fi
