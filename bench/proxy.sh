#!/usr/bin/env bash
# Access proxy: a bare upstream (tessera-fakes upstream, 1 KiB page) measured directly and
# through /proxy in interleaved rounds with wrk; then a 100 MiB download both ways with the
# server's memory growth. Medians reported. The same rounds and downloads also go through a
# bare forwarder (tessera-fakes forwarder: hyper relaying HTTP/1.1, no token, no headers, no
# metrics), the reference for what the second hop itself costs on this machine.
#
#   bench/proxy.sh          (builds what it needs in release mode)
#
# Tunables: BENCH_DURATION (10s), BENCH_CONNECTIONS (64), BENCH_THREADS (2), BENCH_ROUNDS (3),
# BENCH_LATENCY_CONNECTIONS (1: the unqueued latency round), BENCH_DOWNLOADS (5 pairs),
# TESSERA_BIN (another server binary, for comparing revisions; not rebuilt).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${BENCH_DURATION:-10s}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"
ROUNDS="${BENCH_ROUNDS:-3}"
DOWNLOADS="${BENCH_DOWNLOADS:-5}"
UP_PORT=18191
TS_PORT=18192
FW_PORT=18193
OUT="$ROOT/bench/results/proxy-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
# shellcheck source=bench/proxy-common.sh
source "$ROOT/bench/proxy-common.sh"
target/release/tessera-fakes forwarder --listen "127.0.0.1:$FW_PORT" --upstream "127.0.0.1:$UP_PORT" >"$WORK/fw.out" &
PIDS+=($!)
FORWARDER="http://127.0.0.1:$FW_PORT"
start_server
curl -fs -o /dev/null -H "x-access-token: $TOKEN" "http://127.0.0.1:$TS_PORT/proxy/page"

# wrk prints latency with units; normalise to milliseconds.
to_ms() { awk '{ v = $1; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 } printf "%.3f\n", v }'; }
run_wrk() { # name url [header]
    local name=$1 url=$2
    shift 2
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url" >"$OUT/$name.txt"
    local rps p50 p99
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$OUT/$name.txt")
    p50=$(awk '$1 == "50%" { print $2 }' "$OUT/$name.txt" | to_ms)
    p99=$(awk '$1 == "99%" { print $2 }' "$OUT/$name.txt" | to_ms)
    non2xx=$(awk '/Non-2xx/ { print $NF }' "$OUT/$name.txt")
    [[ -z "$non2xx" ]] || { echo "$name: $non2xx non-2xx answers" >&2; exit 1; }
    echo "$rps $p50 $p99"
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$TS_PID/stat"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

for round in $(seq 1 "$ROUNDS"); do
    read -r d_rps d_p50 d_p99 < <(run_wrk "direct-$round" "$UPSTREAM/page")
    cpu_before=$(cpu_ticks)
    read -r p_rps p_p50 p_p99 < <(run_wrk "proxied-$round" "http://127.0.0.1:$TS_PORT/proxy/page" -H "X-Access-Token: $TOKEN")
    # The server's CPU (user + system) per proxied request, in microseconds.
    cpu_us=$(awk -v t="$(( $(cpu_ticks) - cpu_before ))" -v hz="$(getconf CLK_TCK)" -v n="$(awk '/requests in/ { print $1 }' "$OUT/proxied-$round.txt")" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
    read -r f_rps f_p50 f_p99 < <(run_wrk "forwarded-$round" "$FORWARDER/page")
    ratio=$(awk -v a="$p_rps" -v b="$d_rps" 'BEGIN { printf "%.3f", a / b }')
    f_ratio=$(awk -v a="$f_rps" -v b="$d_rps" 'BEGIN { printf "%.3f", a / b }')
    added50=$(awk -v a="$p_p50" -v b="$d_p50" 'BEGIN { printf "%.3f", a - b }')
    added99=$(awk -v a="$p_p99" -v b="$d_p99" 'BEGIN { printf "%.3f", a - b }')
    echo "round $round: direct $d_rps req/s (p50 $d_p50 ms, p99 $d_p99 ms), proxied $p_rps req/s (p50 $p_p50 ms, p99 $p_p99 ms), ratio $ratio, server CPU $cpu_us µs per proxied request; forwarder $f_rps req/s (p50 $f_p50 ms, p99 $f_p99 ms), ratio $f_ratio"
    echo "$ratio $added50 $added99 $d_rps $p_rps $cpu_us $f_ratio $(awk -v a="$f_p50" -v b="$d_p50" 'BEGIN { printf "%.3f", a - b }') $(awk -v a="$f_p99" -v b="$d_p99" 'BEGIN { printf "%.3f", a - b }')" >>"$OUT/rounds.txt"
done

# Added latency without queueing: one connection, one request at a time.
LAT_CONNECTIONS="${BENCH_LATENCY_CONNECTIONS:-1}"
read -r l_d_rps l_d_p50 l_d_p99 < <(CONNECTIONS=$LAT_CONNECTIONS THREADS=1 run_wrk "direct-latency" "$UPSTREAM/page")
read -r l_p_rps l_p_p50 l_p_p99 < <(CONNECTIONS=$LAT_CONNECTIONS THREADS=1 run_wrk "proxied-latency" "http://127.0.0.1:$TS_PORT/proxy/page" -H "X-Access-Token: $TOKEN")
echo "$LAT_CONNECTIONS connection(s): direct p50 $l_d_p50 ms, p99 $l_d_p99 ms ($l_d_rps req/s); proxied p50 $l_p_p50 ms, p99 $l_p_p99 ms ($l_p_rps req/s)"

rss_kib() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$TS_PID/status"; }
# Downloads alternate direct, proxied and forwarded; one pair alone varies by a factor of two
# on a shared machine, so the median of DOWNLOADS is reported. The server's peak memory is
# the kernel's high-water mark (VmHWM), reset before the downloads where the kernel lets us
# (/proc/PID/clear_refs); elsewhere the proxied downloads are watched by polling, which
# takes CPU from them.
sleep 1
before=$(rss_kib VmRSS)
peak=$before
if echo 5 >"/proc/$TS_PID/clear_refs" 2>/dev/null; then POLL=0; else POLL=1; fi
: >"$OUT/downloads.txt"
for _ in $(seq 1 "$DOWNLOADS"); do
    direct_bps=$(curl -s -o /dev/null -w '%{speed_download}' "$UPSTREAM/stream?mib=100")
    curl -s -o /dev/null -w '%{speed_download}' -H "x-access-token: $TOKEN" \
        "http://127.0.0.1:$TS_PORT/proxy/stream?mib=100" >"$WORK/speed" &
    CURL=$!
    while (( POLL )) && kill -0 "$CURL" 2>/dev/null; do
        now=$(rss_kib VmRSS)
        (( now > peak )) && peak=$now
        sleep 0.02
    done
    wait "$CURL"
    proxied_bps=$(cat "$WORK/speed")
    forwarded_bps=$(curl -s -o /dev/null -w '%{speed_download}' "$FORWARDER/stream?mib=100")
    echo "$direct_bps $proxied_bps $(awk -v a="$proxied_bps" -v b="$direct_bps" 'BEGIN { printf "%.3f", a / b }') $(awk -v a="$forwarded_bps" -v b="$direct_bps" 'BEGIN { printf "%.3f", a / b }')" >>"$OUT/downloads.txt"
done
(( POLL )) || peak=$(rss_kib VmHWM)
direct_bps=$(awk '{ print $1 }' "$OUT/downloads.txt" | median)
proxied_bps=$(awk '{ print $2 }' "$OUT/downloads.txt" | median)
download_ratio=$(awk '{ print $3 }' "$OUT/downloads.txt" | median)

echo
echo "median of $ROUNDS rounds, $CONNECTIONS connections, $DURATION each"
echo "throughput ratio (proxied / direct): $(awk '{ print $1 }' "$OUT/rounds.txt" | median)x (target >= 0.45)"
echo "server CPU per proxied request: $(awk '{ print $6 }' "$OUT/rounds.txt" | median) µs"
echo "added latency p50: $(awk '{ print $2 }' "$OUT/rounds.txt" | median) ms (target <= 0.5), p99: $(awk '{ print $3 }' "$OUT/rounds.txt" | median) ms (target <= 2)"
echo "added latency at $LAT_CONNECTIONS connection(s): p50 $(awk -v a="$l_p_p50" -v b="$l_d_p50" 'BEGIN { printf "%.3f", a - b }') ms, p99 $(awk -v a="$l_p_p99" -v b="$l_d_p99" 'BEGIN { printf "%.3f", a - b }') ms"
echo "100 MiB download, median of $DOWNLOADS pairs: direct $(awk -v b="$direct_bps" 'BEGIN { printf "%.0f", b / 1048576 }') MiB/s, proxied $(awk -v b="$proxied_bps" 'BEGIN { printf "%.0f", b / 1048576 }') MiB/s, ratio $download_ratio (target >= 0.8; pairs: $(awk '{ printf "%s ", $3 }' "$OUT/downloads.txt"))"
echo "reference forwarder: throughput ratio $(awk '{ print $7 }' "$OUT/rounds.txt" | median)x, added p50 $(awk '{ print $8 }' "$OUT/rounds.txt" | median) ms, p99 $(awk '{ print $9 }' "$OUT/rounds.txt" | median) ms; download ratio $(awk '{ print $4 }' "$OUT/downloads.txt" | median) (pairs: $(awk '{ printf "%s ", $4 }' "$OUT/downloads.txt"))"
echo "server RSS before $(( before / 1024 )) MiB, peak $(( peak / 1024 )) MiB, growth $(( (peak - before) / 1024 )) MiB (target <= 16; $( (( POLL )) && echo "polled every 20 ms" || echo "kernel high-water mark"))"
