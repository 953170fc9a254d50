# Helpers shared by the benchmark scripts (compare.sh, startup.sh, retention.sh); sourced, not run.
# fg_run sets CHILD, which the sourcing script's cleanup stops.

# Run a command and wait for it; in the background, so that INT/TERM are handled at once.
fg_run() {
    local rc=0
    "$@" &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=
    return "$rc"
}

# utime + stime of a process so far, in seconds ("NA" once it is gone). Fields after the ")"
# that closes comm start at field 3 (state).
cpu_s() {
    local s tck
    s=$(cat "/proc/$1/stat" 2> /dev/null) || { echo NA; return; }
    s=${s##*) }
    tck=$(getconf CLK_TCK)
    # shellcheck disable=SC2086
    set -- $s
    awk -v u="${12}" -v s="${13}" -v t="$tck" 'BEGIN { printf "%.2f", (u + s) / t }'
}

# A free TCP port on 127.0.0.1, below the ephemeral range the client sockets use.
free_port() {
    local p i
    for ((i = 0; i < 500; i++)); do
        p=$((20000 + RANDOM % 12000))
        if ! (exec 3<> "/dev/tcp/127.0.0.1/$p") 2> /dev/null; then
            echo "$p"
            return 0
        fi
    done
    echo "${0##*/}: no free port found" >&2
    return 1
}

# Stop the processes in $CHILD and $PID (TERM, up to 30 s, then KILL), then remove $WORK unless
# KEEP_WORK=1, saying what was kept there ($1). startup.sh's and retention.sh's EXIT trap.
stop_and_clean() {
    local p i
    for p in $CHILD $PID; do
        kill -TERM "$p" 2> /dev/null || true
        for ((i = 0; i < 300; i++)); do
            kill -0 "$p" 2> /dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2> /dev/null || true
        wait "$p" 2> /dev/null || true
    done
    if [[ ${KEEP_WORK:-0} == 1 ]]; then
        echo "${0##*/}: $1 kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
