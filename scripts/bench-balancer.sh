#!/usr/bin/env bash
# Benchmarks one memory-balancing pass (release build): median and p99 time per pass and heap
# allocations per pass for 10, 100, 1,000 and 10,000 VMs, with every target fitting and with memory
# short. Seeded random settings and demands, steady state (each pass's answers feed the next).
# Prints a markdown table, and nothing but the reason when anything fails.
# Usage: scripts/bench-balancer.sh   (PASSES=1000 timed passes per row by default)
set -euo pipefail
cd "$(dirname "$0")/.."

PASSES=${PASSES:-1000}
scratch=${FLOTILLA_BENCH_SCRATCH:-.build}
mkdir -p "$scratch"
work=$(mktemp -d /tmp/flotilla-bench-balancer.XXXXXX)
trap 'rm -rf "$work"' EXIT

bench=bench-balancer
source scripts/lib-bench.sh
shim=$(malloc_counter)
build_release flotilla-bench

# The table goes to a file first, so a run that fails halfway prints none of it.
if ! LD_PRELOAD="$shim" "$scratch/release/flotilla-bench" balancer --passes "$PASSES" >"$work/table.md"; then
  echo "$bench: flotilla-bench balancer failed" >&2
  exit 1
fi
cat "$work/table.md"
