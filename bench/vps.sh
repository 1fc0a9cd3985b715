#!/usr/bin/env bash
# VPS progress streams under load: SUBSCRIBERS WebSocket subscriptions on one server, a
# worker posting step reports, delivery latency (worker request sent → client receipt),
# throughput and the server's memory per idle subscription (examples/vps_progress_bench.rs).
#
#   bench/vps.sh
#
# Tunables (environment):
#   VPS_SUBSCRIBERS  subscriptions, one WebSocket each   (default: 10000)
#   VPS_SESSIONS     sessions they are spread over       (default: 100)
#   VPS_RATE         worker reports per second           (default: 20)
#   VPS_SECONDS      seconds of reports                  (default: 20)
#   VPS_BACKEND      sqlite (embedded, in-process kv) or postgres (PostgreSQL + Redis)
#                    (default: sqlite)
#   PG_ADMIN_URL     admin URL for the postgres backend  (default: postgres://postgres@127.0.0.1:5432/postgres)
#   REDIS_URL        Redis for the postgres backend      (default: redis://127.0.0.1:6379)
#   VPS_PORT         server port                         (default: 18300)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SUBSCRIBERS="${VPS_SUBSCRIBERS:-10000}"
SESSIONS="${VPS_SESSIONS:-100}"
RATE="${VPS_RATE:-20}"
SECONDS_PER="${VPS_SECONDS:-20}"
BACKEND="${VPS_BACKEND:-sqlite}"
PORT="${VPS_PORT:-18300}"
ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
OUT="$ROOT/bench/results/vps-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
# One descriptor per WebSocket on each side, plus headroom.
ulimit -n "$(ulimit -Hn)"

cargo build -q --release --bin tessera --example vps_progress_bench
WORK="$(mktemp -d)"
DB_NAME="tessera_vps_bench"
case "$BACKEND" in
    sqlite) DATABASE_URL="sqlite://$WORK/tessera.db?mode=rwc"; KV=() ;;
    postgres)
        psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)"
        psql "$ADMIN_URL" -qc "CREATE DATABASE \"$DB_NAME\""
        DATABASE_URL="${ADMIN_URL%/*}/$DB_NAME"
        KV=(REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}" KV_PREFIX="vpsbench:$$:")
        ;;
    *) echo "VPS_BACKEND must be sqlite or postgres" >&2; exit 2 ;;
esac

env "${KV[@]}" DATABASE_URL="$DATABASE_URL" LISTEN_ADDR="127.0.0.1:$PORT" DATA_DIR="$WORK/data" \
    ADMIN_EMAILS=bench-admin@example.com VPS_MAX_LIVE_SESSIONS=100000 EMBEDDED_WORKER=false \
    GRAPHQL_WS_KEEPALIVE=0 RUST_LOG=warn LOG_FORMAT=json ARGON2_MEMORY_KIB=64 ARGON2_ITERATIONS=1 \
    "$ROOT/target/release/tessera" serve >"$OUT/server.log" 2>&1 &
SERVER=$!
cleanup() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    rm -rf "$WORK"
    if [ "$BACKEND" = postgres ]; then
        psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)" || true
    fi
}
trap cleanup EXIT
for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/ready" 2>/dev/null && break
    sleep 0.1
done

"$ROOT/target/release/examples/vps_progress_bench" "http://127.0.0.1:$PORT" "$SERVER" \
    "$SUBSCRIBERS" "$SESSIONS" "$RATE" "$SECONDS_PER" | tee "$OUT/result.txt"
echo "backend=$BACKEND (raw output in ${OUT#"$ROOT"/})"
