#!/usr/bin/env bash
# Push benchmark: `promptreg push` of a folder of 1,000 prompt files to a local
# server, on the SQLite and PostgreSQL backends. Three pushes per backend: the
# first creates every prompt, the second finds them all unchanged, the third
# after 10 files changed. Each is timed end to end (process start to exit).
#
# Usage: bench/push.sh [sqlite] [postgres]      (default: both)
#        FILES=5000 RATE=default bench/push.sh postgres
#
# RATE=high (default) lifts the server's write rate limit so that the server,
# not the limiter, is measured; RATE=default keeps the shipped limit (100
# writes/s per key), which a first push of a large folder then runs into.
# Progress goes to stderr; a markdown table goes to stdout.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

FILES="${FILES:-1000}"
RATE="${RATE:-high}"
PG_DB=promptreg_bench_push
BIN=target/release/promptreg
BENCH_KEY="pr_bench$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export PROMPTREG_INIT_ADMIN_KEY="$BENCH_KEY"
if [ "$RATE" = high ]; then
    export PROMPTREG_RATE_LIMIT__WRITE__PER_SECOND=10000000 PROMPTREG_RATE_LIMIT__WRITE__BURST=10000000
fi
export PROMPTREG_RATE_LIMIT__READ__PER_SECOND=10000000 PROMPTREG_RATE_LIMIT__READ__BURST=10000000

if [ "$#" -gt 0 ]; then BACKENDS=("$@"); else BACKENDS=(sqlite postgres); fi

log() { echo "--> $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

TMP="$(mktemp -d)"
SERVER_PID=""
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
trap 'stop_server; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

log "building $BIN"
cargo build --release >&2

# A folder of prompt files: a third chat prompts with a placeholder and a
# schema, the rest text prompts, in 20 folders.
make_prompts() {
    local dir="$1" i folder
    for i in $(seq 1 "$FILES"); do
        folder="$dir/team$((i % 20))"
        mkdir -p "$folder"
        if [ $((i % 3)) -eq 0 ]; then
            cat >"$folder/chat$i.prompt.yaml" <<YAML
description: Chat prompt $i
tags: [bench, chat]
model_config: {model: gpt-4o-mini, temperature: 0.2}
input_schema:
  type: object
  properties: {question: {type: string}, history: {type: array}}
messages:
  - role: system
    content: You are assistant number $i. Be brief.
  - role: placeholder
    name: history
  - role: user
    content: "{{question}}"
YAML
        else
            cat >"$folder/text$i.prompt.yaml" <<YAML
description: Text prompt $i
tags: [bench]
template: |
  Hello {{name}}, this is prompt $i.
  {{#if place}}Welcome to {{place}}.{{/if}}
YAML
        fi
    done
}

# time_push LABEL: runs push, prints seconds; requires exit 0.
time_push() {
    local start end
    start="$(date +%s.%N)"
    "$BIN" push "$TMP/prompts" --server "$BASE" --token "$BENCH_KEY" --output json >"$TMP/report.json" \
        || { cat "$TMP/report.json" >&2; die "push failed ($1)"; }
    end="$(date +%s.%N)"
    python3 -c "import json,sys; r=json.load(open('$TMP/report.json')); print(len(r['created']), len(r['new_versions']), len(r['unchanged']), len(r['failed']), file=sys.stderr)"
    python3 -c "print(f\"{$end - $start:.2f}\")"
}

bench_backend() {
    local backend="$1" url port
    case "$backend" in
        sqlite) url="sqlite://$TMP/bench-push.db" ;;
        postgres)
            pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect 15 main start >&2
            psql -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d postgres \
                -c "drop database if exists $PG_DB" -c "create database $PG_DB" >&2
            url="postgres://postgres@127.0.0.1:5432/$PG_DB"
            ;;
        *) die "unknown backend '$backend'" ;;
    esac
    port=18290
    BASE="http://127.0.0.1:$port"
    DATABASE_URL="$url" RUST_LOG=warn "$BIN" serve --bind "127.0.0.1:$port" >"$TMP/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        curl -fsS -o /dev/null "$BASE/readyz" 2>/dev/null && break
        sleep 0.1
    done
    rm -rf "$TMP/prompts"
    make_prompts "$TMP/prompts"
    log "[$backend] first push (created, new versions, unchanged, failed):"
    local first second third
    first="$(time_push first)"
    log "[$backend] second push:"
    second="$(time_push second)"
    for i in $(seq 1 10); do
        sed -i "s/this is prompt/this was prompt/" "$(find "$TMP/prompts" -name "text*.prompt.yaml" | sort | sed -n "${i}p")"
    done
    log "[$backend] third push:"
    third="$(time_push third)"
    echo "| $backend | $FILES | $RATE | $first | $second | $third |"
    stop_server
    [ "$backend" != postgres ] || psql -q -h 127.0.0.1 -U postgres -d postgres -c "drop database if exists $PG_DB" >&2
}

echo "| backend | files | write limit | first push (all created), s | second push (all unchanged), s | third push (10 changed), s |"
echo "|---|---|---|---|---|---|"
for backend in "${BACKENDS[@]}"; do
    bench_backend "$backend"
done
