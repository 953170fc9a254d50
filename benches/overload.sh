#!/usr/bin/env bash
# Memory under overload: drive a fresh triaged with 16, 160 and 1,024 keep-alive connections (1x,
# 10x and 64x the comparison's 16), batch 100, pool 1,000 (POOL=... to change), then once more at
# 1,024 connections against a triaged whose writer queue holds only 64 commands, so that most of
# the offered load is refused. Prints per run the accepted alerts/s, the refused (non-2xx: 503 +
# Retry-After) count, p99 latency and the server's peak RSS (VmHWM). Memory must stay bounded while
# the offered load grows: past capacity triaged answers 503 instead of buffering.
#
#   benches/overload.sh [SECONDS]      (default 10 s per run)
#
# Loopback only; stops only the processes it started.
set -euo pipefail
SECS=${1:-10}
POOL=${POOL:-1000}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TRIAGED=$ROOT/target/release/triaged
LOADGEN=$ROOT/target/loadgen/release/loadgen
(cd "$ROOT" && cargo build --release --quiet)
CARGO_TARGET_DIR=$ROOT/target/loadgen cargo build --release --quiet --manifest-path "$ROOT/benches/loadgen/Cargo.toml"
[ "$(ulimit -n)" -ge 4096 ] || ulimit -n 4096

WORK=$(mktemp -d "${TMPDIR:-/tmp}/triaged-overload.XXXXXX")
PID=
stop() {
    if [ -n "$PID" ]; then
        kill "$PID" 2> /dev/null || true
        wait "$PID" 2> /dev/null || true
        PID=
    fi
}
trap 'stop; rm -rf "$WORK"' EXIT

# start NAME EXTRA_TOML: a fresh triaged on a free port; sets PID and PORT.
start() {
    PORT=$((20000 + RANDOM % 20000))
    printf '[log]\nlevel = "warn"\n%b' "$2" > "$WORK/$1.toml"
    "$TRIAGED" run --config "$WORK/$1.toml" --data-dir "$WORK/$1" --listen "127.0.0.1:$PORT" 2> "$WORK/$1.log" &
    PID=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$PORT/-/ready" > /dev/null && return 0
        sleep 0.1
    done
    echo "overload.sh: triaged did not become ready; its log:" >&2
    cat "$WORK/$1.log" >&2
    exit 1
}

# run LABEL CONNECTIONS: one load run against the triaged started last.
run() {
    local out lg aps refused p99 hwm
    out=$("$LOADGEN" --url "http://127.0.0.1:$PORT/api/v2/alerts" --batch 100 --pool "$POOL" \
        --connections "$2" --duration "${SECS}s" --warmup 1s --timeout 30s 2>&1) || true
    lg=$(grep '^LOADGEN ' <<< "$out" | tail -n 1 || true)
    field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<< " $lg"; }
    aps=$(field aps)
    refused=$(field non2xx)
    p99=$(field p99_ms)
    hwm=$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$PID/status")
    printf '%-22s %8s %12s %10s %10s %10s\n' "$1" "$2" "${aps:-?}" "${refused:-?}" "${p99:-?}" "$hwm"
    echo "OVERLOAD case=$1 connections=$2 aps=${aps:-?} refused=${refused:-?} p99_ms=${p99:-?} hwm_mb=$hwm"
}

printf '%-22s %8s %12s %10s %10s %10s\n' server connections alerts/s refused p99_ms hwm_mb
start default ""
for c in 16 160 1024; do
    run default "$c"
done
stop
start queue_capacity=64 '[server]\nqueue_capacity = 64\n'
run queue_capacity=64 1024
