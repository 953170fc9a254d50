#!/usr/bin/env bash
# Measure triaged's start-up with a large store: exec until the "listening" log line and until
# GET /-/ready answers 200, peak RSS (VmHWM) at that point, and the store's size on disk.
#
#   benches/startup.sh [--alerts N] [--incidents N] [--resolved-pct P] [--runs R] [--store DIR]
#
# Defaults: 1,000,000 alerts in 100,000 incidents (10 per incident), none resolved, 3 runs. The
# store is filled by `cargo run --release --example seed_store` (triaged's own writer, group
# commits of thousands of alerts, no HTTP), which takes minutes. With --store DIR an existing store
# there is used as it is (and a new one is kept there); otherwise it lives in a temporary
# directory, removed at the end unless KEEP_WORK=1. The first start after seeding is also the first
# open of the store since it was written, see benches/README.md. Loopback only; stops only the
# processes it started.
set -euo pipefail

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
}

ALERTS=1000000
INCIDENTS=100000
RESOLVED_PCT=0
RUNS=3
STORE=
while (($#)); do
    case "$1" in
        --alerts) ALERTS=${2:?--alerts needs a value}; shift 2 ;;
        --incidents) INCIDENTS=${2:?--incidents needs a value}; shift 2 ;;
        --resolved-pct) RESOLVED_PCT=${2:?--resolved-pct needs a value}; shift 2 ;;
        --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
        --store) STORE=${2:?--store needs a directory}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "startup.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
for n in "$ALERTS" "$INCIDENTS" "$RUNS" "$RESOLVED_PCT"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "startup.sh: $n is not a number" >&2; exit 2; }
done
for tool in cargo curl awk date; do
    command -v "$tool" > /dev/null 2>&1 || { echo "startup.sh: $tool is not on PATH" >&2; exit 2; }
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TRIAGED=$ROOT/target/release/triaged
SEED=$ROOT/target/release/examples/seed_store
WORK=$(mktemp -d "${TMPDIR:-/tmp}/triaged-startup.XXXXXX")
[[ -z $STORE ]] && STORE=$WORK/store
PID=   # the daemon running now
CHILD= # the build or seed running now (see fg_run)
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"

cleanup() { stop_and_clean "logs (and a temporary store)"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() { date +%s.%N; }

# Time the process's threads spent runnable but waiting for a CPU, in seconds (schedstat's
# second field): what a busy machine adds to the wall time.
runq_s() {
    cat /proc/"$1"/task/*/schedstat 2> /dev/null | awk '{ w += $2 } END { printf "%.2f", w / 1e9 }'
}
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

echo "=== triaged start-up with a large store"
echo "date:      $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "machine:   $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory, kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$STORE"
echo "storage:   $STORE on $(df -PT "$STORE" | awk 'NR == 2 { print $2 " (" $1 ")" }')"
echo "triaged:   $(git -C "$ROOT" describe --always --dirty 2> /dev/null || echo '?'), embedded default config"
echo

echo "=== building (cargo build --release, with the seed_store example)"
fg_run cargo build --release --manifest-path "$ROOT/Cargo.toml" --bin triaged --example seed_store
echo

SEEDED=0
if [[ -n $(ls -A "$STORE") ]]; then
    echo "=== using the store already in $STORE (not seeded again)"
    ALERTS=unknown
    INCIDENTS=unknown
else
    echo "=== seeding $ALERTS alerts in $INCIDENTS incidents ($RESOLVED_PCT % resolved) into $STORE"
    fg_run "$SEED" "$STORE" "$ALERTS" "$INCIDENTS" --resolved-pct "$RESOLVED_PCT"
    SEEDED=1
fi
STORE_MB=$(du -sm "$STORE" | cut -f1)
echo "store:     $STORE_MB MB on disk ($(du -sh "$STORE"/db | cut -f1) in sled's log file db)"
echo

FAILED=0
for ((run = 1; run <= RUNS; run++)); do
    port=$(free_port)
    log=$WORK/run-$run.log
    t0=$(now)
    "$TRIAGED" run --listen "127.0.0.1:$port" --data-dir "$STORE" > "$log" 2>&1 &
    PID=$!
    ready=
    while kill -0 "$PID" 2> /dev/null; do
        if curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:$port/-/ready"; then
            ready=$(now)
            break
        fi
        sleep 0.02
    done
    if [[ -z $ready ]]; then
        echo "!!! run $run: triaged exited before it was ready; its log:"
        sed 's/^/    /' "$log"
        wait "$PID" 2> /dev/null || true
        PID=
        FAILED=1
        continue
    fi
    hwm=$(awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$PID/status")
    cpu=$(cpu_s "$PID")
    runq=$(runq_s "$PID")
    # The log line's own timestamp (UTC, RFC 3339), against the exec time.
    at=$(sed -n 's/^\([0-9T:.-]*Z\) .*INFO triaged: listening.*/\1/p' "$log" | head -n 1)
    listening=NA
    [[ -n $at ]] && listening=$(secs "$t0" "$(date -d "$at" +%s.%N)")
    open=$(curl -sf --max-time 10 "http://127.0.0.1:$port/metrics" |
        awk '/^triaged_incidents_open\{/ { n += $2 } END { printf "%d", n }')
    t1=$(now)
    kill -TERM "$PID"
    rc=0
    wait "$PID" || rc=$?
    PID=
    note=""
    ((run == 1 && SEEDED)) && note=" (first open since the seed wrote the store)"
    echo "run $run: listening after ${listening} s, ready after $(secs "$t0" "$ready") s (CPU ${cpu} s, waiting for a CPU ${runq} s), peak RSS ${hwm} MB, ${open} open incidents in /metrics, stopped in $(secs "$t1" "$(now)") s (exit $rc)$note"
    echo "RESULT run=$run ready_s=$(secs "$t0" "$ready") listening_s=$listening cpu_s=$cpu runq_wait_s=$runq hwm_mb=$hwm store_mb=$STORE_MB alerts=$ALERTS incidents=$INCIDENTS open_incidents=$open first_open_after_seed=$((run == 1 && SEEDED))"
    ((rc == 0)) || FAILED=1
done

if ((FAILED)); then
    echo "startup.sh: a run failed (see above)" >&2
    exit 1
fi
