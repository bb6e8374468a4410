# Optional (--perf FILE): where valet's CPU goes under the warm-hop load. perf samples the
# valet process during one extra wrk run; the summary goes to FILE. Sourced by run.sh.

# perf_report DATA ARGS...: `perf report --stdio` without comments, blank lines or padding.
# awk, not head, cuts the output: head would close the pipe and pipefail would end the script.
perf_report() {
    local data=$1 limit=$2
    shift 2
    perf report -i "$data" --stdio -g none "$@" 2>/dev/null |
        awk -v limit="$limit" '/^#/ || /^[[:space:]]*$/ { next } { sub(/[[:space:]]+$/, ""); if (++n <= limit) print }'
}

run_perf() {
    local out=$1 data=$WORK/perf.data perf_pid
    command -v perf >/dev/null || die "--perf needs perf (Debian: linux-perf)"
    log "perf: recording valet for ${DURATION}s under wrk"
    # Rust omits frame pointers, so stacks are unwound from DWARF (valet's release profile
    # keeps debug info); 16 KB of stack per sample is enough for tokio + hyper depths.
    perf record --call-graph dwarf,16384 -F 499 -o "$data" -p "$VALET_PID" -- sleep "$DURATION" 2>"$WORK/perf-record.log" &
    perf_pid=$!
    wrk_once valet "$DURATION" >/dev/null
    wait "$perf_pid" || die "perf record failed: $(cat "$WORK/perf-record.log")"
    {
        echo "# valet under wrk ($CONNECTIONS connections, ${DURATION}s): self time per binary"
        perf_report "$data" 10 --no-children --sort dso
        echo
        echo "# self time per symbol"
        perf_report "$data" 80 --no-children -F overhead,dso,sym --percent-limit 0.3
        echo
        echo "# time including callees (inlined frames folded into their callers)"
        perf_report "$data" 100 --children --no-inline -F overhead_children,overhead,sym --percent-limit 1.5
    } >"$out"
    log "perf: summary written to $out"
}
