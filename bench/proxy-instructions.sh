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
# shellcheck source=bench/proxy-common.sh
source "$ROOT/bench/proxy-common.sh"

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
start_server valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/server.callgrind"
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
