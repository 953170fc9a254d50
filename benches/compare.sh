#!/usr/bin/env bash
# Compare triaged's Alertmanager API v2 ingestion (POST /api/v2/alerts) with Debian's Alertmanager.
#
#   benches/compare.sh [--quick] [--rounds N] [--case BATCHxPOOL]... [--engine raw|hyper]
#
# For each case (batch 1 and 100 alerts per request) x (pool of 1,000 and 100,000 label sets), with
# 16 keep-alive connections for 30 s (--quick: 5 s) after a 1 s warmup, it starts Alertmanager and
# then triaged, each fresh (new port on 127.0.0.1, new temporary storage), drives it with
# benches/loadgen, reads its peak RSS (VmHWM) and CPU time from /proc, and stops it with SIGTERM.
# --rounds N does that N times per case, the two servers in turn, and reports medians; --case
# (repeatable, e.g. --case 1x1000) runs only the cases named. --engine picks loadgen's HTTP client:
# hyper (the default: hyper's client) or raw (prebuilt requests, the least CPU a request).
# Everything stays on loopback. It installs nothing: prometheus-alertmanager must be on PATH.
# Only processes this script started are stopped (trap on EXIT). See benches/README.md.
set -euo pipefail

usage() {
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
}

QUICK=0
ROUNDS=1
ONLY=()
ENGINE=hyper
while (($#)); do
    case "$1" in
        --quick) QUICK=1 ;;
        --rounds | --case | --engine)
            if (($# < 2)); then
                echo "compare.sh: $1 needs a value" >&2
                usage >&2
                exit 2
            fi
            if [[ $1 == --engine ]]; then
                if ! [[ $2 =~ ^(raw|hyper)$ ]]; then
                    echo "compare.sh: --engine takes raw or hyper, not '$2'" >&2
                    exit 2
                fi
                ENGINE=$2
            elif [[ $1 == --rounds ]]; then
                if ! [[ $2 =~ ^[1-9][0-9]*$ ]] || (($2 > 99)); then
                    echo "compare.sh: --rounds takes a number from 1 to 99, not '$2'" >&2
                    exit 2
                fi
                ROUNDS=$2
            else
                if ! [[ $2 =~ ^(1|100)x(1000|100000)$ ]]; then
                    echo "compare.sh: --case takes one of 1x1000, 1x100000, 100x1000, 100x100000, not '$2'" >&2
                    exit 2
                fi
                ONLY+=("$2")
            fi
            shift
            ;;
        -h | --help) usage; exit 0 ;;
        *) echo "compare.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

DURATION=30s
[[ $QUICK == 1 ]] && DURATION=5s
WARMUP=1s
CONNECTIONS=16
BATCHES=(1 100)
POOLS=(1000 100000)

if ! command -v prometheus-alertmanager > /dev/null 2>&1; then
    echo "compare.sh: prometheus-alertmanager is not on PATH." >&2
    echo "  This script installs nothing; on Debian: apt-get install prometheus-alertmanager (tests/run.sh does that too)." >&2
    exit 2
fi
for tool in cargo curl awk; do
    if ! command -v "$tool" > /dev/null 2>&1; then
        echo "compare.sh: $tool is not on PATH." >&2
        exit 2
    fi
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TRIAGED=$ROOT/target/release/triaged
LOADGEN_TARGET=$ROOT/target/loadgen
LOADGEN=$LOADGEN_TARGET/release/loadgen

WORK=$(mktemp -d "${TMPDIR:-/tmp}/triaged-bench.XXXXXX")
STARTED=() # pids of servers this script started and has not reaped yet
CHILD=      # pid of the build or load generator running now (see fg_run)
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"

forget_pid() {
    local keep=() p
    for p in "${STARTED[@]}"; do [[ $p != "$1" ]] && keep+=("$p"); done
    STARTED=("${keep[@]}")
}

cleanup() {
    local p i
    if [[ -n $CHILD ]]; then
        kill -TERM "$CHILD" 2> /dev/null || true
        wait "$CHILD" 2> /dev/null || true
    fi
    for p in "${STARTED[@]}"; do
        kill -TERM "$p" 2> /dev/null || true
    done
    for p in "${STARTED[@]}"; do
        for ((i = 0; i < 150; i++)); do
            kill -0 "$p" 2> /dev/null || break
            [[ $(proc_state "$p") == Z ]] && break
            sleep 0.1
        done
        kill -KILL "$p" 2> /dev/null || true
        wait "$p" 2> /dev/null || true
    done
    STARTED=()
    if [[ ${KEEP_WORK:-0} == 1 ]]; then
        echo "compare.sh: logs and data kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# State letter of a process from /proc/PID/stat ("" when gone).
proc_state() {
    local s
    s=$(cat "/proc/$1/stat" 2> /dev/null) || return 0
    s=${s##*) }
    echo "${s%% *}"
}

# Peak resident set size in MB (VmHWM).
hwm_mb() {
    awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2> /dev/null || echo NA
}

# wait_ready URL PID SECONDS: 0 once URL answers 2xx, 1 if the process died or time ran out.
wait_ready() {
    local url=$1 pid=$2 deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2> /dev/null || [[ $(proc_state "$pid") == Z ]]; then
            return 1
        fi
        curl -sf --max-time 1 -o /dev/null "$url" && return 0
        sleep 0.1
    done
    return 1
}

# stop_server PID: SIGTERM, wait up to 30 s (then SIGKILL). Sets STOP_SECS and STOP_STATUS.
stop_server() {
    local pid=$1 t0 i st rc=0
    STOP_STATUS=
    t0=$(date +%s.%N)
    kill -TERM "$pid" 2> /dev/null || true
    # One read of the state per look: bash reaps an exited child on SIGCHLD, so /proc/PID can
    # vanish between two reads (a zombie one moment, gone the next), which once printed
    # "killed" for a server that had exited at once.
    for ((i = 0; i < 300; i++)); do
        st=$(proc_state "$pid")
        [[ -z $st || $st == Z ]] && break
        sleep 0.1
    done
    st=$(proc_state "$pid")
    if [[ -n $st && $st != Z ]]; then
        kill -KILL "$pid" 2> /dev/null || true
        STOP_STATUS="killed (no exit 30s after SIGTERM)"
    fi
    wait "$pid" 2> /dev/null || rc=$?
    forget_pid "$pid"
    STOP_SECS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    [[ -z $STOP_STATUS ]] && STOP_STATUS="exit $rc"
    return 0
}

field() { # field NAME LINE: value of NAME=... in a "LOADGEN k=v ..." line
    sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<< "$2"
}

declare -A R # R[server,case,round,key]
FAILED=0

# run_one SERVER BATCH POOL ROUND
run_one() {
    local server=$1 batch=$2 pool=$3 case="${2}x${3}" round=$4 port dir log pid url out lg alive id of=""
    id="$case,$round"
    ((ROUNDS > 1)) && of=", round $round of $ROUNDS"
    port=$(free_port)
    dir=$(mktemp -d "$WORK/$server-$case-$round.XXXX")
    log=$dir/server.log
    if [[ $server == alertmanager ]]; then
        printf 'route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n' > "$dir/alertmanager.yml"
        prometheus-alertmanager --config.file="$dir/alertmanager.yml" --storage.path="$dir/data" \
            --web.listen-address="127.0.0.1:$port" --cluster.listen-address= > "$log" 2>&1 &
    else
        "$TRIAGED" run --listen "127.0.0.1:$port" --data-dir "$dir/data" > "$log" 2>&1 &
    fi
    pid=$!
    STARTED+=("$pid")
    echo "--- $server, case $case (batch $batch, pool $pool$of): pid $pid on 127.0.0.1:$port"
    if ! wait_ready "http://127.0.0.1:$port/-/ready" "$pid" 30; then
        echo "!!! $server did not become ready (or died); last log lines:"
        tail -n 20 "$log" | sed 's/^/    /'
        stop_server "$pid"
        echo "    stopped: $STOP_STATUS"
        FAILED=1
        return 0
    fi
    url="http://127.0.0.1:$port/api/v2/alerts"
    out=$dir/loadgen.out
    fg_run "$LOADGEN" --url "$url" --batch "$batch" --pool "$pool" --connections "$CONNECTIONS" \
        --duration "$DURATION" --warmup "$WARMUP" --engine "$ENGINE" > "$out" 2>&1 || true
    sed 's/^/    /' "$out"
    alive=yes
    if ! kill -0 "$pid" 2> /dev/null || [[ $(proc_state "$pid") == Z ]]; then alive=no; fi
    R[$server,$id,hwm]=$(hwm_mb "$pid")
    R[$server,$id,cpu]=$(cpu_s "$pid")
    if [[ $server == triaged && $alive == yes ]]; then
        # What triaged itself counted: refusals (503 overloaded ...) and durable-flush times.
        curl -sf --max-time 5 "http://127.0.0.1:$port/metrics" > "$dir/metrics.txt" || true
        awk '
            /^triaged_alerts_received_total/ { recv += $2 }
            /^triaged_alerts_rejected_total/ { if ($2 > 0) rej = rej " " $1 "=" $2 }
            /^triaged_store_flush_seconds_sum/ { fs = $2 }
            /^triaged_store_flush_seconds_count/ { fc = $2 }
            /^triaged_incidents_open\{/ { open += $2 }
            END {
                printf "    triaged metrics: received=%d open_incidents=%d flushes=%d mean_flush_ms=%.2f rejected:%s\n",
                    recv, open, fc, (fc > 0 ? fs / fc * 1000 : 0), (rej == "" ? " none" : rej)
            }' "$dir/metrics.txt"
    fi
    if [[ $alive == no ]]; then
        echo "!!! $server died during the load; last log lines:"
        tail -n 20 "$log" | sed 's/^/    /'
        FAILED=1
    fi
    stop_server "$pid"
    local warn
    warn=$(grep -ciE 'level=(warn|error)|\b(WARN|ERROR)\b|panicked' "$log" || true)
    echo "    $server: peak RSS ${R[$server,$id,hwm]} MB, CPU ${R[$server,$id,cpu]} s, stopped after SIGTERM in ${STOP_SECS} s ($STOP_STATUS), log: $(wc -l < "$log") lines, $warn warn/error/panic"
    if ((warn > 0)); then
        grep -iE 'level=(warn|error)|\b(WARN|ERROR)\b|panicked' "$log" | head -n 5 | cut -c1-300 | sed 's/^/      /'
    fi
    lg=$(grep '^LOADGEN ' "$out" | tail -n 1 || true)
    if [[ -z $lg ]]; then
        echo "!!! loadgen printed no result"
        FAILED=1
        return 0
    fi
    local k
    for k in aps rps p50_ms p99_ms p999_ms max_ms non2xx errors; do
        R[$server,$id,$k]=$(field "$k" "$lg")
    done
}

echo "=== triaged vs Alertmanager: POST /api/v2/alerts ingestion"
echo "date:      $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "machine:   $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory, kernel $(uname -r)"
echo "storage:   $WORK on $(df -PT "$WORK" | awk 'NR == 2 { print $2 " (" $1 ")" }')"
echo "servers:   $(prometheus-alertmanager --version 2>&1 | head -n 1); triaged $(git -C "$ROOT" describe --always --dirty 2> /dev/null || echo '?') (embedded default config)"
echo "load:      $CONNECTIONS connections, closed loop, ${DURATION} measured after ${WARMUP} warmup, batches ${BATCHES[*]}, pools ${POOLS[*]}${ONLY[*]:+ (only ${ONLY[*]})}, $ROUNDS round(s) per case, loadgen --engine $ENGINE"
echo

echo "=== building (cargo build --release; loadgen into target/loadgen)"
fg_run cargo build --release --manifest-path "$ROOT/Cargo.toml"
fg_run env CARGO_TARGET_DIR="$LOADGEN_TARGET" cargo build --release --manifest-path "$ROOT/benches/loadgen/Cargo.toml"
echo

# wanted CASE: the case is to run (every case unless --case named some).
wanted() {
    local c
    ((${#ONLY[@]} == 0)) && return 0
    for c in "${ONLY[@]}"; do [[ $c == "$1" ]] && return 0; done
    return 1
}

CASES=()
for batch in "${BATCHES[@]}"; do
    for pool in "${POOLS[@]}"; do
        wanted "${batch}x${pool}" || continue
        CASES+=("${batch}x${pool}")
        echo "=== case ${batch}x${pool}"
        for ((round = 1; round <= ROUNDS; round++)); do
            run_one alertmanager "$batch" "$pool" "$round"
            run_one triaged "$batch" "$pool" "$round"
        done
        echo
    done
done

v() { echo "${R[$1,$2,$3]:-NA}"; }

# is_num VALUE: a number as the load generator and /proc give them (not NA, not empty).
is_num() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }

# numbers VALUE...: the numeric values, one a line, in ascending order.
numbers() {
    local x
    for x in "$@"; do if is_num "$x"; then echo "$x"; fi; done | sort -g
}

# highest VALUE...: the highest of the numeric values ("NA" when there are none).
highest() {
    numbers "$@" | awk '{ x = $1 } END { print (NR ? x : "NA") }'
}

# median VALUE...: the median of the numeric values ("NA" when there are none).
median() {
    numbers "$@" | awk '
        { a[NR] = $1 }
        END {
            if (NR == 0) print "NA"
            else if (NR % 2) print a[(NR + 1) / 2]
            else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2
        }'
}

# Over the rounds of each case: the median alerts/s and p99, and the highest peak RSS.
for case in "${CASES[@]}"; do
    for server in alertmanager triaged; do
        for k in aps p99_ms hwm; do
            vals=()
            for ((round = 1; round <= ROUNDS; round++)); do vals+=("$(v "$server" "$case,$round" "$k")"); done
            if [[ $k == hwm ]]; then
                R[$server,$case,$k]=$(highest "${vals[@]}")
            else
                R[$server,$case,$k]=$(median "${vals[@]}")
            fi
        done
    done
done

echo "=== results (aps: alerts/s answered 2xx; latencies in ms; hwm: peak RSS; cpu: utime+stime over the server's life)"
printf '%-10s %-12s %10s %8s %8s %8s %8s %9s %7s %6s %8s %7s\n' \
    case server aps rps p50 p99 p99.9 max non2xx errors hwm_mb cpu_s
for case in "${CASES[@]}"; do
    for ((round = 1; round <= ROUNDS; round++)); do
        label=$case
        ((ROUNDS > 1)) && label="$case/$round"
        for server in alertmanager triaged; do
            id="$case,$round"
            printf '%-10s %-12s %10s %8s %8s %8s %8s %9s %7s %6s %8s %7s\n' "$label" "$server" \
                "$(v "$server" "$id" aps)" "$(v "$server" "$id" rps)" "$(v "$server" "$id" p50_ms)" \
                "$(v "$server" "$id" p99_ms)" "$(v "$server" "$id" p999_ms)" "$(v "$server" "$id" max_ms)" \
                "$(v "$server" "$id" non2xx)" "$(v "$server" "$id" errors)" \
                "$(v "$server" "$id" hwm)" "$(v "$server" "$id" cpu)"
        done
    done
done
echo

num_or_na() { # num_or_na VALUE FORMAT
    if is_num "$1"; then awk -v x="$1" -v f="$2" 'BEGIN { printf f, x }'; else echo NA; fi
}
ratio_of() { # ratio_of TRIAGED ALERTMANAGER
    if is_num "$1" && is_num "$2" && awk -v a="$2" 'BEGIN { exit !(a > 0) }'; then
        awk -v t="$1" -v a="$2" 'BEGIN { printf "%.2f", t / a }'
    else
        echo NA
    fi
}
if ((ROUNDS > 1)); then
    for case in "${CASES[@]}"; do
        for ((round = 1; round <= ROUNDS; round++)); do
            t=$(v triaged "$case,$round" aps)
            a=$(v alertmanager "$case,$round" aps)
            echo "ROUND case=$case round=$round triaged_aps=$(num_or_na "$t" '%.0f') alertmanager_aps=$(num_or_na "$a" '%.0f') ratio=$(ratio_of "$t" "$a")"
        done
    done
    echo "(RESULT: median alerts/s and p99 over the rounds, the ratio of the medians, the highest peak RSS)"
fi
for case in "${CASES[@]}"; do
    t=$(v triaged "$case" aps)
    a=$(v alertmanager "$case" aps)
    ratio=$(ratio_of "$t" "$a")
    echo "RESULT case=$case triaged_aps=$(num_or_na "$t" '%.0f') alertmanager_aps=$(num_or_na "$a" '%.0f') ratio=$ratio" \
        "triaged_p99_ms=$(num_or_na "$(v triaged "$case" p99_ms)" '%.2f') alertmanager_p99_ms=$(num_or_na "$(v alertmanager "$case" p99_ms)" '%.2f')" \
        "triaged_hwm_mb=$(num_or_na "$(v triaged "$case" hwm)" '%.1f') alertmanager_hwm_mb=$(num_or_na "$(v alertmanager "$case" hwm)" '%.1f')"
done

if ((FAILED)); then
    echo "compare.sh: at least one run failed (see the !!! lines above)" >&2
    exit 1
fi
