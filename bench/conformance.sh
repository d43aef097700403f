#!/usr/bin/env bash
# OpenAPI conformance: schemathesis generates requests from the served
# /openapi.json and checks every answer against the document (no server
# errors; status codes, content types and bodies as documented), on the
# SQLite and PostgreSQL backends. Too slow for the default test run; the
# suite's own check (tests/api/support.rs `assert_documented`) stays there.
#
# Usage: bench/conformance.sh [sqlite] [postgres]          (default: both)
#        MAX_EXAMPLES=50 PHASES=examples,coverage,fuzzing bench/conformance.sh sqlite
#        BIN=target/release/promptreg bench/conformance.sh  (default: a debug build)
#
# schemathesis is installed into a virtualenv ($VENV, default
# target/conformance-venv) on first use. Progress goes to stderr; one
# markdown table row per backend goes to stdout. Exits non-zero when a
# backend has a failure; each backend's full report stays in $OUT.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

MAX_EXAMPLES="${MAX_EXAMPLES:-20}"
PHASES="${PHASES:-examples,coverage,fuzzing}"
WORKERS="${WORKERS:-1}"
CHECKS="not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
SCHEMATHESIS_VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"
VENV="${VENV:-target/conformance-venv}"
OUT="${OUT:-target/conformance}"
PG_DB=promptreg_conformance
BIN="${BIN:-}"
KEY="pr_conformance$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export PROMPTREG_INIT_ADMIN_KEY="$KEY"
# What is checked is the document, not the rate limits.
for scope in read write promote evaluate admin; do
    upper="$(echo "$scope" | tr '[:lower:]' '[:upper:]')"
    export "PROMPTREG_RATE_LIMIT__${upper}__PER_SECOND=10000000" "PROMPTREG_RATE_LIMIT__${upper}__BURST=10000000"
done
# No worker: generated evaluations stay queued instead of calling providers.
export PROMPTREG_WORKER__COUNT=0

if [ "$#" -gt 0 ]; then BACKENDS=("$@"); else BACKENDS=(sqlite postgres); fi
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
cleanup() { stop_server; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- tools ------------------------------------------------------------------
if [ ! -x "$VENV/bin/st" ]; then
    log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION" >&2
fi
if [ -z "$BIN" ]; then
    log "building promptreg"
    cargo build -q >&2
    BIN="${CARGO_TARGET_DIR:-target}/debug/promptreg"
fi
mkdir -p "$OUT"
# Absolute: schemathesis runs inside $OUT, where it keeps its example database.
OUT="$(cd "$OUT" && pwd)"
VENV="$(cd "$VENV" && pwd)"

free_port() {
    local port
    for port in $(seq 18280 18379); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    die "no free port in 18280-18379"
}

# run_st NAME AUTH_ARGS... : one schemathesis run into $OUT/schemathesis-NAME.*;
# prints "requests 5xx failed errors status".
run_st() {
    local name="$1" report ndjson st_status
    shift
    report="$OUT/schemathesis-$name.txt"
    rm -rf "$OUT/reports-$name"
    set +e
    (cd "$OUT" && "$VENV/bin/st" run "$base/openapi.json" "$@" \
        --checks "$CHECKS" \
        --phases "$PHASES" \
        --max-examples "$MAX_EXAMPLES" \
        --workers "$WORKERS" \
        --request-timeout 60 \
        --continue-on-failure \
        --suppress-health-check all \
        --report ndjson --report-dir "$OUT/reports-$name" \
        --no-color) >"$report" 2>&1
    st_status=$?
    set -e
    ndjson="$(ls "$OUT/reports-$name"/*.ndjson)"
    echo "$(grep -o '"status_code":[0-9]*' "$ndjson" | wc -l)" \
        "$(grep -o '"status_code":5[0-9][0-9]' "$ndjson" | wc -l)" \
        "$(grep -oE '[0-9]+ failed' "$report" | tail -1 | grep -oE '[0-9]+' || echo 0)" \
        "$(grep -cE '^_+ .* _+$' "$report" || true)" \
        "$st_status"
}

# ---- one backend --------------------------------------------------------------
status=0
echo "| backend | requests | 5xx answers | failed checks | errors | result |"
echo "| --- | --- | --- | --- | --- | --- |"
for backend in "${BACKENDS[@]}"; do
    case "$backend" in
        sqlite) url="sqlite://$TMP/conformance.db" ;;
        postgres)
            psql -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d postgres \
                -c "drop database if exists $PG_DB with (force)" \
                -c "create database $PG_DB" >&2
            url="postgres://postgres@127.0.0.1:5432/$PG_DB"
            ;;
    esac
    port="$(free_port)"
    base="http://127.0.0.1:$port"
    log "[$backend] starting promptreg on $base"
    DATABASE_URL="$url" RUST_LOG=warn "$BIN" serve --bind "127.0.0.1:$port" --log-format json \
        >"$OUT/server-$backend.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/server-$backend.log" >&2; die "server exited"; }
        curl -fsS -o /dev/null "$base/readyz" 2>/dev/null && break
        sleep 0.1
    done
    # Something to find: a prompt with a labelled version, a dataset, and
    # an admin key pair for the Langfuse routes (Basic auth).
    auth=(-H "Authorization: Bearer $KEY" -H 'content-type: application/json')
    curl -fsS -o /dev/null "${auth[@]}" -d '{"name":"greet"}' "$base/v1/prompts"
    curl -fsS -o /dev/null "${auth[@]}" -d '{"template":"Hello {{name}}","labels":["production"]}' \
        "$base/v1/prompts/greet/versions"
    curl -fsS -o /dev/null "${auth[@]}" -d '{"name":"rows"}' "$base/v1/datasets"
    pair="$(curl -fsS "${auth[@]}" -d '{"name":"langfuse","scopes":["admin"]}' "$base/v1/keys" \
        | python3 -c 'import json, sys; k = json.load(sys.stdin); print(k["id"] + ":" + k["key"])')"

    # The OTLP trace sink takes protobuf, which schemathesis cannot generate.
    log "[$backend] schemathesis on /v1 and the service routes: $PHASES, $MAX_EXAMPLES examples per operation"
    read -r r1 e1 f1 x1 s1 < <(run_st "$backend-v1" --header "Authorization: Bearer $KEY" \
        --exclude-path-regex '^/api/public/')
    log "[$backend] schemathesis on the Langfuse routes (Basic auth)"
    read -r r2 e2 f2 x2 s2 < <(run_st "$backend-langfuse" --auth "$pair" \
        --include-path-regex '^/api/public/' --exclude-path /api/public/otel/v1/traces)
    stop_server
    result=passed
    if [ "$s1" -ne 0 ] || [ "$s2" -ne 0 ]; then
        result="failed (see $OUT/schemathesis-$backend-*.txt)"
        status=1
    fi
    echo "| $backend | $((r1 + r2)) | $((e1 + e2)) | $((f1 + f2)) | $((x1 + x2)) | $result |"
done
exit "$status"
