#!/usr/bin/env bash
# Drain of a node holding 8 VMs by live migration (release build): the time from the drain request
# to the node paused with every VM running elsewhere, and the VMs' downtimes. Prints a markdown
# table with the command and the load average, and nothing but the reason when anything failed.
# Usage: scripts/bench-drain.sh   (VMS=8 SIZE=256M RUNS=3 DIRTY_RATE=500 by default)
set -euo pipefail
cd "$(dirname "$0")/.."

VMS=${VMS:-8}
SIZE=${SIZE:-256M}
RUNS=${RUNS:-3}
DIRTY_RATE=${DIRTY_RATE:-500}
scratch=${FLOTILLA_BENCH_SCRATCH:-.build}
work=$(mktemp -d /tmp/flotilla-bench-drain.XXXXXX)
trap 'rm -rf "$work"' EXIT

bench=bench-drain
source scripts/lib-bench.sh
build_release flotilla flotilla-bench

started_load=$(cut -d' ' -f1-3 /proc/loadavg)
started_at=$(date -u '+%Y-%m-%d %H:%M UTC')
if ! "$scratch/release/flotilla-bench" drain --flotilla "$scratch/release/flotilla" --vms "$VMS" --size "$SIZE" \
  --runs "$RUNS" --dirty-rate "$DIRTY_RATE" >"$work/table.md"; then
  echo "$bench: flotilla-bench drain failed" >&2
  exit 1
fi
echo "$started_at, \`VMS=$VMS SIZE=$SIZE RUNS=$RUNS DIRTY_RATE=$DIRTY_RATE scripts/bench-drain.sh\` (commit $(git rev-parse --short HEAD))"
echo
cat "$work/table.md"
echo
echo "load average at the start: $started_load; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
