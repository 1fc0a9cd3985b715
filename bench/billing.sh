#!/usr/bin/env bash
# Billing against a local Stripe (examples/billing_bench.rs, which runs the tessera-fakes
# Stripe in its own process): startCheckout's p99 over the fake's own, webhook → applied →
# subscriptionChanged at a subscriber, and verified webhooks per second (half duplicates).
# The server runs on PostgreSQL and Redis by default.
#
#   bench/billing.sh
#
# Tunables (environment):
#   BILLING_ROUNDS    checkouts and renewals timed           (default: 200)
#   BILLING_WEBHOOKS  webhooks posted for the rate          (default: 20000)
#   BILLING_BACKEND   postgres (PostgreSQL + Redis) or sqlite (default: postgres)
#   PG_ADMIN_URL      admin URL for the postgres backend     (default: postgres://postgres@127.0.0.1:5432/postgres)
#   REDIS_URL         Redis for the postgres backend         (default: redis://127.0.0.1:6379)
#   BILLING_PORT      server port; the fake takes the next one (default: 18410)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BACKEND="${BILLING_BACKEND:-postgres}"
PORT="${BILLING_PORT:-18410}"
FAKE_PORT=$((PORT + 1))
SECRET="whsec_bench"
ADMIN="bench-admin@example.com"
ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
OUT="$ROOT/bench/results/billing-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"

cargo build -q --release --bin tessera --example billing_bench
WORK="$(mktemp -d)"
DB_NAME="tessera_billing_bench"
case "$BACKEND" in
    sqlite) DATABASE_URL="sqlite://$WORK/tessera.db?mode=rwc"; KV=() ;;
    postgres)
        psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)"
        psql "$ADMIN_URL" -qc "CREATE DATABASE \"$DB_NAME\""
        DATABASE_URL="${ADMIN_URL%/*}/$DB_NAME?sslmode=disable"
        KV=(REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}" KV_PREFIX="billingbench:$$:")
        ;;
    *) echo "BILLING_BACKEND must be postgres or sqlite" >&2; exit 2 ;;
esac

env "${KV[@]}" DATABASE_URL="$DATABASE_URL" DATABASE_MAX_CONNECTIONS=20 \
    LISTEN_ADDR="127.0.0.1:$PORT" DATA_DIR="$WORK/data" EMBEDDED_WORKER=false ADS_DEV_FAKES=false \
    RUST_LOG=warn LOG_FORMAT=json ARGON2_MEMORY_KIB=64 ARGON2_ITERATIONS=1 MAIL_TRANSPORT=memory \
    ADMIN_EMAILS="$ADMIN" STRIPE_SECRET_KEY=sk_test_bench STRIPE_WEBHOOK_SECRET="$SECRET" \
    STRIPE_API_BASE="http://127.0.0.1:$FAKE_PORT/" BILLING_SESSION_RATE=100000/1s \
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

"$ROOT/target/release/examples/billing_bench" "http://127.0.0.1:$PORT" "$FAKE_PORT" "$SECRET" "$ADMIN" |
    tee "$OUT/result.txt"
echo "backend=$BACKEND (raw output in ${OUT#"$ROOT"/})"
