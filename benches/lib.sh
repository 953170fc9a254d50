# Helpers shared by the benchmark scripts (compare.sh, startup.sh); sourced, not run.
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
