#!/usr/bin/env bash
# Memory under overload: drive one fresh triaged (default limits) with 16, 160 and 1,600 keep-alive
# connections (1x, 10x, 100x the comparison's load), batch 100, pool 100,000, and print per run the
# accepted alerts/s, the refused (non-2xx, i.e. 503 + Retry-After) count and the server's peak RSS
# (VmHWM). Memory must stay bounded while the offered load grows: past capacity triaged answers
# 503 instead of buffering.
#
#   benches/overload.sh [SECONDS]      (default 10 s per run)
#
# Loopback only; stops only the processes it started.
set -euo pipefail
SECS=${1:-10}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TRIAGED=$ROOT/target/release/triaged
LOADGEN=$ROOT/target/loadgen/release/loadgen
(cd "$ROOT" && cargo build --release --quiet)
CARGO_TARGET_DIR=$ROOT/target/loadgen cargo build --release --quiet --manifest-path "$ROOT/benches/loadgen/Cargo.toml"
[ "$(ulimit -n)" -ge 4096 ] || ulimit -n 4096

WORK=$(mktemp -d "${TMPDIR:-/tmp}/triaged-overload.XXXXXX")
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2> /dev/null && wait "$PID" 2> /dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$((20000 + RANDOM % 20000))
printf '[log]\nlevel = "warn"\n' > "$WORK/triaged.toml"
"$TRIAGED" run --config "$WORK/triaged.toml" --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" 2> "$WORK/triaged.log" &
PID=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/-/ready" > /dev/null && break
    sleep 0.1
done

printf '%-12s %12s %10s %10s %10s\n' connections alerts/s refused p99_ms hwm_mb
for c in 16 160 1600; do
    out=$("$LOADGEN" --url "http://127.0.0.1:$PORT/api/v2/alerts" --batch 100 --pool 100000 \
        --connections "$c" --duration "${SECS}s" --warmup 1s --timeout 30s 2>&1)
    lg=$(grep '^LOADGEN ' <<< "$out" | tail -n 1)
    field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<< " $lg"; }
    aps=$(field aps)
    refused=$(field non2xx)
    p99=$(field p99_ms)
    hwm=$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$PID/status")
    printf '%-12s %12s %10s %10s %10s\n' "$c" "${aps:-?}" "${refused:-?}" "${p99:-?}" "$hwm"
    echo "OVERLOAD connections=$c aps=${aps:-?} refused=${refused:-?} hwm_mb=$hwm"
done
