#!/usr/bin/env bash
# Ledger throughput on PostgreSQL: wallet::transfer (examples/ledger_bench.rs) against
# pgbench running the same transaction (bench/ledger.sql), interleaved rounds, medians.
#
#   bench/ledger.sh
#
# Tunables (environment):
#   PG_ADMIN_URL     admin URL   (default: postgres://postgres@127.0.0.1:5432/postgres)
#   LEDGER_DB        database made (and dropped first) for the run (default: tessera_ledger_bench)
#   LEDGER_USERS     accounts transfers pick from (default: 1000)
#   LEDGER_CLIENTS   concurrent clients on both sides (default: 16)
#   LEDGER_SECONDS   seconds per measurement (default: 10)
#   LEDGER_ROUNDS    rounds of (tessera, pgbench) (default: 3)
#   LEDGER_BIN       a ledger_bench binary built earlier, to compare revisions (default: build
#                    this checkout's)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ADMIN="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
DB="${LEDGER_DB:-tessera_ledger_bench}"
USERS="${LEDGER_USERS:-1000}"
CLIENTS="${LEDGER_CLIENTS:-16}"
SECONDS_PER="${LEDGER_SECONDS:-10}"
ROUNDS="${LEDGER_ROUNDS:-3}"
URL="${ADMIN%/*}/$DB"
OUT="$ROOT/bench/results/ledger-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"

psql "$ADMIN" -qc "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)"
psql "$ADMIN" -qc "CREATE DATABASE \"$DB\""
if [ -n "${LEDGER_BIN:-}" ]; then
    BENCH="$LEDGER_BIN"
else
    cargo build -q --release --example ledger_bench
    BENCH="$ROOT/target/release/examples/ledger_bench"
fi
"$BENCH" setup "$URL" "$USERS"

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

for round in $(seq 1 "$ROUNDS"); do
    line=$("$BENCH" run "$URL" "$CLIENTS" "$SECONDS_PER")
    echo "round $round tessera: $line"
    echo "$line" >>"$OUT/tessera.txt"

    (cd "$OUT" && pgbench -n -M prepared -c "$CLIENTS" -j 2 -T "$SECONDS_PER" -D users="$USERS" \
        -f "$ROOT/bench/ledger.sql" -l --log-prefix="pgbench-$round" "$URL" >"pgbench-$round.txt" 2>&1)
    tps=$(awk '/^tps = / { print int($3) }' "$OUT/pgbench-$round.txt")
    # Per-transaction logs: the third column is the latency in microseconds.
    p99=$(cat "$OUT"/pgbench-"$round".* | awk '{ print $3 }' | sort -n |
        awk '{ v[NR] = $1 } END { printf "%.2f", v[int(NR * 0.99)] / 1000 }')
    p50=$(cat "$OUT"/pgbench-"$round".* | awk '{ print $3 }' | sort -n |
        awk '{ v[NR] = $1 } END { printf "%.2f", v[int(NR * 0.50)] / 1000 }')
    echo "round $round pgbench: tps=$tps p50_ms=$p50 p99_ms=$p99"
    echo "tps=$tps p50_ms=$p50 p99_ms=$p99" >>"$OUT/pgbench.txt"
    rm -f "$OUT"/pgbench-"$round".[0-9]*

    line=$("$BENCH" buy "$URL" "$CLIENTS" "$SECONDS_PER")
    echo "round $round purchaseAccessToken: $line"
    echo "$line" >>"$OUT/purchases.txt"
done

field() { sed -E "s/.*$1=([0-9.]+).*/\1/"; }
t_tps=$(field tps <"$OUT/tessera.txt" | median)
t_p99=$(field p99_ms <"$OUT/tessera.txt" | median)
p_tps=$(field tps <"$OUT/pgbench.txt" | median)
p_p99=$(field p99_ms <"$OUT/pgbench.txt" | median)
ratio=$(awk -v a="$t_tps" -v b="$p_tps" 'BEGIN { printf "%.1f", 100 * a / b }')
b_tps=$(field tps <"$OUT/purchases.txt" | median)
b_p99=$(field p99_ms <"$OUT/purchases.txt" | median)
b_ratio=$(awk -v a="$b_tps" -v b="$t_tps" 'BEGIN { printf "%.2f", a / b }')
echo
echo "median of $ROUNDS rounds, $CLIENTS clients, ${SECONDS_PER}s each, $USERS accounts"
echo "tessera  tps=$t_tps p99_ms=$t_p99"
echo "pgbench  tps=$p_tps p99_ms=$p_p99"
echo "ratio    ${ratio}% (target 70%)"
echo "purchaseAccessToken  per_s=$b_tps p99_ms=$b_p99  = ${b_ratio}x the transfers (target 0.6x)"
psql "$ADMIN" -qc "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)"
