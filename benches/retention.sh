#!/usr/bin/env bash
# What a retention sweep costs, and what it costs ingestion meanwhile: a store is seeded with
# alerts in incidents, part of them resolved; then, on a copy of it each time, triaged runs under
# a steady load (loadgen, batch 1, pool 1,000, 16 connections) twice: with a retention of 2 s, so
# that its first sweep, a second after start, removes every resolved incident and alert; and with
# the default 30 d, which removes nothing in the run (the baseline). Prints, for each, loadgen's
# alerts/s and latencies, the removals counted, the sweep's own time and the slowest group commit.
#
#   benches/retention.sh [--alerts N] [--incidents N] [--resolved-pct P] [--duration SECS]
#
# Defaults: 1,000,000 alerts in 100,000 incidents, 50 % resolved, 60 s of load (the sweep of that
# store takes about 35 s of it). Seeding takes a
# minute or more (`cargo run --release --example seed_store`). Loopback only; stops only the
# processes it started; the work directory is removed at the end unless KEEP_WORK=1.
set -euo pipefail

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
}

ALERTS=1000000
INCIDENTS=100000
RESOLVED_PCT=50
DURATION=60
while (($#)); do
    case "$1" in
        --alerts | --incidents | --resolved-pct | --duration)
            (($# >= 2)) || { echo "retention.sh: $1 needs a value" >&2; exit 2; }
            case "$1" in
                --alerts) ALERTS=$2 ;;
                --incidents) INCIDENTS=$2 ;;
                --resolved-pct) RESOLVED_PCT=$2 ;;
                --duration) DURATION=$2 ;;
            esac
            shift 2
            ;;
        -h | --help) usage; exit 0 ;;
        *) echo "retention.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
for n in "$ALERTS" "$INCIDENTS" "$RESOLVED_PCT" "$DURATION"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "retention.sh: $n is not a number" >&2; exit 2; }
done
for tool in cargo curl awk cp du; do
    command -v "$tool" > /dev/null 2>&1 || { echo "retention.sh: $tool is not on PATH" >&2; exit 2; }
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TRIAGED=$ROOT/target/release/triaged
SEED=$ROOT/target/release/examples/seed_store
LOADGEN=$ROOT/target/loadgen/release/loadgen
WORK=$(mktemp -d "${TMPDIR:-/tmp}/triaged-retention.XXXXXX")
PID=   # the daemon running now
CHILD= # the build, seed or load running now (see fg_run)
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"

cleanup() { stop_and_clean "logs"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "=== triaged's retention sweep under load"
echo "date:      $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "machine:   $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "triaged:   $(git -C "$ROOT" describe --always --dirty 2> /dev/null || echo '?')"
echo

echo "=== building (triaged and seed_store, then loadgen)"
fg_run cargo build --release --manifest-path "$ROOT/Cargo.toml" --bin triaged --example seed_store
fg_run env CARGO_TARGET_DIR="$ROOT/target/loadgen" cargo build --release \
    --manifest-path "$ROOT/benches/loadgen/Cargo.toml"
echo

echo "=== seeding $ALERTS alerts in $INCIDENTS incidents ($RESOLVED_PCT % resolved)"
fg_run "$SEED" "$WORK/seed" "$ALERTS" "$INCIDENTS" --resolved-pct "$RESOLVED_PCT"
echo "store:     $(du -sm "$WORK/seed" | cut -f1) MB on disk"
echo

# One run: the seeded store copied, triaged with this retention, loadgen for DURATION seconds.
run() {
    local retention=$1 dir=$WORK/run-$1 port out removed took slowest
    rm -rf "$dir"
    mkdir -p "$dir"
    cp -a "$WORK/seed" "$dir/data"
    # The windows that bound retention from below, shortened with it.
    printf '[storage]\nretention = "%s"\n[dedup]\nreopen_window = "1s"\n[flapping]\nwindow = "1s"\n' \
        "$retention" > "$dir/triaged.toml"
    port=$(free_port)
    "$TRIAGED" run --config "$dir/triaged.toml" --listen "127.0.0.1:$port" \
        --data-dir "$dir/data" > "$dir/log" 2>&1 &
    PID=$!
    until curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:$port/-/ready"; do
        kill -0 "$PID" 2> /dev/null || { echo "!!! triaged exited; its log:"; cat "$dir/log"; exit 1; }
        sleep 0.05
    done
    out=$("$LOADGEN" --url "http://127.0.0.1:$port/api/v2/alerts" --batch 1 --pool 1000 \
        --connections 16 --duration "${DURATION}s" --warmup 1s | grep '^LOADGEN')
    removed=$(curl -sf "http://127.0.0.1:$port/metrics" |
        awk '/^triaged_retention_removed_total/ { n += $2 } END { printf "%d", n }')
    # The slowest group commit: the histogram's lowest bucket that holds them all.
    slowest=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '
        /^triaged_store_flush_seconds_count/ { total = $2 }
        /^triaged_store_flush_seconds_bucket/ { le[++n] = $1; c[n] = $2 }
        END { for (i = 1; i <= n; i++) if (c[i] == total) { sub(/.*le="/, "", le[i]); sub(/".*/, "", le[i]); print le[i]; exit } }')
    took=$(sed -n 's/.*retention: removed.*took_ms=\([0-9]*\).*/\1/p; s/.*"took_ms":\([0-9]*\).*/\1/p' "$dir/log" | head -n 1)
    kill -TERM "$PID"
    wait "$PID" || true
    PID=
    echo "retention $retention: ${out#LOADGEN }"
    echo "    removed $removed (incidents, alerts), sweep ${took:-none} ms, slowest commit <= ${slowest}s"
    echo "RESULT retention=$retention aps=$(sed -n 's/.* aps=\([^ ]*\).*/\1/p' <<< "$out") p99_ms=$(sed -n 's/.* p99_ms=\([^ ]*\).*/\1/p' <<< "$out") max_ms=$(sed -n 's/.* max_ms=\([^ ]*\).*/\1/p' <<< "$out") removed=$removed sweep_ms=${took:-0}"
    rm -rf "$dir"
}

echo "=== load for ${DURATION} s: the first sweep removing what is resolved, then the baseline"
run 2s
run 30d
