#!/usr/bin/env bash
# Benchmarks dynamic memory on a real node (release build): balancing passes (100 ms each) from a
# demand step, written through the API, to the VM's new assignment on its node: up steps are
# hot-added (goal ≤ 2 passes), down steps ballooned at 512 MiB/s. Prints a markdown table, and
# nothing but the reason when any request failed or a step never settled.
# Usage: scripts/bench-memory-step.sh   (STEPS=10 steps each way by default)
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-10}
scratch=${FLOTILLA_BENCH_SCRATCH:-.build}
work=$(mktemp -d /tmp/flotilla-bench-memory-step.XXXXXX)
trap 'rm -rf "$work"' EXIT

bench=bench-memory-step
source scripts/lib-bench.sh
build_release flotilla-bench

if ! "$scratch/release/flotilla-bench" memory-step --steps "$STEPS" >"$work/table.md"; then
  echo "$bench: flotilla-bench memory-step failed" >&2
  exit 1
fi
cat "$work/table.md"
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
