#!/usr/bin/env bash
# Rolling redeploy under load (RELIABILITY.md): a deployed project gets GETs at a steady rate
# while new versions are uploaded and one is rolled back; every request must be answered 200.
# By default 5 minutes at 80% of the maximum valet sustains on that project (measured first,
# 32 clients for 5 s). CI runs the same test for 60 s at 100 requests/s.
#
#   bench/redeploy.sh [--seconds N] [--rate N|auto] [--release]
#
# The test drives the real valet binary of the chosen cargo profile (debug by default, as CI;
# --release measures the optimized build, after a longer build).
set -euo pipefail

seconds=300 rate=auto profile=()
while (($#)); do
    case $1 in
        --seconds) seconds=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --release) profile=(--release); shift ;;
        -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "rolling redeploy: ${seconds}s at rate=$rate, profile ${profile[*]:-debug}, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)" >&2
REDEPLOY_SECONDS=$seconds REDEPLOY_RATE=$rate \
    cargo test "${profile[@]}" -p valet --test redeploy_load -- --nocapture 2>&1 |
    grep -E "^(valet's maximum|[0-9]+ requests at|test result|thread .* panicked|failed requests)"
