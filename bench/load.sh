#!/usr/bin/env bash
# Load benchmark of the hot path, every figure a ratio to a reference measured
# in the same run:
# - a bare axum server (examples/bare_axum.rs: the same axum, tokio,
#   allocator and release profile, no middleware) is the ceiling; /healthz,
#   which pays every middleware layer, shows what the middleware costs;
# - on each backend, interleaved with both: a cached label read, its
#   `If-None-Match` revalidation (304), a render of a one-line text prompt, a
#   render of a chat prompt with a partial, the Langfuse SDK's prompt read, and
#   a label read with an experiment running on the label;
# - on Postgres, a label read with the caches off (one round trip to the
#   database) against `pgbench -S -M prepared` at the same concurrency.
#
# Usage: bench/load.sh [sqlite] [postgres]      (default: both)
#        DURATION=30s ROUNDS=5 bench/load.sh postgres
#        BIN=path/to/promptreg BARE_BIN=path/to/bare_axum bench/load.sh
#        (given binaries are measured as they are; nothing is built)
#
# Progress goes to stderr; the machine facts and markdown tables to stdout.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-3}"
THREADS=1
CONNECTIONS=64
PG_DB=promptreg_bench
PGBENCH_DB=promptreg_pgbench
BUILD=false
if [ -z "${BIN:-}" ] || [ -z "${BARE_BIN:-}" ]; then
    BUILD=true
fi
BIN="${BIN:-target/release/promptreg}"
BARE_BIN="${BARE_BIN:-target/release/examples/bare_axum}"
LABEL_PATH="/v1/prompts/bench%2Fgreeting/versions/production"
RENDER_PATH="/v1/prompts/bench%2Fgreeting/render"
CHAT_PATH="/v1/prompts/bench%2Fchat/render"
LANGFUSE_PATH="/api/public/v2/prompts/bench%2Fgreeting"
SPLIT_PATH="/v1/prompts/bench%2Fsplit/versions/production"
ENDPOINTS="bare healthz label revalidate render chat langfuse split"
# The server is started with this admin key, and rate limits high enough not
# to be what is measured.
BENCH_KEY="pr_bench$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export PROMPTREG_INIT_ADMIN_KEY="$BENCH_KEY"
export PROMPTREG_RATE_LIMIT__READ__PER_SECOND=10000000 PROMPTREG_RATE_LIMIT__READ__BURST=10000000

if [ "$#" -gt 0 ]; then
    BACKENDS=("$@")
else
    BACKENDS=(sqlite postgres)
fi
for backend in "${BACKENDS[@]}"; do
    case "$backend" in
        sqlite | postgres) ;;
        *) echo "error: unknown backend '$backend' (expected sqlite or postgres)" >&2; exit 2 ;;
    esac
done

log() { echo "--> $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

TMP="$(mktemp -d)"
SERVER_PID=""
BARE_PID=""

# Stop a process: SIGTERM, up to 5 s to exit, then SIGKILL.
stop_pid() {
    local pid="$1"
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
stop_server() {
    stop_pid "$SERVER_PID"
    SERVER_PID=""
}
cleanup() {
    stop_server
    stop_pid "$BARE_PID"
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- tools ------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk"
    if ! apt-get install -y wrk >&2; then
        apt-get update >&2
        apt-get install -y wrk >&2
    fi
fi
for tool in curl jq; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

if [ "$BUILD" = true ]; then
    log "building $BIN and $BARE_BIN"
    cargo build --release --bin promptreg --example bare_axum >&2
fi

# ---- helpers ----------------------------------------------------------------
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
    local port
    for port in $(seq 18080 18179); do
        if ! port_in_use "$port"; then
            echo "$port"
            return 0
        fi
    done
    die "no free port in 18080-18179"
}

ensure_postgres() {
    if pg_isready -q -h 127.0.0.1 -p 5432; then
        return 0
    fi
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect 15 main start >&2 || true
    for _ in $(seq 1 30); do
        pg_isready -q -h 127.0.0.1 -p 5432 && return 0
        sleep 1
    done
    die "PostgreSQL did not become ready on 127.0.0.1:5432"
}

# wait_ready URL PID LOG: until URL answers, or the process exits.
wait_ready() {
    for _ in $(seq 1 300); do
        kill -0 "$2" 2>/dev/null || { cat "$3" >&2; die "server exited"; }
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    die "$1 not ready after 30 s"
}

# start_server URL: migrate and start promptreg on DATABASE_URL=URL, with the
# environment given to this function.
start_server() {
    local url="$1" port
    port="$(free_port)"
    BASE="http://127.0.0.1:$port"
    DATABASE_URL="$url" RUST_LOG=warn "$BIN" migrate >&2
    DATABASE_URL="$url" RUST_LOG=warn \
        "$BIN" serve --bind "127.0.0.1:$port" --log-format json \
        >"$TMP/server.log" 2>&1 &
    SERVER_PID=$!
    wait_ready "$BASE/readyz" "$SERVER_PID" "$TMP/server.log"
}

# post PATH JSON: POST a JSON body and require 201 Created.
post() {
    local status
    status="$(curl -sS -o "$TMP/response" -w '%{http_code}' \
        -H "Authorization: Bearer $BENCH_KEY" -H 'content-type: application/json' -d "$2" "$BASE$1")"
    [ "$status" = 201 ] || die "POST $1 returned $status: $(cat "$TMP/response")"
}

# run_wrk URL OUTFILE [LUA] [HEADER...]: one wrk run; fails on any response
# of 400 or more.
run_wrk() {
    local url="$1" out="$2" lua=() headers=()
    [ -z "${3:-}" ] || lua=(-s "$3")
    shift 3
    for header in "$@"; do headers+=(-H "$header"); done
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "${lua[@]}" "${headers[@]}" "$url" >"$out"
    if grep -q 'Non-2xx or 3xx responses' "$out"; then
        cat "$out" >&2
        die "wrk saw error responses for $url"
    fi
    if grep -q 'Socket errors' "$out"; then
        log "warning: $(grep 'Socket errors' "$out") ($url)"
    fi
}

# Requests/sec from a wrk report.
wrk_rps() {
    awk '$1 == "Requests/sec:" { print $2 }' "$1"
}

# A latency percentile (50 or 99) from a wrk --latency report, in ms.
wrk_ms() {
    awk -v p="$2%" '$1 == p {
        v = $2
        if (v ~ /us$/)      { sub(/us$/, "", v); v = v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); v = v + 0 }
        else if (v ~ /s$/)  { sub(/s$/, "", v);  v = v * 1000 }
        else                { exit 1 }
        printf "%.3f\n", v
    }' "$1"
}

# record FILE NAME WRK_REPORT: appends "NAME rps p50 p99".
record() {
    local rps p50 p99
    rps="$(wrk_rps "$3")"
    p50="$(wrk_ms "$3" 50)" || die "cannot parse the 50% latency in $3"
    p99="$(wrk_ms "$3" 99)" || die "cannot parse the 99% latency in $3"
    if [ -z "$rps" ] || [ -z "$p50" ] || [ -z "$p99" ]; then
        cat "$3" >&2
        die "cannot parse wrk output in $3"
    fi
    echo "$2 $rps $p50 $p99" >>"$1"
}

# ---- the bare reference -------------------------------------------------------
BARE_PORT="$(free_port)"
BARE_URL="http://127.0.0.1:$BARE_PORT/"
"$BARE_BIN" "127.0.0.1:$BARE_PORT" >"$TMP/bare.log" 2>&1 &
BARE_PID=$!
wait_ready "$BARE_URL" "$BARE_PID" "$TMP/bare.log"

# ---- one backend --------------------------------------------------------------
database_url() {
    case "$1" in
        sqlite)
            rm -f "$TMP/bench.db"*
            echo "sqlite://$TMP/bench.db"
            ;;
        postgres)
            ensure_postgres
            psql -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d postgres \
                -c "drop database if exists $PG_DB" \
                -c "create database $PG_DB" >&2
            echo "postgres://postgres@127.0.0.1:5432/$PG_DB"
            ;;
    esac
}

seed() {
    post /v1/prompts '{"name":"bench/greeting","description":"Load benchmark prompt"}'
    post /v1/prompts/bench%2Fgreeting/versions \
        '{"type":"text","template":"Hello {{name}}, welcome to {{place}}!","labels":["production"]}'
    # A chat prompt whose system message includes a partial.
    post /v1/prompts '{"name":"bench/tone","description":"Load benchmark partial"}'
    post /v1/prompts/bench%2Ftone/versions \
        '{"type":"text","template":"Be brief and kind to {{name}}.","labels":["production"]}'
    post /v1/prompts '{"name":"bench/chat","description":"Load benchmark chat prompt"}'
    post /v1/prompts/bench%2Fchat/versions \
        '{"type":"chat","messages":[{"role":"system","content":"You help visitors of {{place}}. {{> bench/tone}}"},{"role":"user","content":"Hello, I am {{name}}."}],"labels":["production"]}'
    # The same template twice, split 50/50 on `production`: without a unit,
    # every request picks a variant at random.
    post /v1/prompts '{"name":"bench/split","description":"Load benchmark experiment"}'
    post /v1/prompts/bench%2Fsplit/versions \
        '{"type":"text","template":"Hello {{name}}, welcome to {{place}}!","labels":["production"]}'
    post /v1/prompts/bench%2Fsplit/versions \
        '{"type":"text","template":"Hi {{name}}, welcome to {{place}}!"}'
    post /v1/prompts/bench%2Fsplit/experiments \
        '{"label":"production","variants":[{"version":"1.0.0","weight":50},{"version":"1.0.1","weight":50}],"metric":"thumbs","direction":"higher","min_samples":100}'
}

bench_backend() {
    local backend="$1" url
    url="$(database_url "$backend")"
    log "[$backend] starting the server"
    start_server "$url"
    log "[$backend] seeding"
    seed

    local bearer="Authorization: Bearer $BENCH_KEY" key_id basic etag
    key_id="$(curl -fsS -H "$bearer" "$BASE/v1/keys" | jq -r '.items[0].id')"
    [ -n "$key_id" ] && [ "$key_id" != null ] || die "cannot read the bench key's id"
    basic="Authorization: Basic $(printf '%s:%s' "$key_id" "$BENCH_KEY" | base64 -w0)"
    etag="$(curl -fsS -D - -o /dev/null -H "$bearer" "$BASE$LABEL_PATH" | awk 'tolower($1) == "etag:" { print $2 }' | tr -d '\r')"
    [ -n "$etag" ] || die "the label read answers no ETag"
    [ "$(curl -sS -o /dev/null -w '%{http_code}' -H "$bearer" -H "If-None-Match: $etag" "$BASE$LABEL_PATH")" = 304 ] \
        || die "If-None-Match does not answer 304"
    curl -fsS -o /dev/null -H "$basic" "$BASE$LANGFUSE_PATH" || die "the Langfuse read failed"
    curl -fsS -o /dev/null -H "$bearer" -H 'content-type: application/json' \
        -d '{"variables": {"name": "Ada", "place": "Paris"}}' "$BASE$CHAT_PATH" || die "the chat render failed"
    curl -fsS -D "$TMP/split-headers" -o /dev/null -H "$bearer" "$BASE$SPLIT_PATH" \
        || die "the split label read failed"
    grep -qi '^x-promptreg-experiment:' "$TMP/split-headers" || die "the split label read names no experiment"

    # Alternate the endpoints so all see the same machine conditions.
    local round name out
    for round in $(seq 1 "$ROUNDS"); do
        for name in $ENDPOINTS; do
            out="$TMP/$backend-$name-$round.txt"
            log "[$backend] round $round: $name for $DURATION"
            case "$name" in
                bare) run_wrk "$BARE_URL" "$out" "" ;;
                healthz) run_wrk "$BASE/healthz" "$out" "" ;;
                label) run_wrk "$BASE$LABEL_PATH" "$out" "" "$bearer" ;;
                revalidate) run_wrk "$BASE$LABEL_PATH" "$out" "" "$bearer" "If-None-Match: $etag" ;;
                render) run_wrk "$BASE$RENDER_PATH" "$out" bench/render.lua "$bearer" ;;
                chat) run_wrk "$BASE$CHAT_PATH" "$out" bench/render.lua "$bearer" ;;
                langfuse) run_wrk "$BASE$LANGFUSE_PATH" "$out" "" "$basic" ;;
                split) run_wrk "$BASE$SPLIT_PATH" "$out" "" "$bearer" ;;
            esac
            record "$TMP/$backend-results.txt" "$name" "$out"
        done
    done
    stop_server
}

# Cold reads: the caches hold nothing, so every label read goes to Postgres
# (one statement); pgbench's select-only run at the same concurrency is the
# ceiling of one round trip per request.
bench_cold() {
    local url
    url="$(database_url postgres)"
    log "[cold] preparing pgbench"
    psql -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d postgres \
        -c "drop database if exists $PGBENCH_DB" -c "create database $PGBENCH_DB" >&2
    pgbench -q -i -s 1 -h 127.0.0.1 -U postgres "$PGBENCH_DB" >/dev/null 2>&1 || die "pgbench -i failed"
    log "[cold] starting the server with the caches off"
    export PROMPTREG_CACHE__MAX_VERSIONS=0 PROMPTREG_CACHE__MAX_PROMPTS=0 PROMPTREG_CACHE__MAX_COMPILED=0
    start_server "$url"
    unset PROMPTREG_CACHE__MAX_VERSIONS PROMPTREG_CACHE__MAX_PROMPTS PROMPTREG_CACHE__MAX_COMPILED
    post /v1/prompts '{"name":"bench/greeting","description":"Load benchmark prompt"}'
    post /v1/prompts/bench%2Fgreeting/versions \
        '{"type":"text","template":"Hello {{name}}, welcome to {{place}}!","labels":["production"]}'
    local bearer="Authorization: Bearer $BENCH_KEY" round out seconds tps
    seconds="${DURATION%s}"
    for round in $(seq 1 "$ROUNDS"); do
        log "[cold] round $round: pgbench -S -M prepared for ${seconds}s"
        out="$TMP/pgbench-$round.txt"
        pgbench -S -M prepared -n -c "$CONNECTIONS" -j 1 -T "$seconds" -h 127.0.0.1 -U postgres "$PGBENCH_DB" >"$out" 2>&1 \
            || { cat "$out" >&2; die "pgbench failed"; }
        tps="$(awk '/^tps = / { print $3; exit }' "$out")"
        [ -n "$tps" ] || { cat "$out" >&2; die "cannot parse pgbench's tps"; }
        echo "pgbench $tps" >>"$TMP/cold-results.txt"
        log "[cold] round $round: cold label read for $DURATION"
        out="$TMP/cold-$round.txt"
        run_wrk "$BASE$LABEL_PATH" "$out" "" "$bearer"
        echo "cold $(wrk_rps "$out") $(wrk_ms "$out" 50) $(wrk_ms "$out" 99)" >>"$TMP/cold-results.txt"
    done
    stop_server
}

# Short commit id, marked "dirty" when tracked files have local changes.
git_rev() {
    local rev
    rev="$(git rev-parse --short HEAD 2>/dev/null)" || { echo "no commit"; return 0; }
    if git diff --quiet HEAD 2>/dev/null; then echo "$rev"; else echo "$rev (dirty)"; fi
}

# ---- report -------------------------------------------------------------------
# The median round per endpoint, by req/s (with its own p50 and p99).
report_backend() {
    local backend="$1"
    sort -k1,1 -k2,2g "$TMP/$backend-results.txt" | awk -v backend="$backend" -v endpoints="$ENDPOINTS" \
        -v label_path="$LABEL_PATH" -v render_path="$RENDER_PATH" -v chat_path="$CHAT_PATH" \
        -v langfuse_path="$LANGFUSE_PATH" -v split_path="$SPLIT_PATH" '
        { n[$1]++; rps[$1, n[$1]] = $2; p50[$1, n[$1]] = $3; p99[$1, n[$1]] = $4 }
        END {
            for (e in n) { m = int((n[e] + 1) / 2); R[e] = rps[e, m]; P50[e] = p50[e, m]; P99[e] = p99[e, m] }
            k = split(endpoints, names, " ")
            for (i = 1; i <= k; i++) {
                e = names[i]
                if (e == "bare") endpoint = "bare axum `GET /`"
                else if (e == "healthz") endpoint = "`GET /healthz`"
                else if (e == "label") endpoint = "`GET " label_path "`"
                else if (e == "revalidate") endpoint = "the same with `If-None-Match` (304)"
                else if (e == "render") endpoint = "`POST " render_path "` (one-line text)"
                else if (e == "chat") endpoint = "`POST " chat_path "` (chat with a partial)"
                else if (e == "langfuse") endpoint = "`GET " langfuse_path "` (Langfuse)"
                else endpoint = "`GET " split_path "` (experiment running)"
                printf "| %s | %s | %.0f | %.2f ms | %.2f ms | %.2f | %.2f | %.2f |\n", backend, endpoint,
                    R[e], P50[e], P99[e], R[e] / R["bare"], P99[e] / P99["bare"], R[e] / R["healthz"]
            }
        }'
}

report_cold() {
    sort -k1,1 -k2,2g "$TMP/cold-results.txt" | awk '
        { n[$1]++; v[$1, n[$1]] = $2; p50[$1, n[$1]] = $3; p99[$1, n[$1]] = $4 }
        END {
            c = int((n["cold"] + 1) / 2); g = int((n["pgbench"] + 1) / 2)
            printf "| `pgbench -S -M prepared` | %.0f tps | | | 1.00 |\n", v["pgbench", g]
            printf "| cold label read (caches off) | %.0f | %.2f ms | %.2f ms | %.2f |\n",
                v["cold", c], p50["cold", c], p99["cold", c], v["cold", c] / v["pgbench", g]
        }'
}

echo "## Load benchmark"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- git: $(git_rev)"
echo "- cpus: $(nproc)"
echo "- cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "- wrk: -t$THREADS -c$CONNECTIONS -d$DURATION --latency; $ROUNDS interleaved rounds, the median round reported"
echo

for backend in "${BACKENDS[@]}"; do
    bench_backend "$backend"
done
cold=false
for backend in "${BACKENDS[@]}"; do
    if [ "$backend" = postgres ]; then cold=true; fi
done
if [ "$cold" = true ]; then
    bench_cold
fi

echo "| backend | endpoint | req/s | p50 | p99 | req/s vs bare | p99 vs bare | req/s vs /healthz |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for backend in "${BACKENDS[@]}"; do
    report_backend "$backend"
done
if [ "$cold" = true ]; then
    echo
    echo "| postgres, $CONNECTIONS connections | req/s | p50 | p99 | vs pgbench |"
    echo "|---|---:|---:|---:|---:|"
    report_cold
fi
