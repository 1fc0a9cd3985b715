#!/usr/bin/env bash
# Rewarded ads under load (examples/ads_bench.rs): prepare → complete pairs per second and
# each call's latency, then verified Google SSV callbacks per second with warm keys, and the
# cost of one ECDSA verification. The server runs on PostgreSQL and Redis by default.
#
#   bench/ads.sh
#
# Tunables (environment):
#   ADS_CLIENTS      concurrent clients, one account each  (default: 16)
#   ADS_PER_CLIENT   pairs (and callbacks) per client       (default: 200)
#   ADS_BACKEND      postgres (PostgreSQL + Redis) or sqlite (default: postgres)
#   PG_ADMIN_URL     admin URL for the postgres backend     (default: postgres://postgres@127.0.0.1:5432/postgres)
#   REDIS_URL        Redis for the postgres backend         (default: redis://127.0.0.1:6379)
#   ADS_PORT         server port; the key server takes the next one (default: 18400)
#   TESSERA_BIN      server binary (default: target/release/tessera, built first)
#   ADS_BENCH_BIN    load client (default: target/release/examples/ads_bench, built first)
#                    Setting both skips the build: two revisions can be compared in one
#                    sitting by alternating runs with their binaries.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CLIENTS="${ADS_CLIENTS:-16}"
PER="${ADS_PER_CLIENT:-200}"
BACKEND="${ADS_BACKEND:-postgres}"
PORT="${ADS_PORT:-18400}"
KEYS_PORT=$((PORT + 1))
ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
OUT="$ROOT/bench/results/ads-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"

SERVER_BIN="${TESSERA_BIN:-$ROOT/target/release/tessera}"
CLIENT_BIN="${ADS_BENCH_BIN:-$ROOT/target/release/examples/ads_bench}"
if [ -z "${TESSERA_BIN:-}" ] || [ -z "${ADS_BENCH_BIN:-}" ]; then
    cargo build -q --release --bin tessera --example ads_bench
fi
WORK="$(mktemp -d)"
DB_NAME="tessera_ads_bench"
case "$BACKEND" in
    sqlite) DATABASE_URL="sqlite://$WORK/tessera.db?mode=rwc"; KV=() ;;
    postgres)
        psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)"
        psql "$ADMIN_URL" -qc "CREATE DATABASE \"$DB_NAME\""
        # Loopback: no TLS between the server and PostgreSQL (sqlx would negotiate it).
        DATABASE_URL="${ADMIN_URL%/*}/$DB_NAME?sslmode=disable"
        KV=(REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}" KV_PREFIX="adsbench:$$:")
        ;;
    *) echo "ADS_BACKEND must be postgres or sqlite" >&2; exit 2 ;;
esac

env "${KV[@]}" DATABASE_URL="$DATABASE_URL" DATABASE_MAX_CONNECTIONS=20 \
    LISTEN_ADDR="127.0.0.1:$PORT" DATA_DIR="$WORK/data" EMBEDDED_WORKER=false ADS_DEV_FAKES=false \
    RUST_LOG=warn LOG_FORMAT=json ARGON2_MEMORY_KIB=64 ARGON2_ITERATIONS=1 TRUSTED_PROXIES=127.0.0.1/32 \
    MONETAG_ZONE_ID=9100001 MONETAG_SCRIPT_URL=https://ads.example/sdk.js \
    AD_TAG_BASE="https://pubads.example/gampad/ads?iu=/1/rewarded" \
    ADS_SSV_KEYS_URL="http://127.0.0.1:$KEYS_PORT/admob/reward/verifier-keys.json" \
    REQUIRED_DURATION=1 MIN_INTERVAL=0 DAILY_CAP_USER=1000000 DAILY_CAP_DEVICE=1000000 \
    ADS_DAILY_CAP_IP=1000000 ADS_PREPARE_RATE=100000/1s ADS_SSV_RATE=100000/1s LOGIN_RATE_LIMIT_PER_IP=100000 \
    "$SERVER_BIN" serve >"$OUT/server.log" 2>&1 &
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

"$CLIENT_BIN" "http://127.0.0.1:$PORT" "$KEYS_PORT" "$CLIENTS" "$PER" |
    tee "$OUT/result.txt"
echo "backend=$BACKEND (raw output in ${OUT#"$ROOT"/})"
