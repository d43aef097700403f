#!/usr/bin/env bash
# MLflow's load_prompt against promptreg and against a real `mlflow server`,
# both on SQLite, on the same machine, side by side in one run.
#
# Usage: bench/mlflow.sh                 (CALLS=500 ROUNDS=3 by default)
#        CALLS=1000 ROUNDS=5 bench/mlflow.sh
#
# Progress goes to stderr; the machine facts and a markdown table to stdout.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN="${CARGO_TARGET_DIR:-target}/release/promptreg"
# The full MLflow server (not the skinny client the tests use), in its own venv.
MLFLOW_VERSION="${MLFLOW_VERSION:-3.17.2}"
VENV=target/mlflow-server-venv
BENCH_KEY="pr_bench$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export PROMPTREG_INIT_ADMIN_KEY="$BENCH_KEY"
export PROMPTREG_RATE_LIMIT__READ__PER_SECOND=10000000 PROMPTREG_RATE_LIMIT__READ__BURST=10000000
export MLFLOW_DISABLE_TELEMETRY=true

log() { echo "--> $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

TMP="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
    local port
    for port in $(seq "$1" "$(($1 + 99))"); do
        if ! port_in_use "$port"; then
            echo "$port"
            return 0
        fi
    done
    die "no free port from $1"
}

wait_for() {
    for _ in $(seq 1 300); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.2
    done
    die "$1 did not answer within 60 s"
}

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
log "installing mlflow==$MLFLOW_VERSION in $VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "mlflow==$MLFLOW_VERSION" >&2

log "building $BIN"
cargo build --release >&2

PROMPTREG_PORT="$(free_port 18280)"
log "starting promptreg on 127.0.0.1:$PROMPTREG_PORT (SQLite)"
RUST_LOG=warn PROMPTREG_DATABASE_URL="sqlite://$TMP/promptreg.db" "$BIN" serve \
    --log-format json --bind "127.0.0.1:$PROMPTREG_PORT" >"$TMP/promptreg.log" 2>&1 &
PIDS+=("$!")
wait_for "http://127.0.0.1:$PROMPTREG_PORT/healthz"

MLFLOW_PORT="$(free_port 18380)"
log "starting mlflow server $MLFLOW_VERSION on 127.0.0.1:$MLFLOW_PORT (SQLite)"
"$VENV/bin/mlflow" server --backend-store-uri "sqlite:///$TMP/mlflow.db" \
    --default-artifact-root "$TMP/artifacts" --host 127.0.0.1 --port "$MLFLOW_PORT" \
    >"$TMP/mlflow.log" 2>&1 &
PIDS+=("$!")
wait_for "http://127.0.0.1:$MLFLOW_PORT/health"

echo "Machine: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD)."
echo "promptreg (release build, SQLite) and mlflow server $MLFLOW_VERSION (its defaults, SQLite) on 127.0.0.1; the client is mlflow $MLFLOW_VERSION."
echo
"$VENV/bin/python" bench/mlflow_load_prompt.py \
    "promptreg=http://127.0.0.1:$PROMPTREG_PORT,$BENCH_KEY" \
    "mlflow server=http://127.0.0.1:$MLFLOW_PORT"
