#!/usr/bin/env bash
# Load benchmark: the hot read path (prompt version by label) against /healthz,
# on the SQLite and PostgreSQL backends; and the same read of a label with an
# experiment running on it (each request picks a variant), against the plain one.
#
# Usage: bench/load.sh [sqlite] [postgres]      (default: both)
#        DURATION=30s bench/load.sh sqlite
#
# Progress goes to stderr; the machine facts and a markdown table go to stdout.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION="${DURATION:-10s}"
THREADS=2
CONNECTIONS=64
ROUNDS=2
PG_DB=promptreg_bench
BIN=target/release/promptreg
LABEL_PATH="/v1/prompts/bench%2Fgreeting/versions/production"
RENDER_PATH="/v1/prompts/bench%2Fgreeting/render"
SPLIT_PATH="/v1/prompts/bench%2Fsplit/versions/production"
ENDPOINTS="healthz label render split"
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

# Stop the server: SIGTERM, up to 5 s to exit, then SIGKILL.
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
cleanup() {
    stop_server
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
command -v curl >/dev/null 2>&1 || die "curl is required"

log "building $BIN"
cargo build --release >&2

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

# post PATH JSON: POST a JSON body and require 201 Created.
post() {
    local status
    status="$(curl -sS -o "$TMP/response" -w '%{http_code}' \
        -H "Authorization: Bearer $BENCH_KEY" -H 'content-type: application/json' -d "$2" "$BASE$1")"
    [ "$status" = 201 ] || die "POST $1 returned $status: $(cat "$TMP/response")"
}

# run_wrk PATH OUTFILE [LUA]: one wrk run; fails on any non-2xx/3xx response.
run_wrk() {
    local lua=()
    [ -z "${3:-}" ] || lua=(-s "$3")
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "${lua[@]}" \
        -H "Authorization: Bearer $BENCH_KEY" "$BASE$1" >"$2"
    if grep -q 'Non-2xx or 3xx responses' "$2"; then
        cat "$2" >&2
        die "wrk saw error responses for $1"
    fi
    if grep -q 'Socket errors' "$2"; then
        log "warning: $(grep 'Socket errors' "$2") ($1)"
    fi
}

# Requests/sec from a wrk report.
wrk_rps() {
    awk '$1 == "Requests/sec:" { print $2 }' "$1"
}

# 99th percentile latency from a wrk --latency report, in milliseconds.
wrk_p99_ms() {
    awk '$1 == "99%" {
        v = $2
        if (v ~ /us$/)      { sub(/us$/, "", v); v = v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); v = v + 0 }
        else if (v ~ /s$/)  { sub(/s$/, "", v);  v = v * 1000 }
        else                { exit 1 }
        printf "%.3f\n", v
    }' "$1"
}

# ---- one backend --------------------------------------------------------------
bench_backend() {
    local backend="$1" url port

    case "$backend" in
        sqlite)
            url="sqlite://$TMP/bench.db"
            ;;
        postgres)
            ensure_postgres
            psql -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d postgres \
                -c "drop database if exists $PG_DB" \
                -c "create database $PG_DB" >&2
            url="postgres://postgres@127.0.0.1:5432/$PG_DB"
            ;;
    esac

    port="$(free_port)"
    BASE="http://127.0.0.1:$port"

    log "[$backend] migrating"
    DATABASE_URL="$url" RUST_LOG=warn "$BIN" migrate >&2

    log "[$backend] starting server on $BASE"
    DATABASE_URL="$url" RUST_LOG=warn \
        "$BIN" serve --bind "127.0.0.1:$port" --log-format json \
        >"$TMP/server-$backend.log" 2>&1 &
    SERVER_PID=$!

    local ready=false
    for _ in $(seq 1 300); do
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server-$backend.log" >&2; die "server exited"; }
        if curl -fsS -o /dev/null "$BASE/readyz" 2>/dev/null; then
            ready=true
            break
        fi
        sleep 0.1
    done
    [ "$ready" = true ] || die "server not ready after 30 s"

    log "[$backend] seeding"
    post /v1/prompts '{"name":"bench/greeting","description":"Load benchmark prompt"}'
    post /v1/prompts/bench%2Fgreeting/versions \
        '{"type":"text","template":"Hello {{name}}, welcome to {{place}}!","labels":["production"]}'
    curl -fsS -o /dev/null -H "Authorization: Bearer $BENCH_KEY" "$BASE$LABEL_PATH" \
        || die "label read failed after seeding"
    # The same template twice, split 50/50 on `production`: without a unit,
    # every request picks a variant at random.
    post /v1/prompts '{"name":"bench/split","description":"Load benchmark experiment"}'
    post /v1/prompts/bench%2Fsplit/versions \
        '{"type":"text","template":"Hello {{name}}, welcome to {{place}}!","labels":["production"]}'
    post /v1/prompts/bench%2Fsplit/versions \
        '{"type":"text","template":"Hi {{name}}, welcome to {{place}}!"}'
    post /v1/prompts/bench%2Fsplit/experiments \
        '{"label":"production","variants":[{"version":"1.0.0","weight":50},{"version":"1.0.1","weight":50}],"metric":"thumbs","direction":"higher","min_samples":100}'
    curl -fsS -D "$TMP/split-headers" -o /dev/null -H "Authorization: Bearer $BENCH_KEY" "$BASE$SPLIT_PATH" \
        || die "split label read failed after seeding"
    grep -qi '^x-promptreg-experiment:' "$TMP/split-headers" || die "the split label read names no experiment"
    curl -fsS -o /dev/null -H "Authorization: Bearer $BENCH_KEY" -H 'content-type: application/json' \
        -d '{"variables": {"name": "Ada", "place": "Paris"}}' "$BASE$RENDER_PATH" \
        || die "render failed after seeding"

    # Alternate the endpoints so both see the same machine conditions.
    local round name path out rps p99
    for round in $(seq 1 "$ROUNDS"); do
        for name in $ENDPOINTS; do
            local script=""
            case "$name" in
                healthz) path=/healthz ;;
                label) path="$LABEL_PATH" ;;
                render) path="$RENDER_PATH"; script=bench/render.lua ;;
                split) path="$SPLIT_PATH" ;;
            esac
            out="$TMP/$backend-$name-$round.txt"
            log "[$backend] round $round: $path for $DURATION"
            run_wrk "$path" "$out" "$script"
            rps="$(wrk_rps "$out")"
            p99="$(wrk_p99_ms "$out")" || die "cannot parse the 99% latency in $out"
            if [ -z "$rps" ] || [ -z "$p99" ]; then
                cat "$out" >&2
                die "cannot parse wrk output in $out"
            fi
            echo "$name $rps $p99" >>"$TMP/$backend-results.txt"
        done
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
# Best round per endpoint = the round with the highest req/s (with its own p99).
report_backend() {
    local backend="$1"
    awk -v backend="$backend" -v label_path="$LABEL_PATH" -v render_path="$RENDER_PATH" \
        -v split_path="$SPLIT_PATH" -v endpoints="$ENDPOINTS" '
        $2 > rps[$1] { rps[$1] = $2; p99[$1] = $3 }
        END {
            n = split(endpoints, names, " ")
            for (i = 1; i <= n; i++) {
                e = names[i]
                if (e == "healthz") endpoint = "GET /healthz"
                else if (e == "label") endpoint = "GET " label_path
                else if (e == "split") endpoint = "GET " split_path " (experiment running)"
                else endpoint = "POST " render_path
                printf "| %s | `%s` | %.0f | %.2f ms | %.2f | %.2f |\n", backend, endpoint,
                    rps[e], p99[e], rps[e] / rps["healthz"], p99[e] / p99["healthz"]
            }
        }' "$TMP/$backend-results.txt"
}

echo "## Load benchmark"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- git: $(git_rev)"
echo "- cpus: $(nproc)"
echo "- cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "- wrk: -t$THREADS -c$CONNECTIONS -d$DURATION --latency, $ROUNDS rounds per endpoint, best req/s reported"
echo

for backend in "${BACKENDS[@]}"; do
    bench_backend "$backend"
done

echo "| backend | endpoint | req/s | p99 | req/s vs /healthz | p99 vs /healthz |"
echo "|---|---|---:|---:|---:|---:|"
for backend in "${BACKENDS[@]}"; do
    report_backend "$backend"
done

# An experiment's cost on a label read: the split read against the plain one,
# measured in the same run (the target is at most 10% fewer requests/s).
echo
echo "| backend | label read with an experiment running, req/s vs without | p99 vs without |"
echo "|---|---:|---:|"
for backend in "${BACKENDS[@]}"; do
    awk -v backend="$backend" '
        $2 > rps[$1] { rps[$1] = $2; p99[$1] = $3 }
        END { printf "| %s | %.2f | %.2f |\n", backend, rps["split"] / rps["label"], p99["split"] / p99["label"] }
    ' "$TMP/$backend-results.txt"
done
