# Shared by bench/proxy.sh and bench/proxy-instructions.sh (sourced, not run): the build,
# a scratch directory cleaned up at exit, the bare upstream, the server in front of it and
# a token bought from it. Expects ROOT, UP_PORT and TS_PORT; sets WORK, PIDS, SERVER_BIN,
# UPSTREAM, TS_PID and TOKEN.

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
UPSTREAM="http://127.0.0.1:$UP_PORT"

# wait_for CURL_ARGS…: until the URL answers 2xx, up to a minute (valgrind starts slowly).
wait_for() {
    for _ in $(seq 1 300); do
        curl -fs -o /dev/null "$@" 2>/dev/null && return
        sleep 0.2
    done
    echo "no answer from $*" >&2
    exit 1
}

# start_server [WRAPPER…]: the server on TS_PORT in front of the upstream, with an empty
# SQLite database, free tokens and the per-token rate limit out of the way; WRAPPER (valgrind,
# say) runs it. Waits until it is ready, then buys TOKEN.
start_server() {
    (cd "$WORK" && LISTEN_ADDR="127.0.0.1:$TS_PORT" LOG_FORMAT=json RUST_LOG=warn \
        DATABASE_URL="sqlite://$WORK/t.db?mode=rwc" DATA_DIR="$WORK/data" \
        ACCESS_PROXY_UPSTREAM="$UPSTREAM" ACCESS_TOKEN_PRICES="1:0" \
        ACCESS_PROXY_RATE_LIMIT=100000000 ARGON2_MEMORY_KIB=64 ARGON2_ITERATIONS=1 \
        exec "$@" "$SERVER_BIN" >"$WORK/server.log" 2>&1) &
    TS_PID=$!
    PIDS+=($TS_PID)
    wait_for "http://127.0.0.1:$TS_PORT/ready"
    local session
    session=$(gql -d '{"query":"mutation { register(input: {email: \"bench@example.com\", username: \"bench\", password: \"plum-orbit-cascade-91\"}) { accessToken } }"}' |
        sed -E 's/.*"accessToken":"([^"]+)".*/\1/')
    TOKEN=$(gql -H "authorization: Bearer $session" \
        -d '{"query":"mutation { purchaseAccessToken(input: {durationHours: 1}) { token } }"}' |
        sed -E 's/.*"token":"([^"]+)".*/\1/')
    [[ "$TOKEN" == tsr_at_* ]] || { echo "could not buy a token" >&2; exit 1; }
}

gql() {
    curl -fs "http://127.0.0.1:$TS_PORT/graphql" -H 'content-type: application/json' "$@"
}
