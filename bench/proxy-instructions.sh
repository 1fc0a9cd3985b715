#!/usr/bin/env bash
# Instructions the server executes per proxied request, counted by valgrind's callgrind:
# the same figure for the same build whatever else the machine is doing, so it compares
# revisions where wall-clock rounds (bench/proxy.sh) drown in a noisy machine's mood.
#
#   bench/proxy-instructions.sh          (builds what it needs in release mode)
#
# The server runs under callgrind with instrumentation off; after a warm-up of wrk through
# /proxy/page it is switched on for CG_SECONDS (15) of wrk at 4 connections, then off.
# Requests are counted as the calls of the assertion signer (one per proxied request).
# valgrind hides SHA-NI from the program, so SHA-256 runs its portable code under it,
# several times slower than on the machine's own instructions; those instructions are
# reported apart. The bare forwarder (tessera-fakes forwarder) is counted the same way,
# its requests taken from wrk.
#
# Tunables: CG_SECONDS (15), TESSERA_BIN (another server binary; not rebuilt).
# Needs valgrind (callgrind_control, callgrind_annotate), wrk and curl.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_ON="${CG_SECONDS:-15}"
UP_PORT=18291
TS_PORT=18292
FW_PORT=18293
OUT="$ROOT/bench/results/proxy-instructions-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

SERVER_BIN="${TESSERA_BIN:-$ROOT/target/release/tessera}"
[ -n "${TESSERA_BIN:-}" ] || cargo build -q --release --bin tessera
cargo build -q --release -p tessera-fakes --bin tessera-fakes

target/release/tessera-fakes upstream --listen "127.0.0.1:$UP_PORT" >"$WORK/up.out" &
PIDS+=($!)

# Waits for `url` to answer, up to a minute (startup under valgrind is slow).
wait_for() {
    for _ in $(seq 1 300); do
        curl -fs -o /dev/null "$@" 2>/dev/null && return
        sleep 0.2
    done
    echo "no answer from $*" >&2
    exit 1
}

# counted PID URL [wrk header args]: warm up, count SECONDS_ON of wrk, print wrk's count.
counted() {
    local pid=$1 url=$2
    shift 2
    wrk -t1 -c4 -d5s "$@" "$url" >/dev/null
    callgrind_control -i on "$pid" >/dev/null
    wrk -t1 -c4 -d"${SECONDS_ON}s" "$@" "$url" >"$WORK/wrk.txt"
    callgrind_control -i off "$pid" >/dev/null
    awk '/requests in/ { print $1 }' "$WORK/wrk.txt"
}

# total FILE, soft_sha FILE: instructions in the whole profile and in SHA-256's portable code.
total() { callgrind_annotate "$1" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'; }
soft_sha() {
    callgrind_annotate "$1" | awk '/sha2::sha256::soft::compress/ { gsub(",", "", $1); s += $1 } END { print s + 0 }'
}

# The server.
(cd "$WORK" && LISTEN_ADDR="127.0.0.1:$TS_PORT" LOG_FORMAT=json RUST_LOG=warn \
    DATABASE_URL="sqlite://$WORK/t.db?mode=rwc" DATA_DIR="$WORK/data" \
    ACCESS_PROXY_UPSTREAM="http://127.0.0.1:$UP_PORT" ACCESS_TOKEN_PRICES="1:0" \
    ACCESS_PROXY_RATE_LIMIT=100000000 ARGON2_MEMORY_KIB=64 ARGON2_ITERATIONS=1 \
    exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/server.callgrind" \
    "$SERVER_BIN" >"$WORK/server.log" 2>&1) &
TS_PID=$!
PIDS+=($TS_PID)
wait_for "http://127.0.0.1:$TS_PORT/ready"
gql() {
    curl -fs "http://127.0.0.1:$TS_PORT/graphql" -H 'content-type: application/json' "$@"
}
SESSION=$(gql -d '{"query":"mutation { register(input: {email: \"bench@example.com\", username: \"bench\", password: \"plum-orbit-cascade-91\"}) { accessToken } }"}' |
    sed -E 's/.*"accessToken":"([^"]+)".*/\1/')
TOKEN=$(gql -H "authorization: Bearer $SESSION" \
    -d '{"query":"mutation { purchaseAccessToken(input: {durationHours: 1}) { token } }"}' |
    sed -E 's/.*"token":"([^"]+)".*/\1/')
[[ "$TOKEN" == tsr_at_* ]] || { echo "could not buy a token" >&2; exit 1; }
counted "$TS_PID" "http://127.0.0.1:$TS_PORT/proxy/page" -H "X-Access-Token: $TOKEN" >/dev/null
kill "$TS_PID"
wait "$TS_PID" 2>/dev/null || true
# One call of the assertion signer per proxied request: the callers' counts just above its
# own line in the caller tree.
requests=$(callgrind_annotate --tree=caller "$OUT/server.callgrind" | sed 's/,//g' |
    awk '/\*  .*tessera::access::proxy::assertion / && !found { found = calls }
         /^ *$/ { calls = 0; next }
         /</ { if (match($0, /\(([0-9]+)x\)/)) calls += substr($0, RSTART + 1, RLENGTH - 3) }
         END { print found }')
server_total=$(total "$OUT/server.callgrind")
server_sha=$(soft_sha "$OUT/server.callgrind")

# The forwarder.
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/forwarder.callgrind" \
    target/release/tessera-fakes forwarder --listen "127.0.0.1:$FW_PORT" \
    --upstream "127.0.0.1:$UP_PORT" >"$WORK/fw.log" 2>&1 &
FW_PID=$!
PIDS+=($FW_PID)
wait_for "http://127.0.0.1:$FW_PORT/page"
forwarded=$(counted "$FW_PID" "http://127.0.0.1:$FW_PORT/page")
kill "$FW_PID"
wait "$FW_PID" 2>/dev/null || true
forwarder_total=$(total "$OUT/forwarder.callgrind")

per() { awk -v a="$1" -v n="$2" 'BEGIN { printf "%.0f", a / n }'; }
{
    echo "proxied requests counted: $requests"
    echo "server instructions per proxied request: $(per "$server_total" "$requests") (SHA-256 in portable code: $(per "$server_sha" "$requests"); without it: $(per $((server_total - server_sha)) "$requests"))"
    echo "forwarder instructions per request: $(per "$forwarder_total" "$forwarded") ($forwarded requests by wrk's count)"
} | tee "$OUT/summary.txt"
