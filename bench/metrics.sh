#!/usr/bin/env bash
# Metrics overhead: the hot read (`GET /v1/prompts/{name}/versions/production`)
# on a server with Prometheus metrics on (the default) against one with
# `[metrics] enabled = false`, both on SQLite. Both servers run at once and
# wrk alternates between them, so both see the same machine conditions.
#
# Usage: bench/metrics.sh          ROUNDS=5 DURATION=10s bench/metrics.sh
# Progress goes to stderr; a markdown table goes to stdout.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-4}"
THREADS=2
CONNECTIONS=64
BIN=target/release/promptreg
LABEL_PATH="/v1/prompts/bench%2Fgreeting/versions/production"
BENCH_KEY="pr_bench$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export PROMPTREG_INIT_ADMIN_KEY="$BENCH_KEY"
export PROMPTREG_RATE_LIMIT__READ__PER_SECOND=10000000 PROMPTREG_RATE_LIMIT__READ__BURST=10000000

log() { echo "--> $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

TMP="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v wrk >/dev/null 2>&1 || apt-get install -y wrk >&2 || { apt-get update >&2 && apt-get install -y wrk >&2; }
log "building $BIN"
cargo build --release >&2

# start NAME PORT ENABLED: a server with metrics on or off, seeded.
start() {
    local name="$1" port="$2" enabled="$3" base="http://127.0.0.1:$2"
    PROMPTREG_METRICS__ENABLED="$enabled" DATABASE_URL="sqlite://$TMP/$name.db" RUST_LOG=warn \
        "$BIN" serve --bind "127.0.0.1:$port" --log-format json >"$TMP/$name.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 300); do
        curl -fsS -o /dev/null "$base/readyz" 2>/dev/null && break
        sleep 0.1
    done
    curl -fsS -o /dev/null "$base/readyz" || die "$name did not start: $(cat "$TMP/$name.log")"
    for body in '{"name":"bench/greeting"}'; do
        curl -fsS -o /dev/null -H "Authorization: Bearer $BENCH_KEY" -H 'content-type: application/json' \
            -d "$body" "$base/v1/prompts" || die "seeding $name"
    done
    curl -fsS -o /dev/null -H "Authorization: Bearer $BENCH_KEY" -H 'content-type: application/json' \
        -d '{"template":"Hello {{name}}, welcome to {{place}}!","labels":["production"]}' \
        "$base/v1/prompts/bench%2Fgreeting/versions" || die "seeding $name"
    local code
    code="$(curl -s -o /dev/null -w '%{http_code}' "$base/metrics")"
    log "$name: /metrics answers $code"
}

# One wrk run: "req/s p99_ms".
measure() {
    local out="$TMP/wrk.txt"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
        -H "Authorization: Bearer $BENCH_KEY" "$1$LABEL_PATH" >"$out"
    grep -q 'Non-2xx or 3xx responses' "$out" && { cat "$out" >&2; die "error responses"; }
    awk '$1 == "Requests/sec:" { rps = $2 }
         $1 == "99%" { v = $2
             if (v ~ /us$/) { sub(/us$/, "", v); v = v / 1000 }
             else if (v ~ /ms$/) { sub(/ms$/, "", v); v = v + 0 }
             else if (v ~ /s$/) { sub(/s$/, "", v); v = v * 1000 }
             p99 = v }
         END { printf "%s %.3f\n", rps, p99 }' "$out"
}

start on 18190 true
start off 18191 false

declare -A RPS P99
for round in $(seq 1 "$ROUNDS"); do
    for name in on off; do
        port=18190; [ "$name" = off ] && port=18191
        read -r rps p99 < <(measure "http://127.0.0.1:$port")
        log "round $round, metrics $name: $rps req/s, p99 $p99 ms"
        RPS[$name]+="$rps "
        P99[$name]+="$p99 "
    done
done

best() { tr ' ' '\n' | grep -v '^$' | sort -g | tail -1; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
lowest() { tr ' ' '\n' | grep -v '^$' | sort -g | head -1; }

echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F); commit $(git rev-parse --short HEAD)"
echo
echo "| metrics | best req/s | median req/s | best p99 | median p99 |"
echo "|---|---:|---:|---:|---:|"
for name in on off; do
    echo "| $name | $(echo "${RPS[$name]}" | best) | $(echo "${RPS[$name]}" | median) | $(echo "${P99[$name]}" | lowest) ms | $(echo "${P99[$name]}" | median) ms |"
done
