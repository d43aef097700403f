#!/usr/bin/env bash
# Instructions per request on the hot path, counted by callgrind: a figure
# that does not depend on the machine's load, so two builds can be compared
# without noise. The release server runs under valgrind on SQLite; after a
# warm-up (caches filled) the counters are zeroed, then N requests are sent
# on one keep-alive connection and the counters dumped.
#
# The bare axum server of examples/bare_axum.rs is counted the same way, as
# the floor (BARE names its binary; default target/release/examples/bare_axum).
#
# Usage: bench/callgrind.sh [BIN]          (default: target/release/promptreg)
#        REQUESTS=2000 KEEP=/tmp/profiles bench/callgrind.sh
#
# Prints one markdown row per request kind: instructions per request.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN="${1:-target/release/promptreg}"
BARE="${BARE:-target/release/examples/bare_axum}"
REQUESTS="${REQUESTS:-1000}"
PORT="${PORT:-18190}"
BASE="http://127.0.0.1:$PORT"
LABEL_PATH="/v1/prompts/bench%2Fgreeting/versions/production"
RENDER_PATH="/v1/prompts/bench%2Fgreeting/render"

log() { echo "--> $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

command -v valgrind >/dev/null 2>&1 || die "valgrind is required (apt-get install valgrind)"
[ -x "$BIN" ] || die "$BIN not found; cargo build --release"
[ -x "$BARE" ] || die "$BARE not found; cargo build --release --example bare_axum"

TMP="$(mktemp -d)"
PID=""
BARE_PID=""
cleanup() {
    for pid in $PID $BARE_PID; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

KEY="pr_bench$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export PROMPTREG_INIT_ADMIN_KEY="$KEY"
export PROMPTREG_RATE_LIMIT__READ__PER_SECOND=10000000 PROMPTREG_RATE_LIMIT__READ__BURST=10000000
export DATABASE_URL="sqlite://$TMP/bench.db" RUST_LOG=warn

# wait_ready URL PID LOG
wait_ready() {
    for _ in $(seq 1 600); do
        kill -0 "$2" 2>/dev/null || { cat "$3" >&2; die "server exited"; }
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.2
    done
    die "$1 not ready"
}

"$BIN" migrate >&2
log "starting $BIN and $BARE under callgrind"
valgrind --tool=callgrind --callgrind-out-file="$TMP/server.out" \
    "$BIN" serve --bind "127.0.0.1:$PORT" --log-format json >"$TMP/server.log" 2>&1 &
PID=$!
BARE_PORT=$((PORT + 1))
valgrind --tool=callgrind --callgrind-out-file="$TMP/bare.out" \
    "$BARE" "127.0.0.1:$BARE_PORT" >"$TMP/bare.log" 2>&1 &
BARE_PID=$!
wait_ready "$BASE/readyz" "$PID" "$TMP/server.log"
wait_ready "http://127.0.0.1:$BARE_PORT/" "$BARE_PID" "$TMP/bare.log"

auth=(-H "Authorization: Bearer $KEY")
post() {
    curl -fsS -o /dev/null "${auth[@]}" -H 'content-type: application/json' -d "$2" "$BASE$1" \
        || die "POST $1 failed"
}
post /v1/prompts '{"name":"bench/greeting"}'
post /v1/prompts/bench%2Fgreeting/versions \
    '{"type":"text","template":"Hello {{name}}, welcome to {{place}}!","labels":["production"]}'

# count NAME PID DUMP URL [CURL_OPTION...]: instructions per request for
# REQUESTS requests of URL (curl sends them on one connection) to the server
# PID, whose callgrind dumps start with DUMP.
count() {
    local name="$1" pid="$2" dump="$3" url="$4" urls=() total
    shift 4
    for _ in $(seq 1 "$REQUESTS"); do urls+=("$url"); done
    # Warm-up: caches filled, connections pooled, lazy statics set.
    curl -fsS -o /dev/null "${auth[@]}" "$@" "$url" "$url" "$url" >/dev/null || die "$name failed"
    callgrind_control -z "$pid" >/dev/null 2>&1
    curl -fsS -o /dev/null "${auth[@]}" "$@" "${urls[@]}" >/dev/null || die "$name failed"
    rm -f "$dump".*
    callgrind_control -d "$pid" >/dev/null 2>&1
    sleep 1
    # KEEP=DIR keeps each dump, for callgrind_annotate.
    [ -z "${KEEP:-}" ] || cat "$dump".* >"$KEEP/$(echo "$name" | tr -cs 'a-z' _).out"
    total="$(cat "$dump".* | awk '/^(summary|totals):/ { s = $2 } END { print s }')"
    [ -n "$total" ] || die "no callgrind dump"
    printf '| %s | %d |\n' "$name" "$((total / REQUESTS))"
}

echo "| request ($REQUESTS on one connection, SQLite, caches warm) | instructions per request |"
echo "|---|---:|"
count "bare axum \`GET /\`" "$BARE_PID" "$TMP/bare.out" "http://127.0.0.1:$BARE_PORT/"
count "\`GET /healthz\`" "$PID" "$TMP/server.out" "$BASE/healthz"
count "\`GET $LABEL_PATH\`" "$PID" "$TMP/server.out" "$BASE$LABEL_PATH"
count "\`POST $RENDER_PATH\`" "$PID" "$TMP/server.out" "$BASE$RENDER_PATH" \
    -H 'content-type: application/json' -d '{"variables": {"name": "Ada", "place": "Paris"}}'
